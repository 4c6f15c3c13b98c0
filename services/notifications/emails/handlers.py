"""Events notifications consumes, and HTTP: /v1/emails."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from shared.clock import rfc3339
from shared.events import EventEnvelope
from shared.events.models import PaymentFailedV1, PaymentSucceededV1, PurchaseCompletedV1
from shared.inbox import HandlerContext, HandlerRegistry
from shared.web.auth import require
from shared.web.openapi import ListOf, operation
from shared.web.pagination import ListQuery, list_page
from shared.web.request import parse_query
from shared.web.tx import request_tx

from . import repository as repo
from . import service

registry = HandlerRegistry("notifications")
routes = web.RouteTableDef()


async def _send_receipt(ctx: HandlerContext, envelope: EventEnvelope) -> None:
    await service.send_for_fact(ctx, envelope.account_id, f"payment:{envelope.data['payment_id']}")


@registry.on("purchase.completed", after_commit=_send_receipt)
async def on_purchase_completed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PurchaseCompletedV1, envelope: EventEnvelope
) -> None:
    await service.queue_receipt(ctx, conn, event, envelope)


@registry.on("payment.succeeded", after_commit=_send_receipt)
async def on_payment_succeeded(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentSucceededV1, envelope: EventEnvelope
) -> None:
    """A bank debit settled: the receipt held since the purchase is sent now."""
    await service.settle_messages(conn, envelope, event)


@registry.on("payment.failed")
async def on_payment_failed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentFailedV1, envelope: EventEnvelope
) -> None:
    """A bank debit failed: the receipt held since the purchase is never sent."""
    await service.settle_messages(conn, envelope, event)


class EmailList(ListQuery):
    to: str | None = Field(default=None, max_length=320)
    kind: str | None = Field(default=None, max_length=50)
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
    #: The ids of the records the message is about (payment_id, …).
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
