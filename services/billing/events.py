"""Every event billing consumes: one handler per type, each doing the ledger's and the
subscriptions' part in the inbox's transaction."""

from __future__ import annotations

import asyncpg

from shared.accounts import load_account
from shared.events import EventEnvelope
from shared.events.models import (
    ContactUpsertedV1,
    PaymentFailedV1,
    PaymentRefundedV1,
    PaymentSucceededV1,
    PurchaseCompletedV1,
    QuoteConvertedV1,
)
from shared.inbox import HandlerContext, HandlerRegistry
from shared.projection import register_account_projection

from .charging import scheduler, transitions
from .invoices import scheduler as invoice_scheduler
from .invoices import service as invoices
from .ledger import handlers as ledger
from .reminders.scheduler import remind_due
from .subscriptions import from_quote
from .subscriptions import repository as subs_repo
from .subscriptions import service as subscriptions

registry = HandlerRegistry("billing")


async def _clock_advanced(ctx: HandlerContext, conn: asyncpg.Connection, account_id: str, _from: int, _to: int) -> None:
    """The test clock moved: schedule what became due before the move is acknowledged
    (``POST /v1/test_clock/advance`` waits for that); the scheduler process enqueues it."""
    await transitions.end_periods(conn, account_id=account_id)
    await invoice_scheduler.issue_due(conn, ctx.settings.common, account_id=account_id)
    await scheduler.schedule_for_account(conn, account_id)
    await remind_due(conn, ctx.settings.common, account_id=account_id)


register_account_projection(registry, on_clock_advanced=_clock_advanced)


@registry.on("purchase.completed")
async def on_purchase_completed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PurchaseCompletedV1, envelope: EventEnvelope
) -> None:
    await ledger.on_purchase_completed(ctx, conn, event, envelope)
    if event.source.get("type") == "invoice":  # an invoice paid through its checkout
        await invoices.on_purchase_completed(conn, ctx.settings.common, envelope.account_id, event)
    if event.subscriptions:
        account = await load_account(conn, "billing", envelope.account_id)
        if account is None:
            raise RuntimeError(f"account {envelope.account_id} is not known to billing yet")
        await subscriptions.born_from_purchase(conn, ctx.settings.common, account, event)


@registry.on("quote.converted")
async def on_quote_converted(
    ctx: HandlerContext, conn: asyncpg.Connection, event: QuoteConvertedV1, envelope: EventEnvelope
) -> None:
    account = await load_account(conn, "billing", envelope.account_id)
    if account is None:
        raise RuntimeError(f"account {envelope.account_id} is not known to billing yet")
    await from_quote.create_from_quote(conn, ctx.settings.common, account, event)


@registry.on("payment.succeeded")
async def on_payment_succeeded(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentSucceededV1, envelope: EventEnvelope
) -> None:
    await ledger.on_payment_succeeded(ctx, conn, event, envelope)
    if event.source.get("type") == "invoice":  # a bank debit paying an invoice settled
        await invoices.on_payment_settled(conn, ctx.settings.common, envelope.account_id, event)


@registry.on("payment.failed")
async def on_payment_failed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentFailedV1, envelope: EventEnvelope
) -> None:
    await ledger.on_payment_failed(ctx, conn, event, envelope)
    if event.source.get("type") == "invoice":  # a bank debit paying an invoice failed
        await invoices.on_payment_failed(conn, ctx.settings.common, envelope.account_id, event)
    if event.subscription is None:  # a purchase's bank debit failed: its subscriptions never start
        await subscriptions.first_payment_failed(conn, envelope.account_id, event.payment_id, event.failed_at)


@registry.on("payment.refunded")
async def on_payment_refunded(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentRefundedV1, envelope: EventEnvelope
) -> None:
    await ledger.on_payment_refunded(ctx, conn, event, envelope)


@registry.on("contact.upserted")
async def on_contact_upserted(
    ctx: HandlerContext, conn: asyncpg.Connection, event: ContactUpsertedV1, envelope: EventEnvelope
) -> None:
    """The purchase's contact exists in the CRM: its subscriptions learn the contact, the
    company and the link's deals."""
    if not event.payment_id:
        return
    await subs_repo.remember_purchase_contact(
        conn, envelope.account_id, event.payment_id, event.contact_id, event.company_id, event.deal_ids
    )
    account = await load_account(conn, "billing", envelope.account_id)
    at = account.clock.now() if account else envelope.occurred_at
    rows = await subs_repo.set_contact_for_payment(
        conn, envelope.account_id, event.payment_id, event.contact_id, event.company_id, event.deal_ids, at
    )
    for row in rows:
        await subscriptions.publish_snapshot(conn, row, previous_status=row["status"], at=at)
