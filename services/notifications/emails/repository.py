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


#: A message that may be tried now: waiting (its backoff over), or claimed by a sender
#: whose lease ran out (it died mid-send). Index ``emails_due`` (migration 0004).
_DUE = "status IN ('queued', 'sending') AND next_attempt_at <= now()"
_CLAIM = "status = 'sending', attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => {lease})"


async def claim_fact(conn: asyncpg.Connection, account_id: str, fact_key: str, lease_s: float) -> list[asyncpg.Record]:
    """Take this fact's due messages for sending, for ``lease_s`` (after commit)."""
    return await conn.fetch(
        f"""UPDATE {S}.emails SET {_CLAIM.format(lease="$3")}, updated_at = now()
            WHERE account_id = $1 AND fact_key = $2 AND {_DUE}
            RETURNING *""",
        account_id,
        fact_key,
        float(lease_s),
    )


async def claim_due(
    conn: asyncpg.Connection, lease_s: float, limit: int, account_id: str | None = None
) -> list[asyncpg.Record]:
    """The sweep: take up to ``limit`` due messages of any account (as the schema's
    owner) — or of one — oldest due first; ``SKIP LOCKED``, so concurrent sweeps take
    disjoint rows."""
    return await conn.fetch(
        f"""UPDATE {S}.emails e SET {_CLAIM.format(lease="$1")}, updated_at = now()
            FROM (SELECT id FROM {S}.emails WHERE {_DUE} AND ($3::text IS NULL OR account_id = $3)
                  ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
            WHERE e.id = due.id
            RETURNING e.*""",
        float(lease_s),
        limit,
        account_id,
    )


async def give_back(conn: asyncpg.Connection, email_ids: list[str]) -> None:
    """Claimed but not tried: due again at once, the attempt not counted."""
    await conn.execute(
        f"""UPDATE {S}.emails SET status = 'queued', attempts = attempts - 1, next_attempt_at = now(),
                updated_at = now()
            WHERE id = ANY($1::text[]) AND status = 'sending'""",
        email_ids,
    )


async def mark_sent(conn: asyncpg.Connection, email_id: str, at: datetime) -> None:
    await conn.execute(
        f"UPDATE {S}.emails SET status = 'sent', sent_at = $2, last_error = NULL, updated_at = now() WHERE id = $1",
        email_id,
        at,
    )


async def mark_final(conn: asyncpg.Connection, email_id: str, status: str, error: str) -> None:
    """Refused for good: ``bounced`` (the recipient) or ``failed`` (the message)."""
    await conn.execute(
        f"UPDATE {S}.emails SET status = $2, last_error = $3, updated_at = now() WHERE id = $1",
        email_id,
        status,
        error[:2000],
    )


async def mark_retry(
    conn: asyncpg.Connection, email_id: str, error: str, delay_s: float, give_up_after_s: float
) -> str:
    """A transient failure: queued again ``delay_s`` from now — or ``failed`` once it has
    been failing longer than ``give_up_after_s``. Returns the new status."""
    return await conn.fetchval(
        f"""UPDATE {S}.emails SET
                first_failed_at = COALESCE(first_failed_at, now()),
                status = CASE WHEN now() - COALESCE(first_failed_at, now()) > make_interval(secs => $4)
                              THEN 'failed' ELSE 'queued' END,
                next_attempt_at = now() + make_interval(secs => $3),
                last_error = $2, updated_at = now()
            WHERE id = $1
            RETURNING status""",
        email_id,
        error[:2000],
        float(delay_s),
        float(give_up_after_s),
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
                   last_error, created_at, sent_at, next_attempt_at
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


# -- invoices: act only on the newest snapshot (decision 82) ---------------------------------------
async def newest_invoice_version(conn: asyncpg.Connection, account_id: str, invoice_id: str, version: int) -> bool:
    """Remember ``version`` if it is the newest seen; False when a newer one was seen."""
    newest = await conn.fetchval(
        f"""INSERT INTO {S}.invoice_versions AS v (account_id, invoice_id, version) VALUES ($1, $2, $3)
            ON CONFLICT (account_id, invoice_id) DO UPDATE SET version = EXCLUDED.version
            WHERE v.version <= EXCLUDED.version
            RETURNING true""",
        account_id,
        invoice_id,
        version,
    )
    return bool(newest)
