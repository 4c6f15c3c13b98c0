"""Events notifications consumes, and HTTP: /v1/emails."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from shared.accounts import NOTIFICATION_KINDS
from shared.clock import rfc3339
from shared.events import EventEnvelope
from shared.events.models import (
    InvoiceUpdatedV1,
    PaymentFailedV1,
    PaymentSucceededV1,
    PurchaseCompletedV1,
    SubscriptionCharge,
    SubscriptionReminderDueV1,
    SubscriptionUpdatedV1,
)
from shared.inbox import HandlerContext, HandlerRegistry
from shared.web.auth import require
from shared.web.openapi import ListOf, operation
from shared.web.pagination import ListQuery, list_page
from shared.web.request import parse_query
from shared.web.tx import request_tx

from . import invoice_mail, service
from . import repository as repo
from . import subscription_mail as mail
from .purchase_mail import purchase_mails
from .quote_mail import QuotePaid
from .sender import send_for_fact

registry = HandlerRegistry("notifications")
routes = web.RouteTableDef()


async def _send_payment_mails(ctx: HandlerContext, envelope: EventEnvelope) -> None:
    await send_for_fact(ctx, envelope.account_id, mail.payment_fact(envelope.data["payment_id"]))


async def _send_failure_notices(ctx: HandlerContext, envelope: EventEnvelope) -> None:
    # Only billing's subscription attempts produce messages; a failed bank debit sends none.
    if envelope.data.get("subscription"):
        await send_for_fact(ctx, envelope.account_id, mail.payment_fact(envelope.data["payment_id"]))


async def _send_reminder(ctx: HandlerContext, envelope: EventEnvelope) -> None:
    fact_key = mail.reminder_fact(envelope.data["subscription_id"], envelope.data["period_index"])
    await send_for_fact(ctx, envelope.account_id, fact_key)


async def _send_status_notice(ctx: HandlerContext, envelope: EventEnvelope) -> None:
    data = envelope.data
    status = mail.status_transition(data["status"], data.get("previous_status"))
    if status is not None:
        await send_for_fact(ctx, envelope.account_id, mail.status_fact(data["subscription_id"], status))


async def _send_invoice_mail(ctx: HandlerContext, envelope: EventEnvelope) -> None:
    kind = invoice_mail.kind_of(InvoiceUpdatedV1.model_validate(envelope.data))
    if kind is not None:
        fact_key = invoice_mail.invoice_fact(envelope.data["invoice_id"], kind.removeprefix("invoice_"))
        await send_for_fact(ctx, envelope.account_id, fact_key)


def _charge_related(payment_id: str, sub: SubscriptionCharge) -> dict:
    return {"payment_id": payment_id, "subscription_id": sub.subscription_id, "attempt_id": sub.attempt_id}


@registry.on("purchase.completed", after_commit=_send_payment_mails)
async def on_purchase_completed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PurchaseCompletedV1, envelope: EventEnvelope
) -> None:
    """The buyer's receipt and the recipients' payment notification — held while a bank
    debit is processing (released or dropped by ``payment.succeeded`` / ``.failed``)."""
    status = await service.payment_status(conn, envelope.account_id, event.payment_id, event.payment_status)
    related = {"payment_id": event.payment_id, "source": event.source}
    fact_key = mail.payment_fact(event.payment_id)
    await service.queue_mails(ctx, conn, envelope.account_id, fact_key, purchase_mails, event, related, status=status)
    quote = event.quote
    if quote is not None and quote.owner_email:  # a quote paid online: its owner is told (PRODUCT §5)
        paid = QuotePaid.from_purchase(event, quote_name=quote.title, owner_email=quote.owner_email)
        await service.queue_quote_paid(ctx, conn, envelope.account_id, paid)


@registry.on("payment.succeeded", after_commit=_send_payment_mails)
async def on_payment_succeeded(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentSucceededV1, envelope: EventEnvelope
) -> None:
    """A bank debit settled: the receipt held since the purchase is sent now. A
    subscription charge: the receipt that explains it and the recipients' notice."""
    await service.settle_messages(conn, envelope, event)
    if event.subscription is not None:
        related = _charge_related(event.payment_id, event.subscription)
        fact_key = mail.payment_fact(event.payment_id)
        await service.queue_mails(ctx, conn, envelope.account_id, fact_key, mail.renewal_mails, event, related)


@registry.on("payment.failed", after_commit=_send_failure_notices)
async def on_payment_failed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentFailedV1, envelope: EventEnvelope
) -> None:
    """A bank debit failed: the receipt held since the purchase is never sent. A
    subscription attempt failed: the buyer's update link and the recipients' notice."""
    await service.settle_messages(conn, envelope, event)
    if event.subscription is not None:
        related = _charge_related(event.payment_id, event.subscription)
        fact_key = mail.payment_fact(event.payment_id)
        await service.queue_mails(ctx, conn, envelope.account_id, fact_key, mail.failed_payment_mails, event, related)


@registry.on("subscription.reminder_due", after_commit=_send_reminder)
async def on_subscription_reminder_due(
    ctx: HandlerContext, conn: asyncpg.Connection, event: SubscriptionReminderDueV1, envelope: EventEnvelope
) -> None:
    fact_key = mail.reminder_fact(event.subscription_id, event.period_index)
    related = {"subscription_id": event.subscription_id, "period_index": event.period_index}
    await service.queue_mails(ctx, conn, envelope.account_id, fact_key, mail.reminder_mails, event, related)


@registry.on("subscription.updated", after_commit=_send_status_notice)
async def on_subscription_updated(
    ctx: HandlerContext, conn: asyncpg.Connection, event: SubscriptionUpdatedV1, envelope: EventEnvelope
) -> None:
    """Only the moves to ``canceled`` and ``completed`` tell the buyer (PRODUCT §8)."""
    status = mail.status_transition(event.status, event.previous_status)
    if status is not None:
        fact_key = mail.status_fact(event.subscription_id, status)
        related = {"subscription_id": event.subscription_id}
        await service.queue_mails(ctx, conn, envelope.account_id, fact_key, mail.status_mails, event, related)


@registry.on("invoice.updated", after_commit=_send_invoice_mail)
async def on_invoice_updated(
    ctx: HandlerContext, conn: asyncpg.Connection, event: InvoiceUpdatedV1, envelope: EventEnvelope
) -> None:
    """Issued, overdue, paid: one message each, from the newest snapshot only (a late,
    older snapshot is not acted on: its state was overtaken)."""
    kind = invoice_mail.kind_of(event)
    newest = await repo.newest_invoice_version(conn, envelope.account_id, event.invoice_id, event.version)
    if kind is None or not newest:
        return
    fact_key = invoice_mail.invoice_fact(event.invoice_id, kind.removeprefix("invoice_"))
    related = {
        "invoice_id": event.invoice_id,
        "invoice_number": event.number,
        "subscription_id": event.subscription_id,
        "payment_id": event.payment_id,
    }
    related = {k: v for k, v in related.items() if v is not None}
    await service.queue_mails(ctx, conn, envelope.account_id, fact_key, invoice_mail.invoice_mails, event, related)


class EmailList(ListQuery):
    to: str | None = Field(default=None, max_length=320)
    kind: Literal[NOTIFICATION_KINDS] | None = None  # type: ignore[valid-type]
    status: Literal["held", "queued", "sending", "sent", "failed", "bounced", "dropped"] | None = None


class EmailOut(BaseModel):
    """What `email_out` answers (the OpenAPI document)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["email"]
    kind: str
    to: str
    subject: str
    status: Literal["held", "queued", "sending", "sent", "failed", "bounced", "dropped"]
    locale: str
    message_id: str
    attempts: int
    last_error: str | None
    #: When a message waiting to be retried (status ``queued``) is tried next.
    next_attempt_at: datetime | None
    #: The ids of the records the message is about (payment_id, subscription_id, invoice_id, …).
    related: dict[str, Any]
    payment_id: str | None
    created_at: datetime
    sent_at: datetime | None


def email_out(row: Any) -> dict[str, Any]:
    related = row["related"] or {}
    return {
        "id": row["id"],
        "object": "email",
        "kind": row["kind"],
        "to": row["recipient"],
        "subject": row["subject"],
        "status": row["status"],
        "locale": row["locale"],
        "message_id": row["message_id"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "next_attempt_at": rfc3339(row["next_attempt_at"]) if row["status"] == "queued" else None,
        "related": related,
        "payment_id": related.get("payment_id"),
        "created_at": rfc3339(row["created_at"]),
        "sent_at": rfc3339(row["sent_at"]) if row["sent_at"] else None,
    }


@routes.get("/v1/emails")
@operation("List sent and queued e-mails", scope="emails:read", query=EmailList, response=ListOf(EmailOut))
async def list_emails(request: web.Request) -> web.Response:
    ctx = require(request, "emails:read")
    q = parse_query(request, EmailList)
    async with request_tx(request) as conn:
        rows = await repo.list_emails(
            conn,
            ctx.account_id,
            to=q.to,
            kind=q.kind,
            status=q.status,
            limit=q.fetch_limit,
            starting_after=q.starting_after,
        )
    return list_page(rows, q, email_out)
