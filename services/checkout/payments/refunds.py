"""Refunds, full or partial, through the processor — never twice, never too much.

The same discipline as charging (sessions/service.py):
1. **reserve** — under the payment's row lock: the payment must be settled
   (``succeeded`` / ``partially_refunded``) and the amount must fit in what remains
   (amount − refunded − still-pending refunds); a ``refunds`` row is written with status
   ``pending``, and its insert trigger reserves the amount on the payment. The database
   refuses an over-refund even if this check were wrong (migration 0005). Committed
   *before* the processor is called.
2. **call** the processor with the idempotency key derived from the row's id
   (``commerce:<refund id>``): a retry — after a timeout, a lost response or a crash —
   reaches the same refund at the processor instead of a second one.
3. **settle** — under the payment's row lock again: the refund's outcome is recorded;
   ``succeeded`` moves the amount from pending to refunded and sets the payment's status
   (trigger), and ``payment.refunded`` is written to the outbox in that transaction.
   ``failed`` releases the reservation; a refund still pending at the processor keeps it
   until the processor reports the outcome (`record_outcome`, also for webhooks).

Retries: a request carrying an ``Idempotency-Key`` records it on the refund row, so a
retry of a request whose response was lost (or that crashed after step 1) resumes that
same refund. A refund left ``pending`` with no answer is resumed by the next refund
request on the payment once it is `STALE_AFTER` old: the processor is first asked
whether it knows the refund (by our id in its metadata), then called with the same key.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from shared.accounts import Account, load_account
from shared.db import tenant_tx
from shared.events.models import PaymentRefundedV1
from shared.ids import new_id
from shared.logging import get_logger
from shared.outbox import publish_event
from shared.processor import ProcessorError, ProcessorUnavailable, RefundOutcome
from shared.processor.registry import ProcessorRegistry
from shared.web.problem import Conflict, NotFound, ServiceUnavailable, field_error

from . import repository as repo
from .schemas import refund_out

SCHEMA = "checkout"
REFUNDABLE = ("succeeded", "partially_refunded")
#: A pending refund this old has no request working on it any more (processor timeout
#: × retries is far below): the next refund request of its payment resumes it.
STALE_AFTER = timedelta(minutes=2)
#: Processors keep idempotency keys for 24 hours; past that a refund is looked up only.
KEY_RETENTION = timedelta(hours=23)

log = get_logger(__name__)


class RefundRefused(Conflict):
    slug = "refund-refused"


class NothingToRefund(Conflict):
    slug = "nothing-to-refund"


async def refund(
    pool: asyncpg.Pool,
    processors: ProcessorRegistry,
    account_id: str,
    payment_id: str,
    amount: int | None,
    request_key: str | None,
) -> asyncpg.Record:
    """Refund ``amount`` (None: all that remains) of a payment; returns the refund row."""
    async with tenant_tx(pool, account_id) as conn:
        account = await load_account(conn, SCHEMA, account_id)
        payment = await repo.get_payment(conn, account_id, payment_id)
        if payment is None:
            raise NotFound("No such payment.")
        existing = await repo.get_refund_by_request_key(conn, account_id, request_key) if request_key else None
    if existing is not None:  # a retry of a request that did not get its answer
        if existing["payment_id"] != payment_id:
            raise NotFound("No such payment.")
        resumed = await _resume(pool, processors, account, payment, existing, fresh=True)
        return _answer(resumed)

    await _resume_stale(pool, processors, account, payment)
    reserved = await _reserve(pool, account, payment_id, amount, request_key)
    settled = await _call_and_settle(pool, processors, account, payment, reserved)
    return _answer(settled)


def _answer(row: asyncpg.Record) -> asyncpg.Record:
    if row["status"] == "failed":
        raise RefundRefused(
            f"The payment processor refused the refund: {row['failure_reason'] or 'no reason given'}.",
            extra={"refund": refund_out(row)},
        )
    return row


async def _reserve(
    pool: asyncpg.Pool, account: Account, payment_id: str, amount: int | None, request_key: str | None
) -> asyncpg.Record:
    async with tenant_tx(pool, account.id) as conn:
        payment = await repo.get_payment(conn, account.id, payment_id, lock=True)
        if payment is None:
            raise NotFound("No such payment.")
        if payment["status"] not in REFUNDABLE:
            raise Conflict(f"A {payment['status']} payment cannot be refunded.", slug="payment-not-refundable")
        remaining = payment["amount"] - payment["amount_refunded"] - payment["amount_refund_pending"]
        if remaining <= 0:
            detail = "Everything this payment can refund is refunded or being refunded."
            raise NothingToRefund(detail)
        if amount is None:
            amount = remaining
        elif amount > remaining:
            raise field_error("amount", f"must not exceed the {remaining} (minor units) that remain refundable")
        now = account.clock.now()
        return await repo.insert_refund(
            conn,
            id=new_id("refund"),
            account_id=account.id,
            payment_id=payment_id,
            amount=amount,
            currency=payment["currency"],
            status="pending",
            request_key=request_key,
            created_at=now,
            updated_at=now,
        )


async def _call_and_settle(
    pool: asyncpg.Pool,
    processors: ProcessorRegistry,
    account: Account,
    payment: asyncpg.Record,
    row: asyncpg.Record,
    *,
    look_up_first: bool = False,
) -> asyncpg.Record:
    if not payment["processor_payment_intent_id"]:
        return await _settle_failed(pool, account, row, "the payment has no processor payment to refund")
    try:
        processor = processors.for_account(account)  # ProcessorNotConnected: a refusal
        outcome = None
        if look_up_first:
            outcome = next(
                (
                    r
                    for r in await processor.list_refunds(payment["processor_payment_intent_id"])
                    if r.metadata.get("refund_id") == row["id"]
                ),
                None,
            )
            if outcome is None and account.clock.now() - row["created_at"] > KEY_RETENTION:
                return await _settle_failed(pool, account, row, "the processor has no record of this refund")
        if outcome is None:
            outcome = await processor.create_refund(
                payment_intent_id=payment["processor_payment_intent_id"],
                amount=row["amount"],
                metadata={"account_id": account.id, "payment_id": payment["id"], "refund_id": row["id"]},
                idempotency_key=row["idempotency_key"],
            )
    except ProcessorUnavailable:
        log.warning("refund outcome unknown", refund_id=row["id"], payment_id=payment["id"])
        raise ServiceUnavailable(
            "The payment processor did not answer; the refund is recorded as pending. Retry with the same "
            "Idempotency-Key to complete it (it will not be refunded twice).",
            extra={"refund_id": row["id"]},
        ) from None
    except ProcessorError as exc:
        return await _settle_failed(pool, account, row, str(exc) or "refused")
    async with tenant_tx(pool, account.id) as conn:
        return await record_outcome(conn, account, row["id"], outcome)


async def _settle_failed(pool: asyncpg.Pool, account: Account, row: asyncpg.Record, reason: str) -> asyncpg.Record:
    async with tenant_tx(pool, account.id) as conn:
        await repo.get_payment(conn, account.id, row["payment_id"], lock=True)
        current = await repo.get_refund(conn, account.id, row["id"], lock=True)
        if current["status"] != "pending":
            return current
        log.info("refund refused", refund_id=row["id"], reason=reason)
        return await repo.settle_refund(
            conn,
            row["id"],
            status="failed",
            processor_refund_id=None,
            failure_reason=reason[:500],
            now=account.clock.now(),
        )


async def record_outcome(
    conn: asyncpg.Connection, account: Account, refund_id: str, outcome: RefundOutcome
) -> asyncpg.Record:
    """Apply the processor's answer about one of our refunds, in the caller's transaction
    (the HTTP flow, or a processor webhook). Idempotent: a refund that is no longer
    ``pending`` is returned as it is, and only the change to ``succeeded`` publishes
    ``payment.refunded`` — once."""
    current = await repo.get_refund(conn, account.id, refund_id)
    if current is None:
        raise NotFound("No such refund.")
    await repo.get_payment(conn, account.id, current["payment_id"], lock=True)  # payment first, then refund
    current = await repo.get_refund(conn, account.id, refund_id, lock=True)
    if current["status"] != "pending":
        return current
    now = account.clock.now()
    row = await repo.settle_refund(
        conn,
        refund_id,
        status=outcome.status,
        processor_refund_id=outcome.id,
        failure_reason=outcome.failure_reason if outcome.status == "failed" else None,
        now=now,
    )
    payment = await repo.touch_payment(conn, account.id, row["payment_id"], now)
    if row["status"] == "succeeded":
        await publish_event(
            conn,
            schema=SCHEMA,
            producer="checkout",
            account_id=account.id,
            event=PaymentRefundedV1(
                payment_id=payment["id"],
                refund_id=row["id"],
                amount=row["amount"],
                currency=row["currency"],
                amount_refunded=payment["amount_refunded"],
                payment_status=payment["status"],
                refunded_at=now,
                source={"type": payment["source_type"], "id": payment["source_id"]},
            ),
            occurred_at=now,
        )
    log.info("refund settled", refund_id=row["id"], payment_id=payment["id"], status=row["status"])
    return row


async def _resume(
    pool: asyncpg.Pool,
    processors: ProcessorRegistry,
    account: Account,
    payment: asyncpg.Record,
    row: asyncpg.Record,
    *,
    fresh: bool,
) -> asyncpg.Record:
    """Finish a refund left ``pending`` by an earlier request."""
    if row["status"] != "pending":
        return row
    if not fresh and row["processor_refund_id"]:
        return row  # pending at the processor: its webhook (or a later look-up) settles it
    return await _call_and_settle(pool, processors, account, payment, row, look_up_first=True)


async def _resume_stale(pool: asyncpg.Pool, processors: ProcessorRegistry, account: Account, payment) -> None:
    async with tenant_tx(pool, account.id) as conn:
        stale = await repo.stale_pending_refunds(conn, account.id, payment["id"], account.clock.now() - STALE_AFTER)
    for row in stale:
        try:
            await _resume(pool, processors, account, payment, row, fresh=False)
        except ServiceUnavailable:
            pass  # still unknown: it keeps its reservation, the new request goes on
