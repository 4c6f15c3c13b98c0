"""All SQL of the event feed."""

from __future__ import annotations

import asyncpg

from shared.events import EventEnvelope

S = "notifications"


async def account_known(conn: asyncpg.Connection, account_id: str) -> bool:
    return bool(await conn.fetchval(f"SELECT true FROM {S}.accounts WHERE id = $1", account_id))


async def lock_account_feed(conn: asyncpg.Connection, account_id: str) -> None:
    """Serialise the account's feed writers until commit: a ``seq`` taken under this lock
    is visible before any higher one of the same account, so a reader's cursor never
    passes a row that commits later."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{S}.event_feed:{account_id}")


async def insert(conn: asyncpg.Connection, envelope: EventEnvelope) -> int | None:
    """Store the event once; its ``seq``, or None when it is already there."""
    return await conn.fetchval(
        f"""INSERT INTO {S}.event_feed (account_id, event_id, type, version, data, occurred_at)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (account_id, event_id) DO NOTHING RETURNING seq""",
        envelope.account_id,
        envelope.id,
        envelope.type,
        envelope.version,
        envelope.data,
        envelope.occurred_at,
    )


async def seq_of(conn: asyncpg.Connection, account_id: str, event_id: str) -> int | None:
    return await conn.fetchval(
        f"SELECT seq FROM {S}.event_feed WHERE account_id = $1 AND event_id = $2", account_id, event_id
    )


async def list_after(
    conn: asyncpg.Connection, account_id: str, after_seq: int | None, limit: int
) -> list[asyncpg.Record]:
    """Oldest first after the cursor."""
    return await conn.fetch(
        f"""SELECT event_id, type, version, data, occurred_at FROM {S}.event_feed
            WHERE account_id = $1 AND ($2::bigint IS NULL OR seq > $2)
            ORDER BY seq LIMIT $3""",
        account_id,
        after_seq,
        limit,
    )
