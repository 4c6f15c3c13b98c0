"""Billing's subscriptions in the CRM (PRODUCT §9: payments and subscriptions are
associated with their contact, company and deals).

- ``payment.succeeded`` / ``payment.failed`` with a ``subscription`` part (billing's
  automatic charges: renewals, retries, a new payment method's charge; a failed attempt
  is a payment too): the payment is associated with the subscription's contact — by its
  id, else the contact of the e-mail, created when there is none (`upsert_contact`:
  nothing stored is erased) — with its company (else the contact's own) and with its
  deals that exist. A payment has one contact and one company: one it already has (an
  earlier delivery, or a merchant's choice, ``payment.associated``) is kept, so repeats
  and any order change nothing. Recurring payments never create deals (§3.2). Events
  without ``subscription`` are checkout's settled bank debits, whose purchase already
  associated them.
- ``subscription.updated``: a versioned snapshot; the projection keeps the highest
  version (contact, e-mail, company, deals, status), from which the contact's, company's
  and deal's associations list their subscriptions (`contacts.repository.related`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.accounts import load_account
from shared.events import EventEnvelope
from shared.events.models import PaymentFailedV1, PaymentSucceededV1, SubscriptionUpdatedV1
from shared.inbox import HandlerContext, HandlerRegistry
from shared.logging import get_logger

from ..contacts import repository as contacts_repo
from ..contacts import upserts
from . import records
from . import repository as repo

log = get_logger(__name__)
registry = HandlerRegistry("crm_sync")


@registry.on("payment.succeeded")
async def on_payment_succeeded(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentSucceededV1, envelope: EventEnvelope
) -> None:
    await associate_subscription_payment(ctx, conn, event, envelope, event.succeeded_at)


@registry.on("payment.failed")
async def on_payment_failed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentFailedV1, envelope: EventEnvelope
) -> None:
    await associate_subscription_payment(ctx, conn, event, envelope, event.failed_at)


@registry.on("subscription.updated")
async def on_subscription_updated(
    ctx: HandlerContext, conn: asyncpg.Connection, event: SubscriptionUpdatedV1, envelope: EventEnvelope
) -> None:
    await repo.apply_subscription(
        conn,
        envelope.account_id,
        event.subscription_id,
        version=event.version,
        status=event.status,
        contact_id=event.contact_id,
        email=event.email,
        company_id=event.company_id,
        deal_ids=list(dict.fromkeys(event.deal_ids)),
        now=envelope.occurred_at,
    )


async def associate_subscription_payment(
    ctx: HandlerContext,
    conn: asyncpg.Connection,
    event: PaymentSucceededV1 | PaymentFailedV1,
    envelope: EventEnvelope,
    at: datetime,
) -> None:
    charge = event.subscription
    if charge is None:
        return
    account_id, payment_id = envelope.account_id, event.payment_id
    account = await load_account(conn, ctx.schema, account_id)
    now = account.clock.now() if account else at
    contact = await _contact(conn, account_id, charge.contact_id, event.email, now)
    if contact is None:
        log.warning("subscription payment without a known contact or e-mail", payment_id=payment_id)
    elif not await repo.payment_has(conn, account_id, payment_id, "contact"):
        await repo.associate(conn, account_id, "contact", contact["id"], "payment", payment_id)

    company_id = charge.company_id
    if company_id and not await repo.existing_ids(conn, account_id, "company", [company_id]):
        log.warning("the subscription's company does not exist", payment_id=payment_id, company_id=company_id)
        company_id = None
    company_id = company_id or (contact["company_id"] if contact is not None else None)
    if company_id and not await repo.payment_has(conn, account_id, payment_id, "company"):
        await repo.associate(conn, account_id, "company", company_id, "payment", payment_id)

    deal_ids = list(dict.fromkeys(charge.deal_ids))
    found = await repo.existing_ids(conn, account_id, "deal", deal_ids) if deal_ids else set()
    for deal_id in deal_ids:
        if deal_id in found:
            await repo.associate(conn, account_id, "deal", deal_id, "payment", payment_id)
    if len(found) < len(deal_ids):
        log.warning("subscription deals that do not exist are skipped", missing=sorted(set(deal_ids) - found))


async def _contact(
    conn: asyncpg.Connection, account_id: str, contact_id: str | None, email: str | None, now: datetime
) -> Any:
    """The subscription's contact: by id when it exists here, else by e-mail (any case),
    created with just the e-mail when there is none (a merchant's values stay as they are)."""
    if contact_id:
        row = await contacts_repo.get_contact(conn, account_id, contact_id)
        if row is not None:
            return row
        log.warning("the subscription's contact does not exist; using the e-mail", contact_id=contact_id)
    if not email or not email.strip():
        return None
    row = await contacts_repo.find_by_email(conn, account_id, email.strip())
    if row is not None:
        return row
    row = await upserts.upsert_contact(conn, account_id, {"email": email.strip()}, now)
    await records.record_changed(conn, account_id, "contact", row, now)
    return row
