"""All SQL of companies, pipelines and their stages, deals, and CRM associations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import asyncpg

S = "crm_sync"
COMPANY_TEXT = ("phone", "website", "industry", "address", "city", "state", "zip", "country", "description")
#: Object types that live in this schema: associations among them are stored both ways.
CRM_TYPES = frozenset({"contact", "company", "deal"})
_TABLES = {"contact": "contacts", "company": "companies", "deal": "deals", "pipeline": "pipelines"}


# -- associations -------------------------------------------------------------------------------
async def associate(
    conn: asyncpg.Connection,
    account_id: str,
    object_type: str,
    object_id: str,
    related_type: str,
    related_id: str,
    *,
    source: str = "automatic",
) -> None:
    """Associate two records; a pair of CRM records is stored in both directions so
    that either side lists the other. Repeating it changes nothing."""
    pairs = [(object_type, object_id, related_type, related_id)]
    if object_type in CRM_TYPES and related_type in CRM_TYPES:
        pairs.append((related_type, related_id, object_type, object_id))
    await conn.execute(
        f"""INSERT INTO {S}.associations (account_id, object_type, object_id, related_type, related_id, source)
            SELECT $1, t.ot, t.oi, t.rt, t.ri, $6
            FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS t(ot, oi, rt, ri)
            ON CONFLICT DO NOTHING""",
        account_id,
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        [p[2] for p in pairs],
        [p[3] for p in pairs],
        source,
    )


async def dissociate(
    conn: asyncpg.Connection, account_id: str, object_type: str, object_id: str, related_type: str, related_id: str
) -> None:
    await conn.execute(
        f"""DELETE FROM {S}.associations
            WHERE account_id = $1 AND ((object_type = $2 AND object_id = $3 AND related_type = $4 AND related_id = $5)
                OR (object_type = $4 AND object_id = $5 AND related_type = $2 AND related_id = $3))""",
        account_id,
        object_type,
        object_id,
        related_type,
        related_id,
    )


async def existing_ids(conn: asyncpg.Connection, account_id: str, kind: str, ids: Iterable[str]) -> set[str]:
    rows = await conn.fetch(
        f"SELECT id FROM {S}.{_TABLES[kind]} WHERE account_id = $1 AND id = ANY($2::text[])", account_id, list(ids)
    )
    return {r["id"] for r in rows}


async def lock_existing(conn: asyncpg.Connection, account_id: str, kind: str, record_id: str) -> bool:
    """Whether the record exists, holding a key-share lock on it until the transaction
    ends (a concurrent delete waits, so it sees what this transaction associated)."""
    found = await conn.fetchval(
        f"SELECT true FROM {S}.{_TABLES[kind]} WHERE account_id = $1 AND id = $2 FOR KEY SHARE",
        account_id,
        record_id,
    )
    return bool(found)


# -- companies ----------------------------------------------------------------------------------
async def insert_company(
    conn: asyncpg.Connection, account_id: str, company_id: str, values: dict, now: datetime
) -> asyncpg.Record | None:
    """None when the domain (or, without a domain, the name) is taken."""
    columns = ["name", "domain", *COMPANY_TEXT]
    params = ", ".join(f"${i + 5}" for i in range(len(columns)))
    return await conn.fetchrow(
        f"""INSERT INTO {S}.companies (id, account_id, created_at, updated_at, {", ".join(columns)})
            VALUES ($1, $2, $3, $4, {params})
            ON CONFLICT DO NOTHING RETURNING *""",
        company_id,
        account_id,
        now,
        now,
        *[values.get(c) for c in columns],
    )


async def company_conflict(
    conn: asyncpg.Connection, account_id: str, name: str, domain: str | None, *, exclude_id: str | None = None
) -> asyncpg.Record | None:
    """The company that a company named ``name`` at ``domain`` would duplicate."""
    if domain is not None:
        return await conn.fetchrow(
            f"""SELECT id, 'domain' AS field FROM {S}.companies
                WHERE account_id = $1 AND domain = $2 AND id IS DISTINCT FROM $3""",
            account_id,
            domain,
            exclude_id,
        )
    return await conn.fetchrow(
        f"""SELECT id, 'name' AS field FROM {S}.companies
            WHERE account_id = $1 AND domain IS NULL AND lower(name) = lower($2) AND id IS DISTINCT FROM $3""",
        account_id,
        name,
        exclude_id,
    )


async def get_company(conn: asyncpg.Connection, account_id: str, company_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.companies WHERE account_id = $1 AND id = $2", account_id, company_id)


async def list_companies(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    name: str | None,
    domain: str | None,
    limit: int,
    starting_after: str | None,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.companies
            WHERE account_id = $1
              AND ($2::text IS NULL OR lower(name) = lower($2))
              AND ($3::text IS NULL OR domain = lower($3))
              AND ($4::text IS NULL OR id < $4)
            ORDER BY id DESC LIMIT $5""",
        account_id,
        name,
        domain,
        starting_after,
        limit,
    )


async def update_company(
    conn: asyncpg.Connection, account_id: str, company_id: str, changes: dict, now: datetime
) -> asyncpg.Record | None:
    allowed = {"name", "domain", *COMPANY_TEXT}
    names = [c for c in changes if c in allowed]
    sets = "".join(f", {c} = ${i + 4}" for i, c in enumerate(names))
    return await conn.fetchrow(
        f"""UPDATE {S}.companies SET updated_at = $3, version = version + 1{sets}
            WHERE account_id = $1 AND id = $2 RETURNING *""",
        account_id,
        company_id,
        now,
        *[changes[c] for c in names],
    )


async def find_company_by_name(conn: asyncpg.Connection, account_id: str, name: str) -> asyncpg.Record | None:
    """The company called ``name`` (any case): the one without a domain if there is one,
    else the oldest."""
    return await conn.fetchrow(
        f"""SELECT * FROM {S}.companies WHERE account_id = $1 AND lower(name) = lower($2)
            ORDER BY (domain IS NULL) DESC, id LIMIT 1""",
        account_id,
        name,
    )


async def insert_company_named(
    conn: asyncpg.Connection, account_id: str, company_id: str, name: str, now: datetime
) -> asyncpg.Record | None:
    """A company known only by name; None when a concurrent writer created it first."""
    return await conn.fetchrow(
        f"""INSERT INTO {S}.companies (id, account_id, name, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $4)
            ON CONFLICT (account_id, lower(name)) WHERE domain IS NULL DO NOTHING RETURNING *""",
        company_id,
        account_id,
        name,
        now,
    )


# -- pipelines ------------------------------------------------------------------------------------
_PIPELINE_SELECT = f"""
    SELECT p.*, coalesce((
        SELECT jsonb_agg(jsonb_build_object('id', s.id, 'name', s.name, 'kind', s.kind,
                                            'display_order', s.display_order) ORDER BY s.display_order)
        FROM {S}.pipeline_stages s WHERE s.account_id = p.account_id AND s.pipeline_id = p.id
    ), '[]'::jsonb) AS stages
    FROM {S}.pipelines p"""


async def default_pipeline_id(conn: asyncpg.Connection, account_id: str) -> str | None:
    return await conn.fetchval(f"SELECT id FROM {S}.pipelines WHERE account_id = $1 AND is_default", account_id)


async def insert_pipeline(
    conn: asyncpg.Connection,
    account_id: str,
    pipeline_id: str,
    name: str,
    stages: list[tuple[str, str, str]],
    now: datetime,
    *,
    is_default: bool = False,
) -> bool:
    """A pipeline with its stages ``[(id, name, kind)]`` in order. False (nothing
    written) when the name is taken, or for a default pipeline, when the account has one."""
    inserted = await conn.fetchval(
        f"""INSERT INTO {S}.pipelines (id, account_id, name, is_default, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING RETURNING true""",
        pipeline_id,
        account_id,
        name,
        is_default,
        now,
    )
    if not inserted:
        return False
    await conn.execute(
        f"""INSERT INTO {S}.pipeline_stages (id, account_id, pipeline_id, name, kind, display_order)
            SELECT t.id, $1, $2, t.name, t.kind, t.ord - 1
            FROM unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS t(id, name, kind, ord)""",
        account_id,
        pipeline_id,
        [s[0] for s in stages],
        [s[1] for s in stages],
        [s[2] for s in stages],
    )
    return True


async def pipeline_name_taken(conn: asyncpg.Connection, account_id: str, name: str) -> bool:
    return bool(
        await conn.fetchval(
            f"SELECT true FROM {S}.pipelines WHERE account_id = $1 AND lower(name) = lower($2)", account_id, name
        )
    )


async def get_pipeline(conn: asyncpg.Connection, account_id: str, pipeline_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"{_PIPELINE_SELECT} WHERE p.account_id = $1 AND p.id = $2", account_id, pipeline_id)


async def list_pipelines(
    conn: asyncpg.Connection, account_id: str, *, limit: int, starting_after: str | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""{_PIPELINE_SELECT} WHERE p.account_id = $1 AND ($2::text IS NULL OR p.id < $2)
            ORDER BY p.id DESC LIMIT $3""",
        account_id,
        starting_after,
        limit,
    )


async def get_stage(conn: asyncpg.Connection, account_id: str, stage_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.pipeline_stages WHERE account_id = $1 AND id = $2", account_id, stage_id
    )


async def first_stage(conn: asyncpg.Connection, account_id: str, pipeline_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT * FROM {S}.pipeline_stages WHERE account_id = $1 AND pipeline_id = $2
            ORDER BY display_order LIMIT 1""",
        account_id,
        pipeline_id,
    )


# -- deals -------------------------------------------------------------------------------------------
_DEAL_SELECT = f"""
    SELECT d.*, s.kind AS stage_kind, ARRAY(
        SELECT a.related_id FROM {S}.associations a
        WHERE a.account_id = d.account_id AND a.object_type = 'deal' AND a.object_id = d.id
          AND a.related_type = 'contact' ORDER BY a.related_id
    ) AS contact_ids
    FROM {S}.deals d
    JOIN {S}.pipeline_stages s ON s.account_id = d.account_id AND s.pipeline_id = d.pipeline_id AND s.id = d.stage_id"""

DEAL_COLUMNS = ("name", "amount", "currency", "pipeline_id", "stage_id", "company_id")


async def insert_deal(
    conn: asyncpg.Connection,
    account_id: str,
    deal_id: str,
    values: dict,
    now: datetime,
    *,
    created_by_link_id: str | None = None,
) -> None:
    params = ", ".join(f"${i + 6}" for i in range(len(DEAL_COLUMNS)))
    await conn.execute(
        f"""INSERT INTO {S}.deals
                (id, account_id, created_at, updated_at, created_by_link_id, {", ".join(DEAL_COLUMNS)})
            VALUES ($1, $2, $3, $4, $5, {params})""",
        deal_id,
        account_id,
        now,
        now,
        created_by_link_id,
        *[values.get(c) for c in DEAL_COLUMNS],
    )


async def update_deal(conn: asyncpg.Connection, account_id: str, deal_id: str, changes: dict, now: datetime) -> bool:
    names = [c for c in changes if c in DEAL_COLUMNS]
    sets = "".join(f", {c} = ${i + 4}" for i, c in enumerate(names))
    status = await conn.execute(
        f"""UPDATE {S}.deals SET updated_at = $3, version = version + 1{sets}
            WHERE account_id = $1 AND id = $2""",
        account_id,
        deal_id,
        now,
        *[changes[c] for c in names],
    )
    return status != "UPDATE 0"


async def get_deal(
    conn: asyncpg.Connection, account_id: str, deal_id: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF d" if for_update else ""
    return await conn.fetchrow(f"{_DEAL_SELECT} WHERE d.account_id = $1 AND d.id = $2{lock}", account_id, deal_id)


async def list_deals(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    pipeline: str | None,
    stage: str | None,
    company_id: str | None,
    contact_id: str | None,
    limit: int,
    starting_after: str | None,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""{_DEAL_SELECT}
            WHERE d.account_id = $1
              AND ($2::text IS NULL OR d.pipeline_id = $2)
              AND ($3::text IS NULL OR d.stage_id = $3)
              AND ($4::text IS NULL OR d.company_id = $4)
              AND ($5::text IS NULL OR EXISTS (
                  SELECT 1 FROM {S}.associations a WHERE a.account_id = d.account_id AND a.object_type = 'deal'
                    AND a.object_id = d.id AND a.related_type = 'contact' AND a.related_id = $5))
              AND ($6::text IS NULL OR d.id < $6)
            ORDER BY d.id DESC LIMIT $7""",
        account_id,
        pipeline,
        stage,
        company_id,
        contact_id,
        starting_after,
        limit,
    )


async def open_deal_of_link(
    conn: asyncpg.Connection, account_id: str, link_id: str, link_deal_id: str | None
) -> asyncpg.Record | None:
    """The link's open deal (in a stage that is not closed): its own deal first, else the
    newest deal the link created; locked for the caller's transaction."""
    return await conn.fetchrow(
        f"""{_DEAL_SELECT}
            WHERE d.account_id = $1 AND s.kind = 'open'
              AND (d.id = $3 OR d.created_by_link_id = $2)
            ORDER BY (d.id = coalesce($3, '')) DESC, d.id DESC
            LIMIT 1 FOR UPDATE OF d""",
        account_id,
        link_id,
        link_deal_id,
    )


async def set_deal_company_if_empty(
    conn: asyncpg.Connection, account_id: str, deal_id: str, company_id: str, now: datetime
) -> bool:
    status = await conn.execute(
        f"""UPDATE {S}.deals SET company_id = $3, updated_at = $4, version = version + 1
            WHERE account_id = $1 AND id = $2 AND company_id IS NULL""",
        account_id,
        deal_id,
        company_id,
        now,
    )
    return status != "UPDATE 0"


async def deal_contact_ids(conn: asyncpg.Connection, account_id: str, deal_id: str) -> set[str]:
    rows = await conn.fetch(
        f"""SELECT related_id FROM {S}.associations
            WHERE account_id = $1 AND object_type = 'deal' AND object_id = $2 AND related_type = 'contact'""",
        account_id,
        deal_id,
    )
    return {r["related_id"] for r in rows}


async def payment_has(conn: asyncpg.Connection, account_id: str, payment_id: str, kind: str) -> bool:
    """Whether the payment is already associated with a record of ``kind`` (by a purchase,
    an earlier delivery or a merchant)."""
    found = await conn.fetchval(
        f"""SELECT true FROM {S}.associations
            WHERE account_id = $1 AND related_type = 'payment' AND related_id = $2 AND object_type = $3
            LIMIT 1""",
        account_id,
        payment_id,
        kind,
    )
    return bool(found)


# -- subscriptions (a projection of billing's) -----------------------------------------------------
async def apply_subscription(
    conn: asyncpg.Connection,
    account_id: str,
    subscription_id: str,
    *,
    version: int,
    status: str,
    contact_id: str | None,
    email: str | None,
    company_id: str | None,
    deal_ids: list[str],
    now: datetime,
) -> bool:
    """Keep a snapshot of a subscription if it is newer than the stored one; True if kept."""
    applied = await conn.fetchval(
        f"""INSERT INTO {S}.subscriptions AS s
                (id, account_id, version, status, contact_id, email, company_id, deal_ids, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (id) DO UPDATE SET
                version = EXCLUDED.version, status = EXCLUDED.status, contact_id = EXCLUDED.contact_id,
                email = EXCLUDED.email, company_id = EXCLUDED.company_id, deal_ids = EXCLUDED.deal_ids,
                updated_at = EXCLUDED.updated_at
            WHERE s.version < EXCLUDED.version
            RETURNING true""",
        subscription_id,
        account_id,
        version,
        status,
        contact_id,
        email,
        company_id,
        deal_ids,
        now,
    )
    return bool(applied)
