"""Processor webhooks, processing (checkout's worker): act on a stored event.

Order-independent: for ``payment_intent.*`` and ``charge.*`` the PaymentIntent is
re-fetched from the processor and its *current* state is what counts, so an event's own
(possibly stale) contents never matter and any number of repeats, in any order, converge
on the same state:
- no payment yet and the intent succeeded or is processing (the buyer closed the tab
  before ``/complete``): the purchase is completed here, by the same function
  ``/complete`` uses (`sessions.service.record_payment`) — one payment per session;
- a processing payment (bank debit) whose intent succeeded or failed moves to that
  outcome, with ``payment.succeeded`` / ``payment.failed`` through the outbox, in the
  same transaction; a succeeded (or refunded) payment is never moved back;
- the charge id, fee and net are synced once the processor reports them.
"""

from __future__ import annotations

import json

import asyncpg

from shared.accounts import Account, load_account
from shared.db import tenant_tx
from shared.events.models import PaymentFailedV1, PaymentSucceededV1
from shared.inbox import HandlerContext
from shared.logging import get_logger
from shared.outbox import publish_event
from shared.processor import IntentOutcome, ProcessorError, ProcessorUnavailable

from ..sessions import service as sessions
from . import repository as repo
from .schemas import intent_of

SCHEMA = "checkout"
log = get_logger(__name__)


async def process_event(ctx: HandlerContext, account_id: str, processor_event_id: str) -> None:
    """Act on a stored processor event; safe to run any number of times, concurrently."""
    pool = ctx.app_pool
    async with tenant_tx(pool, account_id) as conn:
        stored = await repo.get_event(conn, account_id, processor_event_id)
        account = await load_account(conn, SCHEMA, account_id)
    if stored is None or stored["status"] != "received" or account is None:
        return
    intent_id = intent_of(json.loads(stored["payload"]))
    if not intent_id:
        result, status = "no payment intent in the event", "ignored"
    else:
        try:
            processor = ctx.extras["processors"].for_account(account)
            outcome = await processor.retrieve_payment_intent(intent_id)
        except ProcessorUnavailable:
            raise  # retried by the queue
        except ProcessorError as exc:  # no processor connected, or an intent it does not know (404)
            result, status = f"payment intent not retrievable: {exc}", "ignored"
        else:
            result = await apply_intent(pool, account, outcome)
            status = "processed" if not result.startswith("ignored") else "ignored"
    async with tenant_tx(pool, account_id) as conn:
        await repo.mark_processed(conn, account_id, processor_event_id, status, result)
    log.info("processor event processed", processor_event_id=processor_event_id, result=result)


async def apply_intent(pool: asyncpg.Pool, account: Account, outcome: IntentOutcome) -> str:
    """Bring our payment in line with the PaymentIntent's current state; returns what it
    did (for the stored event's ``result``)."""
    if outcome.metadata.get("account_id") != account.id:
        return "ignored: the intent belongs to another account"
    session_id = outcome.metadata.get("session_id")
    if not session_id:
        return "ignored: not a checkout payment"
    async with tenant_tx(pool, account.id) as conn:
        payment = await repo.payment_by_intent(conn, account.id, outcome.id)
        known_session = payment is not None or await repo.session_exists(conn, account.id, session_id)
    if not known_session:
        return "ignored: unknown checkout session"
    note = ""
    if payment is None:
        if outcome.status not in ("succeeded", "processing"):
            return f"no payment: the intent is {outcome.raw_status}"
        recorded = await sessions.record_payment(
            pool,
            account,
            session_id,
            outcome,
            op_id=outcome.metadata.get("operation_id"),
            method_type=outcome.payment_method_type or "card",
        )
        if recorded.created:
            return f"payment {recorded.payment_id} recorded ({outcome.status}) from the webhook"
        async with tenant_tx(pool, account.id) as conn:
            payment = await repo.payment_by_intent(conn, account.id, outcome.id)
        if payment is None:
            log.error(
                "a second payment intent succeeded for a paid checkout session",
                session_id=session_id,
                payment_id=recorded.payment_id,
                intent_id=outcome.id,
            )
            return f"conflict: session already paid by {recorded.payment_id}; intent {outcome.id} needs a refund"
        note = "recorded by /complete; "
    return note + await settle(pool, account, payment["id"], outcome)


async def settle(pool: asyncpg.Pool, account: Account, payment_id: str, outcome: IntentOutcome) -> str:
    """Move a processing payment to the intent's final outcome (and publish it), and sync
    the charge's details; never downgrade."""
    async with tenant_tx(pool, account.id) as conn:
        payment = await repo.payment_by_intent(conn, account.id, outcome.id, lock=True)
        now = account.clock.now()
        moved = None
        if outcome.status == "succeeded" and payment["status"] in ("processing", "failed"):
            moved = await repo.settle_payment(
                conn, payment_id, status="succeeded", from_statuses=["processing", "failed"], at=now
            )
            event = PaymentSucceededV1(
                payment_id=payment_id,
                amount=payment["amount"],
                currency=payment["currency"],
                method_type=payment["method_type"],
                source={"type": payment["source_type"], "id": payment["source_id"]},
                email=payment["email"],
                succeeded_at=now,
            )
        elif outcome.status in ("declined", "canceled") and payment["status"] == "processing":
            moved = await repo.settle_payment(conn, payment_id, status="failed", from_statuses=["processing"], at=now)
            event = PaymentFailedV1(
                payment_id=payment_id,
                amount=payment["amount"],
                currency=payment["currency"],
                method_type=payment["method_type"],
                source={"type": payment["source_type"], "id": payment["source_id"]},
                email=payment["email"],
                decline_code=outcome.decline_code,
                reason=outcome.message,
                failed_at=now,
            )
        if moved is not None:
            await publish_event(
                conn, schema=SCHEMA, producer="checkout", account_id=account.id, event=event, occurred_at=now
            )
        fee_known = outcome.fee is not None and outcome.balance_currency == payment["currency"]
        await repo.sync_processor_details(
            conn,
            payment_id,
            charge_id=outcome.charge_id,
            fee=outcome.fee if fee_known else None,
            net=outcome.net if fee_known else None,
        )
    if moved is not None:
        log.info("payment settled", payment_id=payment_id, status=moved["status"])
        return f"payment {payment_id} {payment['status']} -> {moved['status']}"
    return f"payment {payment_id} stays {payment['status']} (intent {outcome.raw_status})"
