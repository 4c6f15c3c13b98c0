"""The reminder pass: one ``subscription.reminder_due`` per automatic charge.

Candidates are found with one statement (reminders enabled on the account, the next
payment date within the largest lead time, no reminder row yet); the pure policy
(`policy.reminder_at`) decides; a reminder row keyed by (subscription, payment index) is
written with its event in the same transaction, so a reminder is published once however
many schedulers run and however often.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import asyncpg

from shared.accounts import account_from_row
from shared.events.models import SubscriptionReminderDueV1
from shared.outbox import publish_many

from ..charging.scheduler import ACCOUNT_NOW, ACCOUNT_TODAY
from ..subscriptions.service import charged_lines, contact_name
from ..subscriptions.tokens import payment_method_url
from .policy import ReminderPolicy, reminder_at

S = "billing"

_CANDIDATES = f"""
SELECT s.*, {ACCOUNT_NOW} AS account_now, row_to_json(a.*)::jsonb AS account_row
FROM {S}.subscriptions s JOIN {S}.accounts a ON a.id = s.account_id
WHERE (a.settings->'subscription_settings'->>'reminders_enabled')::boolean
  AND s.status IN ('scheduled', 'active')
  AND s.collection_method = 'charge_automatically'
  AND s.payment_method_id IS NOT NULL
  AND NOT s.cancel_at_period_end
  AND s.next_payment_date IS NOT NULL
  AND s.next_payment_date > {ACCOUNT_TODAY}
  AND s.next_payment_date - COALESCE((a.settings->'subscription_settings'->>'reminder_days')::int, 14)
      <= {ACCOUNT_TODAY}
  AND ($1::text IS NULL OR s.account_id = $1)
  AND NOT EXISTS (SELECT 1 FROM {S}.reminders r WHERE r.subscription_id = s.id AND r.period_index = s.next_index)
ORDER BY s.next_payment_date
LIMIT $2
FOR UPDATE OF s SKIP LOCKED
"""


async def remind_due(conn: asyncpg.Connection, settings, *, account_id: str | None = None, limit: int = 1000) -> int:
    """Publish the reminders that are due (inside the caller's transaction): the
    candidates in one statement, the events in one, the reminder rows in one."""
    due = []
    for row in await conn.fetch(_CANDIDATES, account_id, limit):
        account_row = dict(row["account_row"])
        account_row["settings"] = account_row.get("settings") or {}
        account = account_from_row(account_row)
        policy = ReminderPolicy.from_settings(account.settings.subscription_settings.model_dump())
        at = reminder_at(policy, row["interval"], row["next_payment_date"], ZoneInfo(account.settings.time_zone))
        if at is not None and row["created_at"] <= at <= row["account_now"]:
            due.append(row)
    event_ids = await publish_many(
        conn,
        schema=S,
        producer="billing",
        events=[(row["account_id"], _reminder(settings, row), row["account_now"]) for row in due],
    )
    await conn.execute(
        f"""INSERT INTO {S}.reminders (account_id, subscription_id, period_index, charge_date, event_id, created_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::date[], $5::text[], $6::timestamptz[])""",
        [r["account_id"] for r in due],
        [r["id"] for r in due],
        [r["next_index"] for r in due],
        [r["next_payment_date"] for r in due],
        event_ids,
        [r["account_now"] for r in due],
    )
    return len(due)


def _reminder(settings, row: asyncpg.Record) -> SubscriptionReminderDueV1:
    return SubscriptionReminderDueV1(
        subscription_id=row["id"],
        period_index=row["next_index"],
        charge_date=row["next_payment_date"],
        amount=row["amount"],
        currency=row["currency"],
        email=row["email"],
        contact_name=contact_name(row["contact"]),
        lines=charged_lines(row),
        interval=row["interval"],
        update_url=payment_method_url(settings, row["id"], row["pm_token_version"]),
        test_mode=row["test_mode"],
    )
