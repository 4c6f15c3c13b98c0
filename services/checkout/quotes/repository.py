"""All SQL of quotes and their published versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.db import assignments

S = "checkout"


async def insert_quote(conn: asyncpg.Connection, **values: Any) -> asyncpg.Record:
    columns = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchrow(f"INSERT INTO {S}.quotes ({columns}) VALUES ({params}) RETURNING *", *values.values())


async def get_quote(
    conn: asyncpg.Connection, account_id: str, quote_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.quotes WHERE account_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        account_id,
        quote_id,
    )


async def update_quote(
    conn: asyncpg.Connection, quote_id: str, changes: dict[str, Any], at: datetime
) -> asyncpg.Record:
    """Apply ``changes`` and move the snapshot version on (consumers keep the highest)."""
    sets, values = assignments(changes, "version = version + 1", "updated_at = $2", first=3)
    return await conn.fetchrow(f"UPDATE {S}.quotes SET {sets} WHERE id = $1 RETURNING *", quote_id, at, *values)


async def list_quotes(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    status: str | None,
    today_expired_before: Any,
    deal_id: str | None,
    contact_id: str | None,
    limit: int,
    starting_after: str | None,
) -> list[asyncpg.Record]:
    """Newest first. ``status`` "expired" / "published" split published quotes by
    ``today_expired_before`` (the account's local date: expired when it is after
    ``expires_on``)."""
    return await conn.fetch(
        f"""SELECT * FROM {S}.quotes
            WHERE account_id = $1
              AND ($2::text IS NULL OR id < $2)
              AND ($3::text IS NULL
                   OR ($3 = 'draft' AND status = 'draft')
                   OR ($3 = 'paid' AND status = 'paid')
                   OR ($3 = 'published' AND status = 'published' AND (published->>'expires_on')::date >= $4)
                   OR ($3 = 'expired' AND status = 'published' AND (published->>'expires_on')::date < $4))
              AND ($5::text IS NULL OR deal_id = $5)
              AND ($6::text IS NULL OR contact_id = $6)
            ORDER BY id DESC LIMIT $7""",
        account_id, starting_after, status, today_expired_before, deal_id, contact_id, limit,
    )  # fmt: skip


async def insert_version(
    conn: asyncpg.Connection, account_id: str, quote_id: str, version: int, snapshot: dict, at: datetime
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.quote_versions (account_id, quote_id, version, snapshot, published_at)
            VALUES ($1, $2, $3, $4, $5)""",
        account_id,
        quote_id,
        version,
        snapshot,
        at,
    )


async def resolve_token(pool: asyncpg.Pool, token_hash: bytes) -> asyncpg.Record | None:
    """(account_id, quote_id) of a published quote's page token, before the tenant is known."""
    return await pool.fetchrow(f"SELECT account_id, quote_id FROM {S}.resolve_quote_token($1)", token_hash)


async def expire_open_sessions(conn: asyncpg.Connection, account_id: str, quote_id: str) -> None:
    """The quote stopped being payable (recalled, converted): its open checkout session
    takes no new charge."""
    await conn.execute(
        f"""UPDATE {S}.checkout_sessions SET status = 'expired'
            WHERE account_id = $1 AND source_type = 'quote' AND source_id = $2 AND status = 'open'""",
        account_id,
        quote_id,
    )
