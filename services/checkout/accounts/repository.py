"""All SQL of accounts, API keys, processor settings and the test clock (checkout owns them)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.accounts import Account, account_from_row

S = "checkout"


async def insert_account(
    conn: asyncpg.Connection, *, account_id: str, name: str, test_mode: bool, settings: dict, processor: dict | None
) -> Account:
    row = await conn.fetchrow(
        f"""INSERT INTO {S}.accounts (id, version, name, test_mode, settings, processor)
            VALUES ($1, 1, $2, $3, $4, $5) RETURNING *""",
        account_id,
        name,
        test_mode,
        settings,
        processor,
    )
    return account_from_row(row)


async def lock_account(conn: asyncpg.Connection, account_id: str) -> Account | None:
    row = await conn.fetchrow(f"SELECT * FROM {S}.accounts WHERE id = $1 FOR UPDATE", account_id)
    return account_from_row(row) if row else None


async def get_account_row(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.accounts WHERE id = $1", account_id)


async def update_account(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    name: str | None = None,
    settings: dict | None = None,
    processor: dict | None = None,
    clock_offset_us: int | None = None,
) -> Account:
    """Apply the given changes and bump the version (snapshots are ordered by it)."""
    row = await conn.fetchrow(
        f"""UPDATE {S}.accounts SET
                name = coalesce($2, name),
                settings = coalesce($3, settings),
                processor = coalesce($4, processor),
                clock_offset_us = coalesce($5, clock_offset_us),
                version = version + 1,
                updated_at = now()
            WHERE id = $1 RETURNING *""",
        account_id,
        name,
        settings,
        processor,
        clock_offset_us,
    )
    return account_from_row(row)


async def bump_version(conn: asyncpg.Connection, account_id: str) -> Account:
    return await update_account(conn, account_id)


async def insert_api_key(
    conn: asyncpg.Connection, *, key_id: str, account_id: str, prefix: str, key_hash: str, scopes: list[str]
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO {S}.api_keys (id, account_id, prefix, key_hash, scopes)
            VALUES ($1, $2, $3, $4, $5) RETURNING *""",
        key_id,
        account_id,
        prefix,
        key_hash,
        scopes,
    )


async def revoke_api_key(conn: asyncpg.Connection, account_id: str, key_id: str, at: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""UPDATE {S}.api_keys SET revoked_at = coalesce(revoked_at, $3)
            WHERE account_id = $1 AND id = $2 RETURNING *""",
        account_id,
        key_id,
        at,
    )


async def list_api_keys(conn: asyncpg.Connection, account_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT * FROM {S}.api_keys WHERE account_id = $1 ORDER BY id", account_id)
