"""All SQL of payment links."""

from __future__ import annotations

from datetime import datetime

import asyncpg

S = "checkout"


async def insert_link(
    conn: asyncpg.Connection,
    *,
    link_id: str,
    account_id: str,
    slug: str,
    name: str,
    active: bool,
    currency: str,
    line_items: list[dict],
    settings: dict,
    now: datetime,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO {S}.payment_links
              (id, account_id, slug, name, active, currency, line_items, settings, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING *""",
        link_id, account_id, slug, name, active, currency, line_items, settings, now,
    )  # fmt: skip


async def update_link(
    conn: asyncpg.Connection,
    account_id: str,
    link_id: str,
    *,
    name: str | None,
    active: bool | None,
    currency: str,
    line_items: list[dict],
    settings: dict,
    now: datetime,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""UPDATE {S}.payment_links
            SET name = coalesce($3, name), active = coalesce($4, active), currency = $5,
                line_items = $6, settings = $7, updated_at = $8
            WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING *""",
        account_id, link_id, name, active, currency, line_items, settings, now,
    )  # fmt: skip


async def get_link(
    conn: asyncpg.Connection, account_id: str, link_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.payment_links WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL"
        + (" FOR UPDATE" if lock else ""),
        account_id,
        link_id,
    )


async def list_links(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    query: str | None = None,
    active: bool | None = None,
    limit: int,
    starting_after: str | None,
) -> list[asyncpg.Record]:
    pattern = None
    if query:
        pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return await conn.fetch(
        f"""SELECT * FROM {S}.payment_links
            WHERE account_id = $1 AND deleted_at IS NULL
              AND ($2::text IS NULL OR id < $2)
              AND ($3::text IS NULL OR lower(name) LIKE $3)
              AND ($4::boolean IS NULL OR active = $4)
            ORDER BY id DESC LIMIT $5""",
        account_id, starting_after, pattern, active, limit,
    )  # fmt: skip


async def delete_link(conn: asyncpg.Connection, account_id: str, link_id: str, now: datetime) -> bool:
    """Soft delete: the stable URL stops resolving; sessions and payments keep their history."""
    deleted = await conn.fetchval(
        f"""UPDATE {S}.payment_links SET deleted_at = $3, active = false, updated_at = $3
            WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING true""",
        account_id, link_id, now,
    )  # fmt: skip
    return bool(deleted)


async def deactivate_after_payment(conn: asyncpg.Connection, account_id: str, link_id: str, now: datetime) -> None:
    await conn.execute(
        f"""UPDATE {S}.payment_links SET active = false, updated_at = $3
            WHERE account_id = $1 AND id = $2 AND active
              AND coalesce((settings->>'deactivate_after_payment')::boolean, false)""",
        account_id, link_id, now,
    )  # fmt: skip


async def resolve_slug(pool: asyncpg.Pool, slug: str) -> asyncpg.Record | None:
    return await pool.fetchrow(f"SELECT account_id, link_id FROM {S}.resolve_link_slug($1)", slug)
