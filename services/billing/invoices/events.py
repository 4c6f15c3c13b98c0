"""``invoice.updated`` snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.config import CommonSettings
from shared.events.models import InvoiceLine, InvoiceTerms, InvoiceUpdatedV1
from shared.outbox import publish_event

from ..subscriptions.service import contact_name
from .tokens import invoice_url

SCHEMA = "billing"


def invoice_event(settings: CommonSettings, row: Any, previous_status: str | None) -> InvoiceUpdatedV1:
    pay = row["payment_settings"] or {}
    return InvoiceUpdatedV1(
        invoice_id=row["id"],
        version=row["version"],
        number=row["number"],
        status=row["status"],
        previous_status=previous_status,
        subscription_id=row["subscription_id"],
        period_index=row["period_index"],
        currency=row["currency"],
        lines=[InvoiceLine(**line) for line in row["lines"]],
        subtotal=row["subtotal"],
        discount=row["discount"],
        tax=row["tax"],
        total=row["total"],
        amount_paid=row["amount_paid"],
        issue_date=row["issue_date"],
        due_date=row["due_date"],
        email=row["email"],
        contact_name=contact_name(row["contact"]),
        contact_id=row["contact_id"],
        url=invoice_url(settings, row["id"], row["token_version"]),
        token_hash=bytes(row["token_hash"]).hex(),
        language=row["language"],
        online_payment=pay.get("online_payment", True) is not False,
        payment_methods=pay.get("payment_methods") or ["card"],
        collect_billing_address=bool(pay.get("collect_billing_address")),
        collect_shipping_address=bool(pay.get("collect_shipping_address")),
        collect_payment_method=row["collect_payment_method"],
        paid_at=row["paid_at"],
        voided_at=row["voided_at"],
        payment_id=row["payment_id"],
        test_mode=row["test_mode"],
        overdue_at=row["overdue_at"],
        locale=row["locale"],
        payment_terms_days=row["payment_terms_days"],
        terms=InvoiceTerms(**row["terms"]) if row["terms"] else None,
    )


async def publish_invoice(
    conn: asyncpg.Connection, settings: CommonSettings, row: Any, *, previous_status: str | None, at: datetime
) -> None:
    await publish_event(
        conn,
        schema=SCHEMA,
        producer="billing",
        account_id=row["account_id"],
        event=invoice_event(settings, row, previous_status),
        occurred_at=at,
    )
