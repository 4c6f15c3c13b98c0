"""All SQL of the catalogue: products, tax rates, discount codes and redemptions.

Every query names the account (``account_id = $1``) besides row-level security, and lists
page newest first by id (ids are time-ordered).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import asyncpg

S = "checkout"


# -- products ---------------------------------------------------------------------------------
async def insert_product(
    conn: asyncpg.Connection,
    *,
    product_id: str,
    account_id: str,
    name: str,
    description: str | None,
    sku: str | None,
    unit_amount: int,
    currency: str,
    recurring_interval: str | None,
    active: bool,
    now: datetime,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO {S}.products
              (id, account_id, name, description, sku, unit_amount, currency, recurring_interval,
               active, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING *""",
        product_id,
        account_id,
        name,
        description,
        sku,
        unit_amount,
        currency,
        recurring_interval,
        active,
        now,
    )


async def get_product(
    conn: asyncpg.Connection, account_id: str, product_id: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    """A product that is not deleted (active or not)."""
    sql = f"SELECT * FROM {S}.products WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL"
    return await conn.fetchrow(sql + (" FOR UPDATE" if for_update else ""), account_id, product_id)


async def get_active_product(conn: asyncpg.Connection, account_id: str, product_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT * FROM {S}.products
            WHERE account_id = $1 AND id = $2 AND active AND deleted_at IS NULL""",
        account_id,
        product_id,
    )


async def list_products(
    conn: asyncpg.Connection, account_id: str, *, active: bool | None, limit: int, starting_after: str | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.products
            WHERE account_id = $1 AND deleted_at IS NULL
              AND ($2::text IS NULL OR id < $2) AND ($3::boolean IS NULL OR active = $3)
            ORDER BY id DESC LIMIT $4""",
        account_id,
        starting_after,
        active,
        limit,
    )


async def update_product(
    conn: asyncpg.Connection,
    account_id: str,
    product_id: str,
    *,
    name: str,
    description: str | None,
    sku: str | None,
    unit_amount: int,
    currency: str,
    recurring_interval: str | None,
    active: bool,
    now: datetime,
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""UPDATE {S}.products
            SET name = $3, description = $4, sku = $5, unit_amount = $6, currency = $7,
                recurring_interval = $8, active = $9, updated_at = $10
            WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING *""",
        account_id,
        product_id,
        name,
        description,
        sku,
        unit_amount,
        currency,
        recurring_interval,
        active,
        now,
    )


async def delete_product(conn: asyncpg.Connection, account_id: str, product_id: str, now: datetime) -> bool:
    """Soft delete: the row stays for the records that name it, the API no longer shows it."""
    deleted = await conn.fetchval(
        f"""UPDATE {S}.products SET deleted_at = $3, updated_at = $3, active = false
            WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING id""",
        account_id,
        product_id,
        now,
    )
    return deleted is not None


# -- tax rates --------------------------------------------------------------------------------
async def insert_tax_rate(
    conn: asyncpg.Connection,
    *,
    tax_rate_id: str,
    account_id: str,
    name: str,
    percentage: Decimal,
    active: bool,
    now: datetime,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO {S}.tax_rates (id, account_id, name, percentage, active, created_at)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
        tax_rate_id,
        account_id,
        name,
        percentage,
        active,
        now,
    )


async def get_tax_rate(conn: asyncpg.Connection, account_id: str, tax_rate_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.tax_rates WHERE account_id = $1 AND id = $2",
        account_id,
        tax_rate_id,
    )


async def list_tax_rates(
    conn: asyncpg.Connection, account_id: str, *, active: bool | None, limit: int, starting_after: str | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.tax_rates
            WHERE account_id = $1 AND ($2::text IS NULL OR id < $2) AND ($3::boolean IS NULL OR active = $3)
            ORDER BY id DESC LIMIT $4""",
        account_id,
        starting_after,
        active,
        limit,
    )


async def active_tax_rates(conn: asyncpg.Connection, account_id: str, ids: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT id, name, percentage FROM {S}.tax_rates
            WHERE account_id = $1 AND id = ANY($2::text[]) AND active""",
        account_id,
        ids,
    )


# -- discount codes -----------------------------------------------------------------------------
async def insert_discount_code(
    conn: asyncpg.Connection,
    *,
    discount_code_id: str,
    account_id: str,
    code: str,
    percent_off: Decimal | None,
    amount_off: int | None,
    currency: str | None,
    expires_at: datetime | None,
    max_redemptions: int | None,
    active: bool,
    now: datetime,
) -> asyncpg.Record | None:
    """The new code, or None when the account already has this code (in any case)."""
    return await conn.fetchrow(
        f"""INSERT INTO {S}.discount_codes
              (id, account_id, code, percent_off, amount_off, currency, expires_at, max_redemptions,
               active, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (account_id, lower(code)) DO NOTHING RETURNING *""",
        discount_code_id,
        account_id,
        code,
        percent_off,
        amount_off,
        currency,
        expires_at,
        max_redemptions,
        active,
        now,
    )


async def get_discount_code(conn: asyncpg.Connection, account_id: str, discount_code_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.discount_codes WHERE account_id = $1 AND id = $2",
        account_id,
        discount_code_id,
    )


async def list_discount_codes(
    conn: asyncpg.Connection, account_id: str, *, active: bool | None, limit: int, starting_after: str | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.discount_codes
            WHERE account_id = $1 AND ($2::text IS NULL OR id < $2) AND ($3::boolean IS NULL OR active = $3)
            ORDER BY id DESC LIMIT $4""",
        account_id,
        starting_after,
        active,
        limit,
    )


async def deactivate_discount_code(
    conn: asyncpg.Connection, account_id: str, discount_code_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"UPDATE {S}.discount_codes SET active = false WHERE account_id = $1 AND id = $2 RETURNING *",
        account_id,
        discount_code_id,
    )


#: A redemption ``r`` reserved by a session ``s`` that expired unpaid: it counts as given back
#: (find_usable_code) and is deleted the next time the code runs out
#: (release_abandoned_reservations).
_ABANDONED = "r.payment_id IS NULL AND s.status <> 'complete' AND s.expires_at <= {now}"


async def find_usable_code(
    conn: asyncpg.Connection, account_id: str, code: str, *, currency: str, now: datetime
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT id, code, percent_off, amount_off, currency FROM {S}.discount_codes c
            WHERE account_id = $1 AND lower(code) = lower($2) AND active
              AND (expires_at IS NULL OR expires_at > $4)
              AND (max_redemptions IS NULL OR times_redeemed < max_redemptions
                   -- used up, unless some redemptions are only reserved by sessions that
                   -- expired unpaid (given back when the code is next redeemed)
                   OR times_redeemed - (
                       SELECT count(*) FROM {S}.discount_redemptions r
                       JOIN {S}.checkout_sessions s ON s.account_id = r.account_id AND s.id = r.session_id
                       WHERE r.account_id = c.account_id AND r.discount_code_id = c.id
                         AND {_ABANDONED.format(now="$4")}
                   ) < max_redemptions)
              AND (amount_off IS NULL OR currency = $3)""",
        account_id,
        code,
        currency,
        now,
    )


async def take_redemption(conn: asyncpg.Connection, account_id: str, discount_code_id: str) -> bool:
    """Count one redemption unless the limit is reached. One conditional UPDATE: a second
    transaction racing for the last redemption waits on the row lock, then re-checks the
    condition against the committed count and updates nothing."""
    taken = await conn.fetchval(
        f"""UPDATE {S}.discount_codes SET times_redeemed = times_redeemed + 1
            WHERE account_id = $1 AND id = $2
              AND (max_redemptions IS NULL OR times_redeemed < max_redemptions)
            RETURNING id""",
        account_id,
        discount_code_id,
    )
    return taken is not None


async def insert_redemption(
    conn: asyncpg.Connection,
    *,
    account_id: str,
    discount_code_id: str,
    session_id: str,
    payment_id: str | None,
    now: datetime,
) -> bool:
    """False when the session already has a redemption. ``payment_id`` None: a
    reservation made before the charge (`attach_payment` completes it)."""
    inserted = await conn.fetchval(
        f"""INSERT INTO {S}.discount_redemptions (session_id, account_id, discount_code_id, payment_id, created_at)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO NOTHING RETURNING session_id""",
        session_id,
        account_id,
        discount_code_id,
        payment_id,
        now,
    )
    return inserted is not None


async def get_redemption(conn: asyncpg.Connection, account_id: str, session_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.discount_redemptions WHERE account_id = $1 AND session_id = $2",
        account_id,
        session_id,
    )


async def attach_payment(conn: asyncpg.Connection, account_id: str, session_id: str, payment_id: str) -> bool:
    """The reserved redemption of ``session_id`` was paid by ``payment_id``."""
    updated = await conn.fetchval(
        f"""UPDATE {S}.discount_redemptions SET payment_id = $3
            WHERE account_id = $1 AND session_id = $2 AND payment_id IS NULL RETURNING session_id""",
        account_id,
        session_id,
        payment_id,
    )
    return updated is not None


async def release_reservation(conn: asyncpg.Connection, account_id: str, session_id: str) -> bool:
    """Give back the redemption reserved by an unpaid session (its charge was declined)."""
    code_id = await conn.fetchval(
        f"""DELETE FROM {S}.discount_redemptions
            WHERE account_id = $1 AND session_id = $2 AND payment_id IS NULL RETURNING discount_code_id""",
        account_id,
        session_id,
    )
    if code_id is None:
        return False
    await conn.execute(
        f"""UPDATE {S}.discount_codes SET times_redeemed = times_redeemed - 1
            WHERE account_id = $1 AND id = $2""",
        account_id,
        code_id,
    )
    return True


async def release_abandoned_reservations(
    conn: asyncpg.Connection, account_id: str, discount_code_id: str, now: datetime
) -> int:
    """Give back the redemptions reserved by sessions of this code that expired unpaid
    (a buyer who left during 3-D Secure). Returns how many were released."""
    released = await conn.fetchval(
        f"""WITH gone AS (
                DELETE FROM {S}.discount_redemptions r
                USING {S}.checkout_sessions s
                WHERE r.account_id = $1 AND r.discount_code_id = $2
                  AND s.account_id = r.account_id AND s.id = r.session_id
                  AND {_ABANDONED.format(now="$3")}
                RETURNING r.session_id)
            SELECT count(*) FROM gone""",
        account_id,
        discount_code_id,
        now,
    )
    if released:
        await conn.execute(
            f"""UPDATE {S}.discount_codes SET times_redeemed = times_redeemed - $3
                WHERE account_id = $1 AND id = $2""",
            account_id,
            discount_code_id,
            released,
        )
    return released
