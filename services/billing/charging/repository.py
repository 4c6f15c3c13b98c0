"""All SQL on ``billing.charges`` and ``billing.charge_attempts``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.db import assignments

S = "billing"
FINAL_CHARGE_STATUSES = ("succeeded", "failed", "canceled")

_ATTEMPT_COLUMNS = (
    "id",
    "account_id",
    "charge_id",
    "subscription_id",
    "number",
    "trigger",
    "idempotency_key",
    "payment_id",
    "amount",
    "currency",
    "processor_customer_id",
    "payment_method_id",
    "method_type",
    "status",
    "created_at",
)


async def get_charge(conn: asyncpg.Connection, account_id: str, charge_id: str, *, lock: bool = False):
    return await conn.fetchrow(
        f"SELECT * FROM {S}.charges WHERE account_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        account_id,
        charge_id,
    )


async def open_charge(conn: asyncpg.Connection, account_id: str, subscription_id: str, *, lock: bool = False):
    """The charge a subscription still owes: in dunning, or failed into ``unpaid``."""
    return await conn.fetchrow(
        f"""SELECT * FROM {S}.charges
            WHERE account_id = $1 AND subscription_id = $2
              AND (status IN ('retrying', 'processing') OR (status = 'failed' AND final_outcome = 'unpaid'))
            ORDER BY period_index DESC LIMIT 1"""
        + (" FOR UPDATE" if lock else ""),
        account_id,
        subscription_id,
    )


async def latest_charge(conn: asyncpg.Connection, account_id: str, subscription_id: str):
    return await conn.fetchrow(
        f"""SELECT * FROM {S}.charges WHERE account_id = $1 AND subscription_id = $2
            ORDER BY period_index DESC LIMIT 1""",
        account_id,
        subscription_id,
    )


async def update_charge(conn: asyncpg.Connection, charge_id: str, changes: dict[str, Any], at: datetime) -> None:
    sets, values = assignments(changes, "updated_at = $2", first=3)
    await conn.execute(f"UPDATE {S}.charges SET {sets} WHERE id = $1", charge_id, at, *values)


async def insert_attempt(conn: asyncpg.Connection, row: dict[str, Any]) -> asyncpg.Record:
    cols = ", ".join(_ATTEMPT_COLUMNS)
    params = ", ".join(f"${i}" for i in range(1, len(_ATTEMPT_COLUMNS) + 1))
    return await conn.fetchrow(
        f"INSERT INTO {S}.charge_attempts ({cols}) VALUES ({params}) RETURNING *",
        *(row[c] for c in _ATTEMPT_COLUMNS),
    )


async def get_attempt(conn: asyncpg.Connection, attempt_id: str):
    return await conn.fetchrow(f"SELECT * FROM {S}.charge_attempts WHERE id = $1", attempt_id)


async def update_attempt(conn: asyncpg.Connection, attempt_id: str, changes: dict[str, Any]) -> asyncpg.Record:
    sets, values = assignments(changes, first=2)
    return await conn.fetchrow(f"UPDATE {S}.charge_attempts SET {sets} WHERE id = $1 RETURNING *", attempt_id, *values)


async def unresolved_attempt(conn: asyncpg.Connection, charge_id: str):
    return await conn.fetchrow(
        f"""SELECT * FROM {S}.charge_attempts WHERE charge_id = $1 AND status IN ('pending', 'processing')
            ORDER BY number DESC LIMIT 1""",
        charge_id,
    )


async def attempts_of(conn: asyncpg.Connection, charge_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT * FROM {S}.charge_attempts WHERE charge_id = $1 ORDER BY number", charge_id)


async def stale_attempts(
    conn: asyncpg.Connection, *, pending_after_s: float, processing_after_s: float, limit: int
) -> list[asyncpg.Record]:
    """Attempts whose outcome is unknown (pending for ``pending_after_s``) or not yet
    final (a bank debit processing for ``processing_after_s``), oldest first — across
    accounts (the reconciler's owner connection)."""
    return await conn.fetch(
        f"""SELECT * FROM {S}.charge_attempts
            WHERE (status = 'pending' AND written_at < now() - $1 * interval '1 second')
               OR (status = 'processing' AND written_at < now() - $2 * interval '1 second')
            ORDER BY written_at LIMIT $3""",
        pending_after_s,
        processing_after_s,
        limit,
    )
