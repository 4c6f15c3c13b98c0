"""The reminder pass: one ``subscription.reminder_due`` per automatic charge.

Candidates are found with one statement: for each account with reminders enabled, the
index range subscriptions_remind (migration 0007) from tomorrow to the end of its lead
time on that account's clock — only payment dates not looked at yet. The pure policy
(`policy.reminder_at`) decides; a reminder row keyed by (subscription, payment index) is
written with its event in the same transaction — or, when the policy says no reminder, a
row saying why — and the subscription is marked looked-at for that date
(``reminded_index``), so a date is dealt with once however many schedulers run and
however often, and a pass reads only new dates.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

import asyncpg

from shared.accounts import account_from_row
from shared.events.models import SubscriptionReminderDueV1
from shared.outbox import publish_many

from ..charging.scheduler import ACCOUNT_CLOCKS
from ..subscriptions.service import charged_lines, contact_name
from ..subscriptions.tokens import payment_method_url
from .policy import ReminderPolicy, reminder_at

S = "billing"

#: A subscription ``s`` in the index subscriptions_remind (its predicate, repeated so the
#: planner can use it) of account ``k``.
REMIND_RANGE = """
    s.account_id = k.id
    AND s.status IN ('scheduled', 'active') AND s.next_payment_date IS NOT NULL
    AND s.collection_method = 'charge_automatically' AND s.payment_method_id IS NOT NULL
    AND NOT s.cancel_at_period_end AND (s.reminded_index IS NULL OR s.reminded_index < s.next_index)
"""

_CANDIDATES = f"""
SELECT s.*, k.account_now, row_to_json(a.*)::jsonb AS account_row
FROM ({ACCOUNT_CLOCKS}) k
JOIN {S}.accounts a ON a.id = k.id
CROSS JOIN LATERAL (
    SELECT s.* FROM {S}.subscriptions s
    WHERE {REMIND_RANGE}
      AND s.next_payment_date > k.today
      AND s.next_payment_date <= k.today + COALESCE((k.settings->'subscription_settings'->>'reminder_days')::int, 14)
    ORDER BY s.next_payment_date, s.id
    LIMIT $2
    FOR NO KEY UPDATE OF s SKIP LOCKED
) s
WHERE COALESCE((k.settings->'subscription_settings'->>'reminders_enabled')::boolean, false)
ORDER BY s.next_payment_date, s.id
LIMIT $2
"""


async def remind_due(conn: asyncpg.Connection, settings, *, account_id: str | None = None, limit: int = 1000) -> int:
    """Publish the reminders that are due (inside the caller's transaction): the
    candidates in one statement, the events in one, the reminder rows in one, the
    looked-at marks in one. Returns how many reminders were published."""
    due, looked_at = [], []
    for row in await conn.fetch(_CANDIDATES, account_id, limit):
        account_row = dict(row["account_row"])
        account_row["settings"] = account_row.get("settings") or {}
        account = account_from_row(account_row)
        policy = ReminderPolicy.from_settings(account.settings.subscription_settings.model_dump())
        at = reminder_at(policy, row["interval"], row["next_payment_date"], ZoneInfo(account.settings.time_zone))
        if at is None:
            looked_at.append((row, "interval not longer than the lead time"))
        elif at < row["created_at"]:
            looked_at.append((row, "subscription created inside the lead time"))
        elif at <= row["account_now"]:
            due.append(row)
            looked_at.append((row, None))
        # (else not yet: the window is by local date, ``at`` the start of that day — not reached)
    event_ids = iter(
        await publish_many(
            conn,
            schema=S,
            producer="billing",
            events=[(row["account_id"], _reminder(settings, row), row["account_now"]) for row in due],
        )
    )
    events = [None if skipped else next(event_ids) for _, skipped in looked_at]
    await conn.execute(
        f"""INSERT INTO {S}.reminders
                (account_id, subscription_id, period_index, charge_date, event_id, skipped, created_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::date[], $5::text[], $6::text[],
                                 $7::timestamptz[])""",
        [r["account_id"] for r, _ in looked_at],
        [r["id"] for r, _ in looked_at],
        [r["next_index"] for r, _ in looked_at],
        [r["next_payment_date"] for r, _ in looked_at],
        events,
        [skipped for _, skipped in looked_at],
        [r["account_now"] for r, _ in looked_at],
    )
    await conn.execute(
        f"""UPDATE {S}.subscriptions s SET reminded_index = m.next_index
            FROM unnest($1::text[], $2::int[]) AS m(id, next_index) WHERE s.id = m.id""",
        [r["id"] for r, _ in looked_at],
        [r["next_index"] for r, _ in looked_at],
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
