"""Contacts a merchant enters or edits: unique by e-mail (any case) per account, a company
of the same account; every change announced as ``crm_record.updated``."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.ids import new_id
from shared.web.problem import Conflict, NotFound, ValidationProblem

from ..crm import records
from ..crm import repository as crm_repo
from . import repository as repo
from .schemas import ContactCreate, ContactUpdate


def _email_taken(existing_id: str | None) -> Conflict:
    return Conflict(
        "A contact with this e-mail address already exists.",
        errors=[{"field": "email", "message": "is already the e-mail of another contact (any letter case)"}],
        extra={"existing_id": existing_id} if existing_id else None,
    )


async def _check_company(conn: asyncpg.Connection, account_id: str, company_id: str | None) -> None:
    if company_id is not None and not await crm_repo.existing_ids(conn, account_id, "company", [company_id]):
        raise ValidationProblem([{"field": "company_id", "message": "no such company"}])


async def create_contact(
    conn: asyncpg.Connection, account_id: str, body: ContactCreate, now: datetime
) -> asyncpg.Record:
    await _check_company(conn, account_id, body.company_id)
    existing = await repo.find_by_email(conn, account_id, body.email)
    if existing is not None:
        raise _email_taken(existing["id"])
    row = await repo.insert_contact(conn, account_id, new_id("contact"), body.model_dump(), now)
    if row is None:  # created concurrently (a purchase, another request)
        existing = await repo.find_by_email(conn, account_id, body.email)
        raise _email_taken(existing["id"] if existing else None)
    if row["company_id"]:
        await crm_repo.associate(conn, account_id, "contact", row["id"], "company", row["company_id"], source="manual")
    await records.record_changed(conn, account_id, "contact", row, now)
    return row


async def update_contact(
    conn: asyncpg.Connection, account_id: str, contact_id: str, body: ContactUpdate, now: datetime
) -> asyncpg.Record:
    row = await repo.get_contact(conn, account_id, contact_id)
    if row is None:
        raise NotFound("No such contact.")
    changes = body.model_dump(exclude_unset=True)
    if "email" in changes and changes["email"] is None:
        raise ValidationProblem([{"field": "email", "message": "may not be null (a contact has an e-mail address)"}])
    await _check_company(conn, account_id, changes.get("company_id"))
    if "email" in changes:
        existing = await repo.find_by_email(conn, account_id, changes["email"])
        if existing is not None and existing["id"] != contact_id:
            raise _email_taken(existing["id"])
    if not changes:
        return row
    try:
        updated = await repo.update_contact(conn, account_id, contact_id, changes, now)
    except asyncpg.UniqueViolationError:
        raise _email_taken(None) from None
    if "company_id" in changes and changes["company_id"] != row["company_id"]:
        if row["company_id"]:
            await crm_repo.dissociate(conn, account_id, "contact", contact_id, "company", row["company_id"])
        if changes["company_id"]:
            await crm_repo.associate(
                conn, account_id, "contact", contact_id, "company", changes["company_id"], source="manual"
            )
    await records.record_changed(conn, account_id, "contact", updated, now)
    return updated
