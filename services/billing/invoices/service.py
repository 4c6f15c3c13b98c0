"""What happens to an issued invoice: voided, marked uncollectible, paid (online through
checkout, or marked paid by the merchant). Each change bumps the invoice's version and
writes ``invoice.updated`` in the same transaction; a payment also counts towards the
subscription (``payments_made``) and may complete it.

State machine (PRODUCT §6.6): ``open`` → ``paid`` | ``void`` | ``uncollectible``;
``uncollectible`` → ``paid`` | ``void``; ``paid`` and ``void`` are final. ``overdue``
is not a state: it is shown on read after the due date (`amounts.is_overdue`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.config import CommonSettings
from shared.events.models import PaymentFailedV1, PaymentSucceededV1, PurchaseCompletedV1
from shared.logging import get_logger
from shared.web.problem import Conflict, NotFound

from ..subscriptions import lifecycle
from ..subscriptions import repository as subs_repo
from ..subscriptions.service import change
from . import repository as repo
from .events import publish_invoice

log = get_logger(__name__)


class InvoiceStateConflict(Conflict):
    slug = "invoice-state"


async def _locked(conn: asyncpg.Connection, account_id: str, invoice_id: str) -> asyncpg.Record:
    row = await repo.get(conn, account_id, invoice_id, lock=True)
    if row is None:
        raise NotFound("No such invoice.")
    return row


async def _set(
    conn: asyncpg.Connection, settings: CommonSettings, row: Any, changes: dict[str, Any], at: datetime
) -> asyncpg.Record:
    updated = await repo.update(conn, row["id"], changes, at)
    await publish_invoice(conn, settings, updated, previous_status=row["status"], at=at)
    return updated


async def void(conn: asyncpg.Connection, settings: CommonSettings, account_id: str, invoice_id: str, at: datetime):
    """An open (or uncollectible, or draft) invoice is cancelled; it keeps its number."""
    row = await _locked(conn, account_id, invoice_id)
    if row["status"] not in ("draft", "open", "uncollectible"):
        raise InvoiceStateConflict(f"A {row['status']} invoice cannot be voided.")
    return await _set(conn, settings, row, {"status": "void", "voided_at": at}, at)


async def mark_uncollectible(
    conn: asyncpg.Connection, settings: CommonSettings, account_id: str, invoice_id: str, at: datetime
):
    row = await _locked(conn, account_id, invoice_id)
    if row["status"] != "open":
        raise InvoiceStateConflict(f"A {row['status']} invoice cannot be marked uncollectible.")
    return await _set(conn, settings, row, {"status": "uncollectible", "marked_uncollectible_at": at}, at)


async def mark_paid(conn: asyncpg.Connection, settings: CommonSettings, account_id: str, invoice_id: str, at: datetime):
    """Paid outside the system (a bank transfer the merchant saw): no payment is recorded."""
    row = await _locked(conn, account_id, invoice_id)
    if row["status"] not in ("open", "uncollectible"):
        raise InvoiceStateConflict(f"A {row['status']} invoice cannot be marked paid.")
    if row["payment_id"]:
        raise InvoiceStateConflict("A payment of this invoice is being processed; wait for its outcome.")
    return await _paid(conn, settings, row, amount=row["total"] - row["amount_paid"], payment_id=None, at=at)


async def _paid(
    conn: asyncpg.Connection,
    settings: CommonSettings,
    row: Any,
    *,
    amount: int,
    payment_id: str | None,
    at: datetime,
    customer_id: str | None = None,
    payment_method_id: str | None = None,
    method_type: str | None = None,
) -> asyncpg.Record:
    updated = await _set(
        conn,
        settings,
        row,
        {"status": "paid", "amount_paid": row["amount_paid"] + amount, "paid_at": at, "payment_id": payment_id},
        at,
    )
    if row["subscription_id"] is not None:
        await _count_payment(conn, row, at, customer_id, payment_method_id, method_type)
    return updated


async def _count_payment(
    conn: asyncpg.Connection,
    invoice: Any,
    at: datetime,
    customer_id: str | None,
    payment_method_id: str | None,
    method_type: str | None,
) -> None:
    """The invoiced period is paid: one more payment made (fixed terms complete after
    the last), and — collecting the method on the first invoice — the buyer's payment
    method is saved, so later periods are charged automatically."""
    await repo.cancel_scheduled_charge(conn, invoice["subscription_id"], invoice["period_index"], at)
    sub = await subs_repo.get(conn, invoice["account_id"], invoice["subscription_id"], lock=True)
    if sub is None:
        return
    changes: dict[str, Any] = {}
    total = sub["payments_total"]
    if total is None or sub["payments_made"] < total:
        changes["payments_made"] = sub["payments_made"] + 1
    made = changes.get("payments_made", sub["payments_made"])
    if sub["status"] not in lifecycle.ENDED and sub["status"] != "paused":
        others_open = await repo.open_invoices_of(conn, sub["account_id"], sub["id"])
        if (total is not None and made >= total) or (sub["next_payment_date"] is None and others_open == 0):
            changes.update(status="completed", ended_at=at, next_payment_date=None)
    if invoice["collect_payment_method"] and payment_method_id and not sub["payment_method_id"]:
        changes.update(
            processor_customer_id=customer_id, payment_method_id=payment_method_id, method_type=method_type or "card"
        )
    if changes:
        await change(conn, sub, changes, at)


# -- payments from checkout ---------------------------------------------------------------------
async def on_purchase_completed(
    conn: asyncpg.Connection, settings: CommonSettings, account_id: str, event: PurchaseCompletedV1
) -> None:
    """The buyer paid the invoice through its checkout session. A bank debit still
    processing is remembered (``payment_id``) and settles with ``payment.succeeded``."""
    row = await repo.get(conn, account_id, event.source.get("id", ""), lock=True)
    if row is None:
        log.warning("payment of an unknown invoice", invoice_id=event.source.get("id"), payment_id=event.payment_id)
        return
    if row["payment_id"] == event.payment_id and row["status"] == "paid":
        return
    if row["status"] not in ("open", "uncollectible") or (row["payment_id"] and row["payment_id"] != event.payment_id):
        # Paid twice (or after the merchant voided it): the money is recorded in the
        # ledger; the merchant refunds it. The invoice keeps its state.
        log.warning(
            "payment of an invoice that is not payable",
            invoice_id=row["id"],
            status=row["status"],
            payment_id=event.payment_id,
        )
        return
    if event.payment_status == "processing":
        await _set(conn, settings, row, {"payment_id": event.payment_id}, event.paid_at)
        return
    await _paid(
        conn,
        settings,
        row,
        amount=event.amount,
        payment_id=event.payment_id,
        at=event.paid_at,
        customer_id=event.processor_customer_id,
        payment_method_id=event.processor_payment_method_id,
        method_type=event.method_type,
    )


async def on_payment_settled(
    conn: asyncpg.Connection, settings: CommonSettings, account_id: str, event: PaymentSucceededV1
) -> None:
    """A bank debit that paid an invoice settled."""
    row = await repo.get(conn, account_id, event.source.get("id", ""), lock=True)
    if row is None or row["payment_id"] != event.payment_id or row["status"] not in ("open", "uncollectible"):
        return
    await _paid(
        conn,
        settings,
        {**dict(row), "payment_id": None},
        amount=event.amount,
        payment_id=event.payment_id,
        at=event.succeeded_at,
        method_type=event.method_type,
    )


async def on_payment_failed(
    conn: asyncpg.Connection, settings: CommonSettings, account_id: str, event: PaymentFailedV1
) -> None:
    """A bank debit that was to pay an invoice failed: the invoice is payable again."""
    row = await repo.get(conn, account_id, event.source.get("id", ""), lock=True)
    if row is None or row["payment_id"] != event.payment_id or row["status"] == "paid":
        return
    await _set(conn, settings, row, {"payment_id": None}, event.failed_at)
