"""Events billing consumes for its ledger, and HTTP: /v1/ledger_entries.

The ledger is billing's record of money moving for the account (migration 0003 has the
kinds and signs): a payment is credited once — at checkout (``purchase.completed`` that
succeeded) or when its success became final later (``payment.succeeded``) — a failure
is recorded without an amount, and every refund is a negative entry. Each handler runs
in the inbox's transaction and each entry is unique by its fact, so the ledger stays
exact when events repeat, overlap or arrive out of order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from shared.clock import rfc3339
from shared.events import EventEnvelope
from shared.events.models import PaymentFailedV1, PaymentRefundedV1, PaymentSucceededV1, PurchaseCompletedV1
from shared.ids import new_id
from shared.inbox import HandlerContext
from shared.web.auth import require
from shared.web.openapi import ListOf, operation
from shared.web.pagination import ListQuery, list_page
from shared.web.request import parse_query
from shared.web.tx import request_tx

from . import repository as repo

routes = web.RouteTableDef()

# The ledger's part of billing's event handlers (registered in services/billing/events.py).


async def on_purchase_completed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PurchaseCompletedV1, envelope: EventEnvelope
) -> None:
    if event.payment_status != "succeeded":  # a bank debit still processing: credited when it settles
        return
    await repo.record_entry(
        conn,
        entry_id=new_id("le"),
        account_id=envelope.account_id,
        kind="payment",
        payment_id=event.payment_id,
        amount=event.amount,
        currency=event.currency,
        source=event.source,
        event_id=envelope.id,
        occurred_at=event.paid_at,
    )


async def on_payment_succeeded(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentSucceededV1, envelope: EventEnvelope
) -> None:
    await repo.record_entry(
        conn,
        entry_id=new_id("le"),
        account_id=envelope.account_id,
        kind="settlement",
        payment_id=event.payment_id,
        amount=event.amount,
        currency=event.currency,
        source=event.source,
        event_id=envelope.id,
        occurred_at=event.succeeded_at,
        details={"method_type": event.method_type},
    )


async def on_payment_failed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentFailedV1, envelope: EventEnvelope
) -> None:
    await repo.record_entry(
        conn,
        entry_id=new_id("le"),
        account_id=envelope.account_id,
        kind="failure",
        payment_id=event.payment_id,
        amount=0,
        currency=event.currency,
        source=event.source,
        event_id=envelope.id,
        occurred_at=event.failed_at,
        details={
            "attempted_amount": event.amount,
            "method_type": event.method_type,
            "decline_code": event.decline_code,
            "reason": event.reason,
        },
    )


async def on_payment_refunded(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentRefundedV1, envelope: EventEnvelope
) -> None:
    # (events without a source were published before it travelled with the refund)
    source = event.source or await repo.payment_source(conn, envelope.account_id, event.payment_id)
    await repo.record_entry(
        conn,
        entry_id=new_id("le"),
        account_id=envelope.account_id,
        kind="refund",
        payment_id=event.payment_id,
        amount=-event.amount,
        currency=event.currency,
        source=source or {},
        event_id=envelope.id,
        occurred_at=event.refunded_at,
        refund_id=event.refund_id,
        details={"amount_refunded": event.amount_refunded, "payment_status": event.payment_status},
    )


class EntryList(ListQuery):
    payment_id: str | None = Field(default=None, max_length=100)
    kind: Literal["payment", "settlement", "failure", "refund"] | None = None


class LedgerEntryOut(BaseModel):
    """What `entry_out` answers (the OpenAPI document)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["ledger_entry"]
    kind: Literal["payment", "settlement", "failure", "refund"]
    payment_id: str
    refund_id: str | None
    #: Signed: payments and settlements positive, refunds negative, failures 0.
    amount: int
    currency: str
    source: dict[str, Any]
    details: dict[str, Any] | None
    occurred_at: datetime


def entry_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "ledger_entry",
        "kind": row["kind"],
        "payment_id": row["payment_id"],
        "refund_id": row["refund_id"],
        "amount": row["amount"],
        "currency": row["currency"],
        "source": row["source"],
        "details": row["details"],
        "occurred_at": rfc3339(row["occurred_at"]),
    }


@routes.get("/v1/ledger_entries")
@operation("List ledger entries", scope="payments:read", query=EntryList, response=ListOf(LedgerEntryOut))
async def list_entries(request: web.Request) -> web.Response:
    """Newest first; ``amount`` is signed (refunds are negative, failures 0)."""
    ctx = require(request, "payments:read")
    q = parse_query(request, EntryList)
    async with request_tx(request) as conn:
        rows = await repo.list_entries(
            conn,
            ctx.account_id,
            payment_id=q.payment_id,
            kind=q.kind,
            limit=q.fetch_limit,
            starting_after=q.starting_after,
        )
    return list_page(rows, q, entry_out)
