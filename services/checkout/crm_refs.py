"""Checkout's view of the CRM records it refers to (links made from a contact, company
or deal; a link's deal and its deal-creation pipeline and stage).

crm_sync owns contacts, companies, deals and pipelines and announces every change as
``crm_record.updated`` with a version that grows per record (and a bulk upsert as one
``crm_records.updated`` per batch); `apply_records` keeps the newest version of each in
``checkout.crm_records`` (events may arrive late, twice or out of order). Other
checkout code asks `find_record` and `pipeline_stage`.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.events import EventEnvelope
from shared.events.models import CrmRecordsUpdatedV1, CrmRecordUpdatedV1
from shared.inbox import HandlerContext, HandlerRegistry

S = "checkout"
registry = HandlerRegistry("checkout")


@registry.on("crm_record.updated")
async def on_crm_record_updated(
    ctx: HandlerContext, conn: asyncpg.Connection, event: CrmRecordUpdatedV1, envelope: EventEnvelope
) -> None:
    """Apply the record's state if it is newer than the one we hold."""
    await apply_records(
        conn,
        envelope.account_id,
        event.kind,
        [{"record_id": event.record_id, "version": event.version, "deleted": event.deleted, "data": event.data}],
    )


@registry.on("crm_records.updated")
async def on_crm_records_updated(
    ctx: HandlerContext, conn: asyncpg.Connection, event: CrmRecordsUpdatedV1, envelope: EventEnvelope
) -> None:
    """A batch of records (a bulk import): each applied if newer, in one statement."""
    await apply_records(conn, envelope.account_id, event.kind, event.records())


async def apply_records(conn: asyncpg.Connection, account_id: str, kind: str, records: list[dict]) -> None:
    """Keep, per record, the state of the highest version (``records``: ``{record_id,
    version, deleted?, data}``, one per record id)."""
    if not records:
        return
    await conn.execute(
        f"""INSERT INTO {S}.crm_records AS r (account_id, kind, record_id, version, deleted, data, updated_at)
            SELECT $1, $2, t.record_id, t.version, t.deleted, t.data, now()
            FROM unnest($3::text[], $4::bigint[], $5::boolean[], $6::jsonb[]) AS t(record_id, version, deleted, data)
            ON CONFLICT (account_id, kind, record_id) DO UPDATE SET
                version = EXCLUDED.version, deleted = EXCLUDED.deleted, data = EXCLUDED.data, updated_at = now()
            WHERE r.version < EXCLUDED.version""",
        account_id,
        kind,
        [r["record_id"] for r in records],
        [r["version"] for r in records],
        [bool(r.get("deleted", False)) for r in records],
        [r.get("data") or {} for r in records],
    )


async def find_record(conn: asyncpg.Connection, account_id: str, kind: str, record_id: str) -> dict | None:
    """``{"id", "kind", "data"}`` of a contact, company, deal or pipeline of the account;
    None when it is unknown (or not announced yet) or deleted."""
    row = await conn.fetchrow(
        f"""SELECT kind, record_id, data FROM {S}.crm_records
            WHERE account_id = $1 AND kind = $2 AND record_id = $3 AND NOT deleted""",
        account_id,
        kind,
        record_id,
    )
    if row is None:
        return None
    return {"id": row["record_id"], "kind": row["kind"], "data": row["data"]}


async def pipeline_stage(conn: asyncpg.Connection, account_id: str, pipeline_id: str, stage_id: str) -> dict | None:
    """The stage ``{"id", "name", "kind"}`` (kind: open | closed_won | closed_lost) if it
    belongs to that pipeline of the account; else None."""
    pipeline = await find_record(conn, account_id, "pipeline", pipeline_id)
    if pipeline is None:
        return None
    stages: list[dict[str, Any]] = pipeline["data"].get("stages") or []
    for stage in stages:
        if stage.get("id") == stage_id:
            return {"id": stage["id"], "name": stage.get("name"), "kind": stage.get("kind")}
    return None
