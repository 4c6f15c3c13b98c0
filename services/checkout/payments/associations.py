"""A merchant associates a payment with a CRM record by hand (PRODUCT §9).

A payment has one contact and one company, and any number of deals. A manual contact or
company replaces the current one and is marked ``manual``: the automatic association
that crm_sync reports later (``contact.upserted``) never overwrites it
(`repository.set_contact`). A manual deal is added to the payment's deals. Each change
publishes ``payment.associated`` in the same transaction, so crm_sync records the
association on its side.

Whether the record exists is checked against checkout's projection of CRM records
(``services/checkout/crm_refs.py``, fed by ``crm_record.updated``).
"""

from __future__ import annotations

import asyncpg

from shared.accounts import load_account
from shared.events.models import PaymentAssociatedV1
from shared.outbox import publish_event
from shared.web.problem import NotFound, field_error

from .. import crm_refs
from . import repository as repo
from .schemas import AssociationCreate

SCHEMA = "checkout"


async def find_crm_record(conn: asyncpg.Connection, account_id: str, kind: str, record_id: str) -> dict | None:
    """The CRM record as checkout's projection knows it; None if unknown or deleted."""
    return await crm_refs.find_record(conn, account_id, kind, record_id)


async def associate(conn: asyncpg.Connection, account_id: str, payment_id: str, body: AssociationCreate):
    """Apply the association in the caller's transaction; returns the payment row."""
    kind, record_id = body.kind, body.record_id
    payment = await repo.get_payment(conn, account_id, payment_id, lock=True)
    if payment is None:
        raise NotFound("No such payment.")
    record = await find_crm_record(conn, account_id, kind, record_id)
    if record is None:
        raise field_error(f"{kind}_id", f"is not a {kind} of this account (or not known to checkout yet)")
    if kind == "deal":
        if record_id in payment["manual_deal_ids"]:
            return payment  # already associated by hand: nothing changes, nothing to tell
        replaced = None
    else:
        current = payment[f"{kind}_id"]
        if current == record_id and payment[f"{kind}_source"] == "manual":
            return payment
        replaced = current if current != record_id else None
    account = await load_account(conn, SCHEMA, account_id)
    now = account.clock.now()
    updated = await repo.set_manual_record(conn, account_id, payment_id, kind, record_id, now)
    await publish_event(
        conn,
        schema=SCHEMA,
        producer="checkout",
        account_id=account_id,
        event=PaymentAssociatedV1(
            payment_id=payment_id, kind=kind, record_id=record_id, replaced_id=replaced, associated_at=now
        ),
        occurred_at=now,
    )
    return updated
