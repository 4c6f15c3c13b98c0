"""All SQL of the ledger.

Every insert is idempotent through a unique index (migration 0003): a payment is
credited once (``payment`` or ``settlement``, whichever comes first), fails once, and
each refund is one entry — so duplicates and overlapping events never change a sum.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

S = "billing"

_COLUMNS = "id, account_id, kind, payment_id, amount, currency, source, event_id, occurred_at, refund_id, details"
_VALUES = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11"
#: The unique index that makes each kind of entry happen once (its arbiter in ON CONFLICT).
_ONCE = {
    "payment": "(account_id, payment_id) WHERE kind IN ('payment', 'settlement')",
    "settlement": "(account_id, payment_id) WHERE kind IN ('payment', 'settlement')",
    "failure": "(account_id, payment_id) WHERE kind = 'failure'",
    "refund": "(account_id, refund_id) WHERE kind = 'refund'",
}


async def record_entry(
    conn: asyncpg.Connection,
    *,
    entry_id: str,
    account_id: str,
    kind: str,
    payment_id: str,
    amount: int,
    currency: str,
    source: dict,
    event_id: str,
    occurred_at: datetime,
    refund_id: str | None = None,
    details: dict | None = None,
) -> bool:
    """Insert one entry unless its fact is recorded already; True when inserted."""
    inserted = await conn.fetchval(
        f"""INSERT INTO {S}.ledger_entries ({_COLUMNS}) VALUES ({_VALUES})
            ON CONFLICT {_ONCE[kind]} DO NOTHING RETURNING true""",
        entry_id,
        account_id,
        kind,
        payment_id,
        amount,
        currency,
        source,
        event_id,
        occurred_at,
        refund_id,
        details or {},
    )
    return bool(inserted)


async def payment_source(conn: asyncpg.Connection, account_id: str, payment_id: str) -> dict | None:
    """The source ({type, id}) a payment was recorded with, if any entry knows it."""
    return await conn.fetchval(
        f"""SELECT source FROM {S}.ledger_entries
            WHERE account_id = $1 AND payment_id = $2 AND source <> '{{}}'::jsonb
            ORDER BY id LIMIT 1""",
        account_id,
        payment_id,
    )


async def list_entries(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    payment_id: str | None,
    kind: str | None = None,
    limit: int,
    starting_after: str | None,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.ledger_entries
            WHERE account_id = $1 AND ($2::text IS NULL OR payment_id = $2)
              AND ($3::text IS NULL OR id < $3)
              AND ($5::text IS NULL OR kind = $5)
            ORDER BY id DESC LIMIT $4""",
        account_id,
        payment_id,
        starting_after,
        limit,
        kind,
    )
