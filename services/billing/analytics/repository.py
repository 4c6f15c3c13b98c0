"""The SQL of analytics and the dry run: read-only, on billing's own tables."""

from __future__ import annotations

from datetime import date, datetime

import asyncpg

S = "billing"


async def live_amounts(conn: asyncpg.Connection, account_id: str, currency: str) -> list[asyncpg.Record]:
    """(interval, total subtotal, count) of the subscriptions paying now: ``active`` and
    ``past_due`` (still owed, in retries) — not scheduled, paused, unpaid or ended."""
    return await conn.fetch(
        f"""SELECT interval, sum(subtotal)::bigint AS subtotal, count(*) AS n
            FROM {S}.subscriptions
            WHERE account_id = $1 AND currency = $2 AND status IN ('active', 'past_due')
            GROUP BY interval""",
        account_id,
        currency,
    )


async def created_between(
    conn: asyncpg.Connection, account_id: str, currency: str, lo: datetime, hi: datetime
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT interval, sum(subtotal)::bigint AS subtotal, count(*) AS n
            FROM {S}.subscriptions
            WHERE account_id = $1 AND currency = $2 AND created_at >= $3 AND created_at < $4
            GROUP BY interval""",
        account_id,
        currency,
        lo,
        hi,
    )


async def canceled_between(
    conn: asyncpg.Connection, account_id: str, currency: str, lo: datetime, hi: datetime
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT interval, sum(subtotal)::bigint AS subtotal, count(*) AS n
            FROM {S}.subscriptions
            WHERE account_id = $1 AND currency = $2 AND status = 'canceled'
              AND canceled_at >= $3 AND canceled_at < $4
            GROUP BY interval""",
        account_id,
        currency,
        lo,
        hi,
    )


async def payment_outcomes(
    conn: asyncpg.Connection, account_id: str, currency: str, lo: datetime, hi: datetime
) -> asyncpg.Record:
    """Charges whose first failure fell in the range, how many of them were paid in the
    end (a retry or the buyer's new method), and the automatic charges' revenue."""
    return await conn.fetchrow(
        f"""WITH first_failure AS (
                SELECT a.charge_id, min(a.resolved_at) AS failed_at
                FROM {S}.charge_attempts a
                WHERE a.account_id = $1 AND a.currency = $2 AND a.status = 'failed'
                GROUP BY a.charge_id
            )
            SELECT
                (SELECT count(*) FROM first_failure f WHERE f.failed_at >= $3 AND f.failed_at < $4) AS failed,
                (SELECT count(*) FROM first_failure f JOIN {S}.charges c ON c.id = f.charge_id
                 WHERE f.failed_at >= $3 AND f.failed_at < $4 AND c.status = 'succeeded') AS recovered,
                (SELECT COALESCE(sum(a.amount), 0)::bigint FROM {S}.charge_attempts a
                 WHERE a.account_id = $1 AND a.currency = $2 AND a.status = 'succeeded'
                   AND a.resolved_at >= $3 AND a.resolved_at < $4) AS revenue""",
        account_id,
        currency,
        lo,
        hi,
    )


async def past_failures(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    currency: str | None,
    due_from: date | None,
    due_to: date | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Charges whose due attempt (number 0) failed, newest due date first, with when the
    charge was paid in the end (if it was)."""
    return await conn.fetch(
        f"""SELECT c.id AS charge_id, c.subscription_id, c.due_date, c.currency,
                   f.method_type, f.decline_code,
                   (SELECT min(s.resolved_at) FROM {S}.charge_attempts s
                    WHERE s.charge_id = c.id AND s.status = 'succeeded') AS succeeded_at
            FROM {S}.charges c
            JOIN {S}.charge_attempts f ON f.charge_id = c.id AND f.number = 0 AND f.status = 'failed'
            WHERE c.account_id = $1
              AND ($2::text IS NULL OR c.currency = $2)
              AND ($3::date IS NULL OR c.due_date >= $3)
              AND ($4::date IS NULL OR c.due_date <= $4)
            ORDER BY c.due_date DESC, c.id DESC
            LIMIT $5""",
        account_id,
        currency,
        due_from,
        due_to,
        limit,
    )
