"""All SQL of the e-mail send ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

S = "notifications"


async def queue_email(conn: asyncpg.Connection, **values: Any) -> bool:
    """Insert once per (account, fact, kind, recipient); False if it already exists."""
    columns = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    inserted = await conn.fetchval(
        f"INSERT INTO {S}.emails ({columns}) VALUES ({params}) "
        f"ON CONFLICT (account_id, fact_key, kind, recipient) DO NOTHING RETURNING true",
        *values.values(),
    )
    return bool(inserted)


async def claim_unsent(conn: asyncpg.Connection, account_id: str, fact_key: str, lease_s: int) -> list[asyncpg.Record]:
    """Take this fact's unsent messages for sending (a dead sender's lease expires)."""
    return await conn.fetch(
        f"""UPDATE {S}.emails SET status = 'sending', attempts = attempts + 1, updated_at = now()
            WHERE account_id = $1 AND fact_key = $2
              AND (status IN ('queued', 'failed')
                   OR (status = 'sending' AND updated_at < now() - make_interval(secs => $3)))
            RETURNING *""",
        account_id,
        fact_key,
        lease_s,
    )


async def lease_left(
    conn: asyncpg.Connection, account_id: str, fact_key: str, lease_s: int, claimed: list[str]
) -> float | None:
    """Seconds until the last lease on this fact's messages that we did not claim expires
    (None when no other sender holds one)."""
    left = await conn.fetchval(
        f"""SELECT extract(epoch FROM max(updated_at) + make_interval(secs => $3) - now())::float8
            FROM {S}.emails
            WHERE account_id = $1 AND fact_key = $2 AND status = 'sending' AND NOT (id = ANY($4::text[]))""",
        account_id,
        fact_key,
        lease_s,
        claimed,
    )
    return None if left is None else max(0.0, left)


async def mark_sent(conn: asyncpg.Connection, email_id: str, at: datetime) -> None:
    await conn.execute(
        f"UPDATE {S}.emails SET status = 'sent', sent_at = $2, last_error = NULL, updated_at = now() WHERE id = $1",
        email_id,
        at,
    )


async def mark_failed(conn: asyncpg.Connection, email_id: str, status: str, error: str) -> None:
    await conn.execute(
        f"UPDATE {S}.emails SET status = $2, last_error = $3, updated_at = now() WHERE id = $1",
        email_id,
        status,
        error[:2000],
    )


async def list_emails(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    to: str | None,
    kind: str | None,
    status: str | None,
    limit: int,
    starting_after: str | None,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT id, kind, recipient, subject, status, related, locale, message_id, attempts,
                   last_error, created_at, sent_at
            FROM {S}.emails
            WHERE account_id = $1 AND ($2::text IS NULL OR lower(recipient) = lower($2))
              AND ($3::text IS NULL OR kind = $3) AND ($4::text IS NULL OR id < $4)
              AND ($6::text IS NULL OR status = $6)
            ORDER BY id DESC LIMIT $5""",
        account_id,
        to,
        kind,
        starting_after,
        limit,
        status,
    )


# -- held until the payment settles (no message before the outcome, PRODUCT §11) ----------------
async def record_outcome(
    conn: asyncpg.Connection, account_id: str, payment_id: str, outcome: str, at: datetime
) -> None:
    """Remember a payment's final outcome; "succeeded" replaces "failed", never the reverse."""
    await conn.execute(
        f"""INSERT INTO {S}.payment_outcomes AS o (account_id, payment_id, succeeded, decided_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (account_id, payment_id)
                DO UPDATE SET succeeded = true, decided_at = EXCLUDED.decided_at
            WHERE NOT o.succeeded AND EXCLUDED.succeeded""",
        account_id,
        payment_id,
        outcome == "succeeded",
        at,
    )


async def payment_outcome(conn: asyncpg.Connection, account_id: str, payment_id: str) -> str | None:
    """The outcome ("succeeded" or "failed"), or None while the payment is not settled."""
    succeeded = await conn.fetchval(
        f"SELECT succeeded FROM {S}.payment_outcomes WHERE account_id = $1 AND payment_id = $2", account_id, payment_id
    )
    return None if succeeded is None else ("succeeded" if succeeded else "failed")


async def release_held(conn: asyncpg.Connection, account_id: str, fact_key: str) -> int:
    """The payment succeeded: its held (or dropped) messages are queued for sending."""
    released = await conn.fetch(
        f"""UPDATE {S}.emails SET status = 'queued', updated_at = now()
            WHERE account_id = $1 AND fact_key = $2 AND status IN ('held', 'dropped') RETURNING id""",
        account_id,
        fact_key,
    )
    return len(released)


async def drop_held(conn: asyncpg.Connection, account_id: str, fact_key: str) -> int:
    """The payment failed: its held messages are never sent."""
    dropped = await conn.fetch(
        f"""UPDATE {S}.emails SET status = 'dropped', updated_at = now()
            WHERE account_id = $1 AND fact_key = $2 AND status = 'held' RETURNING id""",
        account_id,
        fact_key,
    )
    return len(dropped)
