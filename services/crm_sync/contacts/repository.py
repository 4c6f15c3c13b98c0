"""All SQL of contacts and associations."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from .rows import FIELDS, TEXT_FIELDS

S = "crm_sync"

# -- the set-based upsert (bulk imports, the batch API, purchases) ---------------------------------
#: A stored value is replaced only by a non-empty one (never erased), and a row whose
#: values would not change is not written at all (no new version, no event): re-running
#: an import changes nothing.
_KEEP = [f"coalesce(nullif(EXCLUDED.{f}, ''), c.{f})" for f in TEXT_FIELDS]
#: A contact's name as ``crm_record.updated`` summarises it (`crm.records.contact_summary`).
CONTACT_NAME = "nullif(concat_ws(' ', nullif(c.firstname, ''), nullif(c.lastname, '')), '')"
#: Columns travel packed (one text per column, split by the database) when they can:
#: encoding 13 arrays of 1,000 texts costs the client about eight times more than 13
#: texts. The separators are ASCII's unit and record separators.
SEPARATOR, NULL_MARK = "\x1f", "\x1e"
_PACKED = ", ".join(f"string_to_array(${i + 3}::text, chr(31), chr(30))" for i in range(len(FIELDS) + 1))
_ARRAYS = ", ".join(f"${i + 3}::text[]" for i in range(len(FIELDS) + 1))
_UPSERT = f"""
    INSERT INTO {S}.contacts AS c (id, account_id, email, {", ".join(TEXT_FIELDS)}, created_at, updated_at)
    SELECT t.id, $1, t.email, {", ".join("t." + f for f in TEXT_FIELDS)}, $2, $2
    FROM unnest({{columns}}) AS t(id, {", ".join(FIELDS)})
    ON CONFLICT (account_id, lower(email)) DO UPDATE SET
        {", ".join(f"{f} = {keep}" for f, keep in zip(TEXT_FIELDS, _KEEP, strict=True))},
        updated_at = EXCLUDED.updated_at,
        version = c.version + 1
    WHERE ({", ".join("c." + f for f in TEXT_FIELDS)}) IS DISTINCT FROM ({", ".join(_KEEP)})
    RETURNING lower(c.email) AS key, c.id, c.version, (c.xmax = 0) AS created,
              c.email, {CONTACT_NAME} AS name, c.company_id"""
_UPSERT_PACKED = _UPSERT.replace("{columns}", _PACKED)
_UPSERT_ARRAYS = _UPSERT.replace("{columns}", _ARRAYS)


def packed(values: list[str | None]) -> str | None:
    """The column as one text for `_PACKED`, or None when it cannot travel so (a value
    holds the separator, or is the null mark itself; one row whose value is ``''``)."""
    if NULL_MARK in values or (len(values) == 1 and values[0] == ""):
        return None
    text = SEPARATOR.join([NULL_MARK if v is None else v for v in values])
    return text if text.count(SEPARATOR) == len(values) - 1 else None


async def upsert_contacts(
    conn: asyncpg.Connection,
    account_id: str,
    ids: list[str],
    columns: dict[str, list[str | None]],
    now: datetime,
) -> list[asyncpg.Record]:
    """One statement for many contacts, found by ``lower(email)``: rows ``ids[i]`` with
    ``columns[field][i]`` (every field of `FIELDS`; the e-mails pairwise distinct in lower
    case). Returns the contacts created or changed — ``key`` (the lower-case e-mail), id,
    version, ``created``, and the summary fields e-mail, name, company — and nothing for
    those left as they were."""
    values = [ids, *[columns[f] for f in FIELDS]]
    texts = [packed(column) for column in values] if ids else [None]
    if None in texts:
        return await conn.fetch(_UPSERT_ARRAYS, account_id, now, *values)
    return await conn.fetch(_UPSERT_PACKED, account_id, now, *texts)


async def ids_by_key(conn: asyncpg.Connection, account_id: str, keys: list[str]) -> dict[str, str]:
    """``lower(email)`` -> contact id, for the keys that have a contact."""
    rows = await conn.fetch(
        f"""SELECT lower(email) AS key, id FROM {S}.contacts
            WHERE account_id = $1 AND lower(email) = ANY($2::text[])""",
        account_id,
        keys,
    )
    return {r["key"]: r["id"] for r in rows}


async def lower_case(conn: asyncpg.Connection, texts: list[str]) -> list[str]:
    """The database's ``lower()`` of each text, in order (its locale decides, as in the
    unique index of contacts)."""
    return await conn.fetchval(
        "SELECT coalesce(array_agg(lower(t.x) ORDER BY t.n), '{}') FROM unnest($1::text[]) WITH ORDINALITY AS t(x, n)",
        texts,
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
    a deal's are those naming it. Quotes likewise come from theirs (checkout's snapshots)."""
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
            UNION
            SELECT 'quote', q.id FROM {S}.quotes q
            WHERE q.account_id = $1 AND CASE $2
                WHEN 'contact' THEN q.contact_id = $3
                WHEN 'company' THEN q.company_id = $3
                WHEN 'deal' THEN q.deal_id = $3
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
