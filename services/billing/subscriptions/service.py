"""Subscriptions are born (from purchases, the API) and change; every change is a
``subscription.updated`` snapshot in the same transaction (the outbox)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.accounts import Account
from shared.config import CommonSettings
from shared.events.models import (
    ChargedLine,
    PurchaseCompletedV1,
    SubscriptionUpdatedV1,
    TaxRateRef,
)
from shared.ids import new_id
from shared.outbox import publish_event

from . import lifecycle
from . import repository as repo
from .tokens import payment_method_token_hash

SCHEMA = "billing"


def contact_name(contact: dict[str, Any] | None) -> str | None:
    contact = contact or {}
    name = " ".join(p for p in (contact.get("firstname"), contact.get("lastname")) if p)
    return name or None


def charged_lines(row: asyncpg.Record) -> list[ChargedLine]:
    return [
        ChargedLine(
            name=line["name"],
            quantity=line["quantity"],
            unit_amount=line["unit_amount"],
            unit_discount=line.get("unit_discount", 0),
            amount=line["amount"],
            tax=line.get("tax", 0),
            tax_rate=TaxRateRef(**line["tax_rate"]) if line.get("tax_rate") else None,
        )
        for line in row["line_items"]
    ]


def snapshot(row: asyncpg.Record, previous_status: str | None) -> SubscriptionUpdatedV1:
    """The ``subscription.updated`` event of a subscription row (apply the highest version)."""
    return SubscriptionUpdatedV1(
        subscription_id=row["id"],
        version=row["version"],
        status=row["status"],
        previous_status=previous_status,
        email=row["email"],
        contact_name=contact_name(row["contact"]),
        contact_id=row["contact_id"],
        company_id=row["company_id"],
        deal_ids=list(row["deal_ids"]),
        currency=row["currency"],
        amount=row["amount"],
        interval=row["interval"],
        payments_total=row["payments_total"],
        payments_made=row["payments_made"],
        start_date=row["start_date"],
        next_payment_date=row["next_payment_date"],
        end_date=row["end_date"],
        source={"type": row["source_type"], "id": row["source_id"]},
        origin_payment_id=row["origin_payment_id"],
        canceled_at=row["canceled_at"],
        ended_at=row["ended_at"],
        test_mode=row["test_mode"],
    )


async def publish_snapshot(
    conn: asyncpg.Connection, row: asyncpg.Record, *, previous_status: str | None, at: datetime
) -> None:
    await publish_event(
        conn,
        schema=SCHEMA,
        producer="billing",
        account_id=row["account_id"],
        event=snapshot(row, previous_status),
        occurred_at=at,
    )


async def change(
    conn: asyncpg.Connection, row: asyncpg.Record, changes: dict[str, Any], at: datetime
) -> asyncpg.Record:
    """Apply ``changes`` to a (locked) subscription and publish the new snapshot."""
    updated = await repo.update(conn, row["id"], changes, at)
    await publish_snapshot(conn, updated, previous_status=row["status"], at=at)
    return updated


async def create(
    conn: asyncpg.Connection, settings: CommonSettings, row: dict[str, Any], at: datetime
) -> asyncpg.Record | None:
    """Insert a new subscription with its update-link token; None if it already exists."""
    row = {**row, "pm_token_hash": payment_method_token_hash(settings, row["id"], 1)}
    created = await repo.insert(conn, row)
    if created is not None:
        await publish_snapshot(conn, created, previous_status=None, at=at)
    return created


async def born_from_purchase(
    conn: asyncpg.Connection, settings: CommonSettings, account: Account, event: PurchaseCompletedV1
) -> list[asyncpg.Record]:
    """One subscription per group of recurring items (PRODUCT §6.2). The checkout's charge
    counts as the first payment; a bank debit still processing creates it on authorisation
    (a later failure of that debit is handled by `first_payment_failed`)."""
    now = account.clock.now()
    today = event.checkout_day or now.date()
    items = {item.line_item_id: item for item in event.items}
    source_type = event.source.get("type", "payment_link")
    known = await repo.purchase_contact(conn, account.id, event.payment_id)  # if the CRM was first
    quote = event.quote  # a quote paid online: its deal, contact and company (PRODUCT §5)
    quote_deals = [quote.deal_id] if quote and quote.deal_id else []
    created = []
    for terms in event.subscriptions:
        lines = [items[i] for i in terms.line_item_ids if i in items]
        pos = lifecycle.at_birth(
            anchor=terms.start_date,
            interval=terms.interval,
            payments_total=terms.payments,
            end_date=terms.end_date,
            first_payment_charged=terms.first_payment_charged,
            today=today,
        )
        row = await create(
            conn,
            settings,
            {
                "id": new_id("sub"),
                "account_id": account.id,
                "status": pos.status,
                "currency": event.currency,
                "interval": terms.interval,
                "start_date": terms.start_date,
                "payments_total": terms.payments,
                "payments_made": pos.payments_made,
                "end_date": terms.end_date,
                "next_index": pos.next_index,
                "next_payment_date": pos.next_payment_date,
                "amount": terms.amount,
                "subtotal": terms.amount - terms.tax,
                "tax": terms.tax,
                "line_items": [
                    {
                        "line_item_id": line.line_item_id,
                        "product_id": line.product_id,
                        "name": line.name,
                        "description": line.description,
                        "quantity": line.quantity,
                        "unit_amount": line.unit_amount,
                        "unit_discount": line.unit_discount,
                        "amount": line.amount,
                        "tax": line.recurring_tax,
                        "tax_rate": line.tax_rate.model_dump() if line.tax_rate else None,
                    }
                    for line in lines
                ],
                "email": event.contact.email,
                "contact": event.contact.model_dump(exclude_none=True),
                "contact_id": known["contact_id"] if known else (quote.contact_id if quote else None),
                "company_id": known["company_id"] if known else (quote.company_id if quote else None),
                "deal_ids": list(dict.fromkeys([*(known["deal_ids"] if known else []), *quote_deals])),
                "billing_address": event.billing_address.model_dump() if event.billing_address else None,
                "collection_method": "charge_automatically",
                "invoice_settings": {},
                "source_type": "quote" if source_type == "quote" else "payment_link",
                "source_id": event.source.get("id", ""),
                "origin_payment_id": event.payment_id,
                "subscription_group": terms.subscription_group,
                "processor_customer_id": event.processor_customer_id,
                "payment_method_id": event.processor_payment_method_id,
                "method_type": event.method_type,
                "metadata": {},
                "test_mode": event.test_mode,
                "created_at": now,
                "updated_at": now,
                "ended_at": now if pos.status == "completed" else None,
            },
            now,
        )
        if row is not None:
            created.append(row)
    return created


async def first_payment_failed(conn: asyncpg.Connection, account_id: str, payment_id: str, at: datetime) -> int:
    """A bank debit that created subscriptions at authorisation failed: they never
    started (canceled, nothing more charged)."""
    count = 0
    for row in await repo.by_origin_payment(conn, account_id, payment_id):
        if row["status"] in lifecycle.ENDED:
            continue
        await change(
            conn,
            row,
            {"status": "canceled", "canceled_at": at, "ended_at": at, "next_payment_date": None},
            at,
        )
        count += 1
    return count
