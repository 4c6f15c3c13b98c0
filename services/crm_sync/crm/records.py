"""``crm_record.updated``: every change of a contact, company, deal or pipeline is
announced through crm_sync's outbox, with the record's version (it grows with each
change, so consumers keep the newest) and a small summary that other services show or
check references against (checkout: ``services/checkout/crm_refs.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.events.models import CrmRecordsUpdatedV1, CrmRecordUpdatedV1
from shared.outbox import publish_event

SCHEMA = "crm_sync"


def contact_summary(row: Any) -> dict[str, Any]:
    # (bulk upserts compute the name in SQL: contacts.repository.CONTACT_NAME, the same rule)
    name = " ".join(p for p in (row["firstname"], row["lastname"]) if p) or None
    return {"email": row["email"], "name": name, "company_id": row["company_id"]}


def company_summary(row: Any) -> dict[str, Any]:
    return {"name": row["name"], "domain": row["domain"]}


def deal_summary(row: Any) -> dict[str, Any]:
    return {
        "name": row["name"],
        "amount": row["amount"],
        "currency": row["currency"],
        "pipeline_id": row["pipeline_id"],
        "stage_id": row["stage_id"],
        "company_id": row["company_id"],
    }


def pipeline_summary(row: Any) -> dict[str, Any]:
    return {
        "name": row["name"],
        "default": row["is_default"],
        "stages": [{"id": s["id"], "name": s["name"], "kind": s["kind"]} for s in row["stages"]],
    }


SUMMARIES = {
    "contact": contact_summary,
    "company": company_summary,
    "deal": deal_summary,
    "pipeline": pipeline_summary,
}


async def record_changed(
    conn: asyncpg.Connection, account_id: str, kind: str, row: Any, now: datetime, *, deleted: bool = False
) -> str:
    """Publish the current state of ``row`` (a contact, company, deal or pipeline as read
    after the change, with its ``version``) in the caller's transaction."""
    return await publish_event(
        conn,
        schema=SCHEMA,
        producer="crm_sync",
        account_id=account_id,
        event=CrmRecordUpdatedV1(
            kind=kind,
            record_id=row["id"],
            version=row["version"],
            deleted=deleted,
            data={} if deleted else SUMMARIES[kind](row),
        ),
        occurred_at=now,
    )


async def records_changed(
    conn: asyncpg.Connection,
    account_id: str,
    kind: str,
    record_ids: list[str],
    versions: list[int],
    data: dict[str, list[Any]],
    now: datetime,
) -> str:
    """`record_changed` for many records of one kind at once (a bulk upsert), column-wise:
    ``data[name][i]`` is record ``i``'s summary value ``name`` (the keys of `SUMMARIES`'s
    function for the kind). One ``crm_records.updated`` event in the caller's transaction."""
    return await publish_event(
        conn,
        schema=SCHEMA,
        producer="crm_sync",
        account_id=account_id,
        event=CrmRecordsUpdatedV1(kind=kind, record_ids=record_ids, versions=versions, data=data),
        occurred_at=now,
    )
