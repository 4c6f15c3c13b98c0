"""All SQL on ``billing.subscriptions``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg

from shared.db import assignments

S = "billing"

_INSERT_COLUMNS = (
    "id",
    "account_id",
    "status",
    "currency",
    "interval",
    "start_date",
    "payments_total",
    "payments_made",
    "end_date",
    "next_index",
    "next_payment_date",
    "amount",
    "subtotal",
    "tax",
    "line_items",
    "email",
    "contact",
    "contact_id",
    "company_id",
    "deal_ids",
    "billing_address",
    "collection_method",
    "payment_terms_days",
    "collect_method_on_first_invoice",
    "invoice_settings",
    "source_type",
    "source_id",
    "origin_payment_id",
    "subscription_group",
    "processor_customer_id",
    "payment_method_id",
    "method_type",
    "pm_token_hash",
    "metadata",
    "test_mode",
    "created_at",
    "updated_at",
    "ended_at",
)


async def insert(conn: asyncpg.Connection, row: dict[str, Any]) -> asyncpg.Record | None:
    """Insert a subscription; None when the same purchase group already made one."""
    names = [c for c in _INSERT_COLUMNS if c in row]  # absent: the column's default
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return await conn.fetchrow(
        f"""INSERT INTO {S}.subscriptions ({", ".join(names)}) VALUES ({params})
            ON CONFLICT (account_id, origin_payment_id, subscription_group) DO NOTHING
            RETURNING *""",
        *(row[c] for c in names),
    )


async def set_token_hash(conn: asyncpg.Connection, subscription_id: str, token_hash: bytes) -> None:
    await conn.execute(f"UPDATE {S}.subscriptions SET pm_token_hash = $2 WHERE id = $1", subscription_id, token_hash)


async def get(
    conn: asyncpg.Connection, account_id: str, subscription_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.subscriptions WHERE account_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        account_id,
        subscription_id,
    )


async def by_origin_payment(conn: asyncpg.Connection, account_id: str, payment_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT * FROM {S}.subscriptions WHERE account_id = $1 AND origin_payment_id = $2 ORDER BY id FOR UPDATE",
        account_id,
        payment_id,
    )


async def update(
    conn: asyncpg.Connection, subscription_id: str, changes: dict[str, Any], at: datetime
) -> asyncpg.Record:
    """Apply ``changes`` and bump the version (every change is a new snapshot)."""
    sets, values = assignments(changes, "version = version + 1", "updated_at = $2", first=3)
    return await conn.fetchrow(
        f"UPDATE {S}.subscriptions SET {sets} WHERE id = $1 RETURNING *", subscription_id, at, *values
    )


async def list_subscriptions(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    status: str | None,
    contact_id: str | None,
    limit: int,
    starting_after: str | None,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.subscriptions
            WHERE account_id = $1
              AND ($2::text IS NULL OR status = $2)
              AND ($3::text IS NULL OR contact_id = $3)
              AND ($4::text IS NULL OR id < $4)
            ORDER BY id DESC LIMIT $5""",
        account_id,
        status,
        contact_id,
        starting_after,
        limit,
    )


async def set_contact_for_payment(
    conn: asyncpg.Connection,
    account_id: str,
    payment_id: str,
    contact_id: str,
    company_id: str | None,
    deal_ids: list[str],
    at: datetime,
) -> list[asyncpg.Record]:
    """crm_sync upserted the purchase's contact: the purchase's subscriptions learn the
    contact, company and deals (the link's deals, PRODUCT §6.1). Unchanged rows are left
    alone, so a repeated event makes no new version."""
    return await conn.fetch(
        f"""UPDATE {S}.subscriptions
            SET contact_id = $3,
                company_id = COALESCE($4, company_id),
                deal_ids = ARRAY(SELECT DISTINCT unnest(deal_ids || $5::text[]) ORDER BY 1),
                version = version + 1, updated_at = $6
            WHERE account_id = $1 AND origin_payment_id = $2
              AND (contact_id IS DISTINCT FROM $3
                   OR ($4::text IS NOT NULL AND company_id IS DISTINCT FROM $4)
                   OR NOT (deal_ids @> $5::text[]))
            RETURNING *""",
        account_id,
        payment_id,
        contact_id,
        company_id,
        deal_ids,
        at,
    )


async def remember_purchase_contact(
    conn: asyncpg.Connection,
    account_id: str,
    payment_id: str,
    contact_id: str,
    company_id: str | None,
    deal_ids: list[str],
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.purchase_contacts AS pc (account_id, payment_id, contact_id, company_id, deal_ids)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (account_id, payment_id) DO UPDATE
            SET contact_id = EXCLUDED.contact_id,
                company_id = COALESCE(EXCLUDED.company_id, pc.company_id),
                deal_ids = ARRAY(SELECT DISTINCT unnest(pc.deal_ids || EXCLUDED.deal_ids) ORDER BY 1)""",
        account_id,
        payment_id,
        contact_id,
        company_id,
        deal_ids,
    )


async def purchase_contact(conn: asyncpg.Connection, account_id: str, payment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.purchase_contacts WHERE account_id = $1 AND payment_id = $2", account_id, payment_id
    )


async def set_pm_setup(conn: asyncpg.Connection, subscription_id: str, setup: dict[str, Any]) -> None:
    """The update page's SetupIntent (no new version: not a change of the subscription)."""
    await conn.execute(f"UPDATE {S}.subscriptions SET pm_setup = $2 WHERE id = $1", subscription_id, setup)


async def resolve_token(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.resolve_payment_method_token($1)", token_hash)


async def local_today(conn: asyncpg.Connection, account_id: str) -> date:
    """The account's calendar date on its own clock (test clock included)."""
    return await conn.fetchval(
        f"""SELECT ((now() + clock_offset_us * interval '1 microsecond')
                    AT TIME ZONE COALESCE(settings->>'time_zone', 'UTC'))::date
            FROM {S}.accounts WHERE id = $1""",
        account_id,
    )
