"""Time-driven status changes that are not charges: cancellations at the period end."""

from __future__ import annotations

import asyncpg

from ..subscriptions.service import change
from .scheduler import ACCOUNT_NOW, ACCOUNT_TODAY

S = "billing"

_PERIOD_ENDS = f"""
SELECT s.*, {ACCOUNT_NOW} AS account_now
FROM {S}.subscriptions s JOIN {S}.accounts a ON a.id = s.account_id
WHERE s.cancel_at_period_end
  AND s.status IN ('scheduled', 'active', 'past_due', 'unpaid')
  AND (s.next_payment_date IS NULL OR s.next_payment_date <= {ACCOUNT_TODAY})
  AND ($1::text IS NULL OR s.account_id = $1)
  -- a charge in flight decides first (its success must not land on a canceled subscription)
  AND NOT EXISTS (SELECT 1 FROM {S}.charges c WHERE c.subscription_id = s.id AND c.status = 'processing')
LIMIT $2
FOR UPDATE OF s SKIP LOCKED
"""


async def end_periods(conn: asyncpg.Connection, *, account_id: str | None = None, limit: int = 1000) -> int:
    """Subscriptions cancelled "at the end of the current period" whose period ended."""
    rows = await conn.fetch(_PERIOD_ENDS, account_id, limit)
    for row in rows:
        at = row["account_now"]
        await conn.execute(
            f"""UPDATE {S}.charges SET status = 'canceled', updated_at = $2
                WHERE subscription_id = $1 AND status IN ('scheduled', 'retrying')""",
            row["id"],
            at,
        )
        await change(
            conn, row, {"status": "canceled", "canceled_at": at, "ended_at": at, "next_payment_date": None}, at
        )
    return len(rows)
