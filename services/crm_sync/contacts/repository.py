"""All SQL of contacts and associations."""

from __future__ import annotations

from datetime import datetime

import asyncpg

S = "crm_sync"
TEXT_FIELDS = (
    "firstname",
    "lastname",
    "phone",
    "company",
    "jobtitle",
    "website",
    "address",
    "city",
    "state",
    "zip",
    "country",
)


async def upsert_contacts(
    conn: asyncpg.Connection, account_id: str, contacts: list[dict], now: datetime, new_ids: list[str]
) -> list[asyncpg.Record]:
    """Set-based upsert by case-insensitive e-mail. Incoming empty values never erase
    what is stored (a merchant's edits survive a purchase that left a field blank)."""
    columns = ", ".join(TEXT_FIELDS)
    arrays = ", ".join(f"${i + 5}::text[]" for i in range(len(TEXT_FIELDS)))
    keep = ",\n                ".join(f"{f} = coalesce(nullif(EXCLUDED.{f}, ''), c.{f})" for f in TEXT_FIELDS)
    return await conn.fetch(
        f"""INSERT INTO {S}.contacts AS c (id, account_id, email, {columns}, created_at, updated_at)
            SELECT t.id, $1, t.email, {", ".join("t." + f for f in TEXT_FIELDS)}, $4, $4
            FROM unnest($2::text[], $3::text[], {arrays}) AS t(id, email, {columns})
            ON CONFLICT (account_id, lower(email)) DO UPDATE SET
                {keep},
                updated_at = EXCLUDED.updated_at,
                version = c.version + 1
            RETURNING c.*, (xmax = 0) AS created""",
        account_id,
        new_ids,
        [c["email"] for c in contacts],
        now,
        *[[c.get(f) for c in contacts] for f in TEXT_FIELDS],
    )


async def associate(
    conn: asyncpg.Connection, account_id: str, object_type: str, object_id: str, related_type: str, related_id: str
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.associations (account_id, object_type, object_id, related_type, related_id)
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
        account_id,
        object_type,
        object_id,
        related_type,
        related_id,
    )


async def get_contact(conn: asyncpg.Connection, account_id: str, contact_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.contacts WHERE account_id = $1 AND id = $2", account_id, contact_id)


async def list_contacts(
    conn: asyncpg.Connection, account_id: str, *, email: str | None, limit: int, starting_after: str | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.contacts
            WHERE account_id = $1 AND ($2::text IS NULL OR lower(email) = lower($2))
              AND ($3::text IS NULL OR id < $3)
            ORDER BY id DESC LIMIT $4""",
        account_id,
        email,
        starting_after,
        limit,
    )


async def related(conn: asyncpg.Connection, account_id: str, object_type: str, object_id: str) -> list[asyncpg.Record]:
    """The records associated with one, sorted by kind and id. Subscriptions come from their
    projection (billing's snapshots, which say whose they are): a contact's are those of its
    id, or — while billing knows only the e-mail — of its e-mail (any case); a company's and
    a deal's are those naming it."""
    return await conn.fetch(
        f"""SELECT related_type, related_id FROM {S}.associations
            WHERE account_id = $1 AND object_type = $2 AND object_id = $3
            UNION
            SELECT 'subscription', s.id FROM {S}.subscriptions s
            WHERE s.account_id = $1 AND CASE $2
                WHEN 'contact' THEN s.contact_id = $3 OR (s.contact_id IS NULL AND lower(s.email) =
                    (SELECT lower(c.email) FROM {S}.contacts c WHERE c.account_id = $1 AND c.id = $3))
                WHEN 'company' THEN s.company_id = $3
                WHEN 'deal' THEN s.deal_ids @> ARRAY[$3::text]
                ELSE false END
            ORDER BY related_type, related_id""",
        account_id,
        object_type,
        object_id,
    )


async def find_by_email(conn: asyncpg.Connection, account_id: str, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.contacts WHERE account_id = $1 AND lower(email) = lower($2)", account_id, email
    )


async def insert_contact(
    conn: asyncpg.Connection, account_id: str, contact_id: str, values: dict, now: datetime
) -> asyncpg.Record | None:
    """A merchant-entered contact; None when the e-mail is taken (case-insensitively)."""
    columns = ["email", *TEXT_FIELDS, "company_id"]
    params = ", ".join(f"${i + 5}" for i in range(len(columns)))
    return await conn.fetchrow(
        f"""INSERT INTO {S}.contacts (id, account_id, created_at, updated_at, {", ".join(columns)})
            VALUES ($1, $2, $3, $4, {params})
            ON CONFLICT (account_id, lower(email)) DO NOTHING
            RETURNING *""",
        contact_id,
        account_id,
        now,
        now,
        *[values.get(c) for c in columns],
    )


async def update_contact(
    conn: asyncpg.Connection, account_id: str, contact_id: str, changes: dict, now: datetime
) -> asyncpg.Record | None:
    """Set exactly the given columns (a merchant's edit: None clears a field)."""
    allowed = {"email", *TEXT_FIELDS, "company_id"}
    names = [c for c in changes if c in allowed]
    sets = "".join(f", {c} = ${i + 4}" for i, c in enumerate(names))
    return await conn.fetchrow(
        f"""UPDATE {S}.contacts SET updated_at = $3, version = version + 1{sets}
            WHERE account_id = $1 AND id = $2 RETURNING *""",
        account_id,
        contact_id,
        now,
        *[changes[c] for c in names],
    )


async def set_company_if_empty(
    conn: asyncpg.Connection, account_id: str, contact_id: str, company_id: str, now: datetime
) -> asyncpg.Record | None:
    """The contact's company, unless it already has one; the row when it changed."""
    return await conn.fetchrow(
        f"""UPDATE {S}.contacts SET company_id = $3, updated_at = $4, version = version + 1
            WHERE account_id = $1 AND id = $2 AND company_id IS NULL RETURNING *""",
        account_id,
        contact_id,
        company_id,
        now,
    )
