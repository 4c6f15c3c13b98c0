"""The rules of companies, pipelines and deals (no HTTP types).

- Every account has a default pipeline (open stages first, then one closed-won and one
  closed-lost stage), made when crm_sync first sees the account and, for accounts that
  existed before, on first use (`ensure_default_pipeline`, idempotent and race-safe).
- A pipeline's stage names are unique within it (any case) and it has an open stage;
  pipeline names are unique per account.
- Companies are unique per account by domain when they have one, else by name (409
  naming the field, with the existing company's id).
- A deal's stage belongs to its pipeline; its company and contacts are the account's.
- Every change is announced as ``crm_record.updated`` in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from shared.accounts import load_account
from shared.ids import new_id
from shared.web.problem import Conflict, NotFound, ValidationProblem

from . import records
from . import repository as repo
from .schemas import CompanyCreate, CompanyUpdate, DealCreate, DealUpdate, PipelineCreate

SCHEMA = "crm_sync"
DEFAULT_PIPELINE_NAME = "Sales pipeline"
DEFAULT_STAGES = (
    ("Appointment scheduled", "open"),
    ("Qualified to buy", "open"),
    ("Contract sent", "open"),
    ("Closed won", "closed_won"),
    ("Closed lost", "closed_lost"),
)


async def account_now(conn: asyncpg.Connection, account_id: str) -> datetime:
    """Now on the account's clock (test clocks included)."""
    account = await load_account(conn, SCHEMA, account_id)
    return account.clock.now() if account else datetime.now(UTC)


# -- pipelines -------------------------------------------------------------------------------
async def ensure_default_pipeline(conn: asyncpg.Connection, account_id: str, now: datetime | None = None) -> str:
    """The account's default pipeline id, creating it (and announcing it) if missing."""
    existing = await repo.default_pipeline_id(conn, account_id)
    if existing:
        return existing
    now = now or await account_now(conn, account_id)
    # A merchant's own pipeline may already carry the name (an account older than this rule).
    for name in (DEFAULT_PIPELINE_NAME, f"{DEFAULT_PIPELINE_NAME} (default)", f"Default pipeline {new_id('p')[-6:]}"):
        pipeline_id = new_id("pipeline")
        stages = [(new_id("stage"), stage, kind) for stage, kind in DEFAULT_STAGES]
        if await repo.insert_pipeline(conn, account_id, pipeline_id, name, stages, now, is_default=True):
            await records.record_changed(
                conn, account_id, "pipeline", await repo.get_pipeline(conn, account_id, pipeline_id), now
            )
            return pipeline_id
        existing = await repo.default_pipeline_id(conn, account_id)
        if existing:  # a concurrent transaction made it first
            return existing
    raise RuntimeError(f"could not create the default pipeline of {account_id}")


async def create_pipeline(
    conn: asyncpg.Connection, account_id: str, body: PipelineCreate, now: datetime
) -> asyncpg.Record:
    await ensure_default_pipeline(conn, account_id, now)
    errors = []
    seen: set[str] = set()
    for index, stage in enumerate(body.stages):
        key = stage.name.casefold()
        if key in seen:
            errors.append({"field": f"stages[{index}].name", "message": "repeats another stage's name"})
        seen.add(key)
    if not any(stage.kind == "open" for stage in body.stages):
        errors.append({"field": "stages", "message": "needs at least one open stage (deals start in one)"})
    if errors:
        raise ValidationProblem(errors)
    pipeline_id = new_id("pipeline")
    stages = [(new_id("stage"), stage.name, stage.kind) for stage in body.stages]
    if not await repo.insert_pipeline(conn, account_id, pipeline_id, body.name, stages, now):
        raise Conflict(
            "A pipeline with this name already exists.",
            errors=[{"field": "name", "message": "is already the name of another pipeline"}],
        )
    row = await repo.get_pipeline(conn, account_id, pipeline_id)
    await records.record_changed(conn, account_id, "pipeline", row, now)
    return row


# -- companies --------------------------------------------------------------------------------
def _company_conflict(existing: Any) -> Conflict:
    field = existing["field"]
    what = "domain" if field == "domain" else "name (and no domain)"
    return Conflict(
        f"A company with this {what} already exists.",
        errors=[{"field": field, "message": f"is already used by company {existing['id']}"}],
        extra={"existing_id": existing["id"]},
    )


async def create_company(
    conn: asyncpg.Connection, account_id: str, body: CompanyCreate, now: datetime
) -> asyncpg.Record:
    values = body.model_dump()
    existing = await repo.company_conflict(conn, account_id, body.name, body.domain)
    if existing:
        raise _company_conflict(existing)
    row = await repo.insert_company(conn, account_id, new_id("company"), values, now)
    if row is None:  # created concurrently
        existing = await repo.company_conflict(conn, account_id, body.name, body.domain)
        raise _company_conflict(existing) if existing else Conflict("The company was created concurrently.")
    await records.record_changed(conn, account_id, "company", row, now)
    return row


async def update_company(
    conn: asyncpg.Connection, account_id: str, company_id: str, body: CompanyUpdate, now: datetime
) -> asyncpg.Record:
    row = await repo.get_company(conn, account_id, company_id)
    if row is None:
        raise NotFound("No such company.")
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        raise ValidationProblem([{"field": "name", "message": "may not be null (a company has a name)"}])
    if not changes:
        return row
    name, domain = changes.get("name", row["name"]), changes.get("domain", row["domain"])
    if "name" in changes or "domain" in changes:
        existing = await repo.company_conflict(conn, account_id, name, domain, exclude_id=company_id)
        if existing:
            raise _company_conflict(existing)
    try:
        updated = await repo.update_company(conn, account_id, company_id, changes, now)
    except asyncpg.UniqueViolationError:
        raise Conflict("Another company took this name or domain concurrently.") from None
    await records.record_changed(conn, account_id, "company", updated, now)
    return updated


# -- deals ---------------------------------------------------------------------------------------
async def _stage_of(
    conn: asyncpg.Connection, account_id: str, pipeline_id: str, stage_id: str | None, errors: list
) -> str | None:
    """The stage to use in ``pipeline_id``: the one given if it belongs to it, else the first."""
    pipeline = await repo.get_pipeline(conn, account_id, pipeline_id)
    if pipeline is None:
        errors.append({"field": "pipeline", "message": "no such pipeline"})
        return None
    stages = pipeline["stages"]
    if stage_id is None:
        return stages[0]["id"] if stages else None
    if not any(s["id"] == stage_id for s in stages):
        errors.append({"field": "stage", "message": f"is not a stage of pipeline {pipeline_id}"})
        return None
    return stage_id


async def _check_refs(
    conn: asyncpg.Connection, account_id: str, company_id: str | None, contact_ids: list[str] | None, errors: list
) -> None:
    if company_id is not None and not await repo.existing_ids(conn, account_id, "company", [company_id]):
        errors.append({"field": "company_id", "message": "no such company"})
    if contact_ids:
        found = await repo.existing_ids(conn, account_id, "contact", contact_ids)
        for index, contact_id in enumerate(contact_ids):
            if contact_id not in found:
                errors.append({"field": f"contact_ids[{index}]", "message": "no such contact"})


async def create_deal(conn: asyncpg.Connection, account_id: str, body: DealCreate, now: datetime) -> asyncpg.Record:
    errors: list[dict[str, str]] = []
    pipeline_id = body.pipeline or await ensure_default_pipeline(conn, account_id, now)
    stage_id = await _stage_of(conn, account_id, pipeline_id, body.stage, errors)
    if body.amount is not None and body.currency is None:
        errors.append({"field": "currency", "message": "is required with an amount"})
    contact_ids = list(dict.fromkeys(body.contact_ids or []))
    await _check_refs(conn, account_id, body.company_id, contact_ids, errors)
    if errors:
        raise ValidationProblem(errors)
    deal_id = new_id("deal")
    values = {
        "name": body.name,
        "amount": body.amount,
        "currency": body.currency,
        "pipeline_id": pipeline_id,
        "stage_id": stage_id,
        "company_id": body.company_id,
    }
    await repo.insert_deal(conn, account_id, deal_id, values, now)
    for contact_id in contact_ids:
        await repo.associate(conn, account_id, "deal", deal_id, "contact", contact_id, source="manual")
    if body.company_id:
        await repo.associate(conn, account_id, "deal", deal_id, "company", body.company_id, source="manual")
    row = await repo.get_deal(conn, account_id, deal_id)
    await records.record_changed(conn, account_id, "deal", row, now)
    return row


async def update_deal(
    conn: asyncpg.Connection, account_id: str, deal_id: str, body: DealUpdate, now: datetime
) -> asyncpg.Record:
    row = await repo.get_deal(conn, account_id, deal_id, for_update=True)
    if row is None:
        raise NotFound("No such deal.")
    given = body.model_dump(exclude_unset=True)
    errors: list[dict[str, str]] = []
    for field, message in (
        ("name", "may not be null (a deal has a name)"),
        ("pipeline", "may not be null (a deal is in a pipeline)"),
        ("stage", "may not be null (a deal is in a stage)"),
        ("contact_ids", "may not be null (send [] to remove every contact)"),
    ):
        if field in given and given[field] is None:
            errors.append({"field": field, "message": message})
    if errors:
        raise ValidationProblem(errors)
    changes: dict[str, Any] = {k: given[k] for k in ("name", "amount", "currency", "company_id") if k in given}
    if "pipeline" in given or "stage" in given:
        pipeline_id = given.get("pipeline", row["pipeline_id"])
        stage_id = await _stage_of(conn, account_id, pipeline_id, given.get("stage"), errors)
        changes["pipeline_id"], changes["stage_id"] = pipeline_id, stage_id
    amount, currency = changes.get("amount", row["amount"]), changes.get("currency", row["currency"])
    if amount is not None and currency is None:
        errors.append({"field": "currency", "message": "is required with an amount"})
    contact_ids = list(dict.fromkeys(given["contact_ids"])) if "contact_ids" in given else None
    await _check_refs(conn, account_id, changes.get("company_id"), contact_ids, errors)
    if errors:
        raise ValidationProblem(errors)
    await repo.update_deal(conn, account_id, deal_id, changes, now)
    if contact_ids is not None:
        before = await repo.deal_contact_ids(conn, account_id, deal_id)
        for contact_id in before - set(contact_ids):
            await repo.dissociate(conn, account_id, "deal", deal_id, "contact", contact_id)
        for contact_id in contact_ids:
            if contact_id not in before:
                await repo.associate(conn, account_id, "deal", deal_id, "contact", contact_id, source="manual")
    if "company_id" in changes and changes["company_id"] != row["company_id"]:
        if row["company_id"]:
            await repo.dissociate(conn, account_id, "deal", deal_id, "company", row["company_id"])
        if changes["company_id"]:
            await repo.associate(conn, account_id, "deal", deal_id, "company", changes["company_id"], source="manual")
    updated = await repo.get_deal(conn, account_id, deal_id)
    await records.record_changed(conn, account_id, "deal", updated, now)
    return updated
