"""Charging one subscription payment date: the job, exactly once.

Three steps, two transactions (never a processor call inside a transaction):

1. **prepare** — lock the charge; if it is due and nothing is in flight, write an
   attempt row with a deterministic idempotency key (``commerce:<charge>:<number>``) and
   a payment id, and commit. If an attempt is already pending (a crash, a timeout, a lost
   response, a twin job after a frozen worker), reuse it.
2. **call** — an off-session PaymentIntent for the saved customer and method with that
   key: any repeat reaches the same intent at the processor (TARGETS R1–R3).
3. **record** — lock the charge again; only a still-pending attempt is recorded (a twin
   that got there first wins; the loser changes nothing): attempt outcome, charge and
   subscription state, dunning decision, ``payment.succeeded`` / ``payment.failed`` and
   the subscription snapshot, in one transaction.

An outcome that stays unknown is resolved by the reconciler (`reconciler.py`), which asks
the processor for the intent carrying the attempt's id before anything is tried again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg

from shared.accounts import Account, load_account
from shared.config import CommonSettings
from shared.db import tenant_tx
from shared.events.models import PaymentFailedV1, PaymentSucceededV1, SubscriptionCharge
from shared.ids import new_id
from shared.logging import get_logger
from shared.outbox import publish_event
from shared.processor.base import IntentOutcome, PaymentProcessor
from shared.processor.registry import ProcessorRegistry

from ..dunning import policy as dunning
from ..subscriptions import lifecycle
from ..subscriptions import repository as subs_repo
from ..subscriptions.service import change, charged_lines, contact_name
from ..subscriptions.tokens import payment_method_url
from . import repository as repo

log = get_logger(__name__)
SCHEMA = "billing"
BANK_DEBITS = ("us_bank_account", "sepa_debit", "bacs_debit")

Trigger = Literal["due", "retry", "new_payment_method"]


@dataclass(frozen=True, slots=True)
class ChargeDeps:
    pool: asyncpg.Pool
    processors: ProcessorRegistry
    settings: CommonSettings


@dataclass(frozen=True, slots=True)
class Prepared:
    account: Account
    attempt: asyncpg.Record


@dataclass(frozen=True, slots=True)
class Recorded:
    payment_id: str
    status: str  # succeeded | failed | processing


def idempotency_key(charge_id: str, number: int) -> str:
    return f"commerce:{charge_id}:{number}"


def attempt_metadata(attempt: asyncpg.Record) -> dict[str, str]:
    return {
        "commerce_account_id": attempt["account_id"],
        "commerce_subscription_id": attempt["subscription_id"],
        "commerce_charge_id": attempt["charge_id"],
        "commerce_attempt_id": attempt["id"],
        "commerce_payment_id": attempt["payment_id"],
    }


# -- 1. prepare --------------------------------------------------------------------------------
async def _new_attempt(
    conn: asyncpg.Connection, account: Account, charge: asyncpg.Record, sub: asyncpg.Record, trigger: Trigger
) -> asyncpg.Record:
    number = charge["attempts"]
    attempt = await repo.insert_attempt(
        conn,
        {
            "id": new_id("att"),
            "account_id": account.id,
            "charge_id": charge["id"],
            "subscription_id": sub["id"],
            "number": number,
            "trigger": trigger,
            "idempotency_key": idempotency_key(charge["id"], number),
            "payment_id": new_id("pay"),
            "amount": charge["amount"],
            "currency": charge["currency"],
            "processor_customer_id": sub["processor_customer_id"],
            "payment_method_id": sub["payment_method_id"],
            "method_type": sub["method_type"] or "card",
            "status": "pending",
            "created_at": account.clock.now(),
        },
    )
    await repo.update_charge(conn, charge["id"], {"status": "processing", "attempts": number + 1}, account.clock.now())
    return attempt


async def prepare_due(conn: asyncpg.Connection, account_id: str, charge_id: str) -> Prepared | None:
    """The job's first transaction: the attempt to make (or resume), or None if there is
    nothing to do (already settled, not due yet, the subscription ended)."""
    charge = await repo.get_charge(conn, account_id, charge_id, lock=True)
    if charge is None or charge["status"] in repo.FINAL_CHARGE_STATUSES:
        return None
    account = await load_account(conn, SCHEMA, account_id)
    if account is None:
        raise RuntimeError(f"account {account_id} is not known to billing yet")
    pending = await repo.unresolved_attempt(conn, charge_id)
    if pending is not None:
        return Prepared(account, pending) if pending["status"] == "pending" else None
    now = account.clock.now()
    if charge["run_at"] > now:
        return None  # an early copy of the job: the scheduler enqueues it when due
    sub = await subs_repo.get(conn, account_id, charge["subscription_id"], lock=True)
    if sub["status"] in ("canceled", "completed", "paused", "unpaid"):
        await repo.update_charge(conn, charge_id, {"status": "canceled"}, now)
        return None
    if not sub["payment_method_id"]:
        # Created (API) to charge automatically before the buyer saved a method: the charge
        # waits, still `scheduled`; the enqueue lease brings the job back, and once the
        # buyer has saved a method through the update link it is charged (decisions:
        # subscription admin API). Canceling it would lose this payment date for good
        # (one charge per date).
        return None
    trigger: Trigger = "due" if charge["attempts"] == 0 else "retry"
    return Prepared(account, await _new_attempt(conn, account, charge, sub, trigger))


# -- 2. call -------------------------------------------------------------------------------------
async def call_processor(processor: PaymentProcessor, attempt: asyncpg.Record) -> IntentOutcome:
    method = attempt["method_type"]
    return await processor.charge(
        amount=attempt["amount"],
        currency=attempt["currency"],
        customer_id=attempt["processor_customer_id"],
        payment_method_id=attempt["payment_method_id"],
        off_session=True,
        metadata=attempt_metadata(attempt),
        idempotency_key=attempt["idempotency_key"],
        payment_method_types=[method] if method in BANK_DEBITS else None,
    )


# -- 3. record -----------------------------------------------------------------------------------
def _as_policy_attempt(row: asyncpg.Record) -> dunning.Attempt:
    return dunning.Attempt(
        at=row["resolved_at"],
        trigger=row["trigger"],
        method_type=row["method_type"] or "card",
        succeeded=row["status"] == "succeeded",
        decline_code=row["decline_code"],
    )


async def dunning_run(conn: asyncpg.Connection, account: Account, charge: asyncpg.Record) -> dunning.DunningRun:
    """The charge's dunning state, replayed from its resolved attempts."""
    policy = (
        dunning.RetryPolicy.from_settings(charge["policy"])
        if charge["policy"]
        else dunning.RetryPolicy.from_settings(account.settings.subscription_settings.model_dump())
    )
    tz = ZoneInfo(account.settings.time_zone)
    resolved = [a for a in await repo.attempts_of(conn, charge["id"]) if a["status"] in ("succeeded", "failed")]
    return dunning.replay(policy, charge["due_date"], tz, [_as_policy_attempt(a) for a in resolved])


async def record_outcome(
    conn: asyncpg.Connection, settings: CommonSettings, account: Account, attempt_id: str, outcome: IntentOutcome
) -> Recorded | None:
    """Record what the processor said about an attempt, once. None when another job
    recorded it first (or the outcome is not final and was already noted)."""
    attempt = await repo.get_attempt(conn, attempt_id)
    charge = await repo.get_charge(conn, account.id, attempt["charge_id"], lock=True)
    attempt = await repo.get_attempt(conn, attempt_id)  # re-read under the charge's lock
    if attempt["status"] not in ("pending", "processing"):
        return None
    now = account.clock.now()
    fields: dict[str, Any] = {
        "processor_payment_intent_id": outcome.id,
        "method_type": outcome.payment_method_type or attempt["method_type"],
    }
    if outcome.status == "processing":  # a bank debit submitted: its outcome comes later
        if attempt["status"] == "processing":
            return None
        await repo.update_attempt(conn, attempt_id, {**fields, "status": "processing"})
        return Recorded(attempt["payment_id"], "processing")
    succeeded = outcome.status == "succeeded"
    decline = None
    if not succeeded:
        decline = outcome.decline_code or (
            "authentication_required" if outcome.status == "requires_action" else "card_declined"
        )
    attempt = await repo.update_attempt(
        conn,
        attempt_id,
        {
            **fields,
            "status": "succeeded" if succeeded else "failed",
            "decline_code": decline,
            "message": None if succeeded else (outcome.message or "The payment was declined."),
            "fee": outcome.fee,
            "resolved_at": now,
        },
    )
    sub = await subs_repo.get(conn, account.id, charge["subscription_id"], lock=True)
    if succeeded:
        await _on_success(conn, settings, account, charge, sub, attempt, now)
        return Recorded(attempt["payment_id"], "succeeded")
    await _on_failure(conn, settings, account, charge, sub, attempt, now)
    return Recorded(attempt["payment_id"], "failed")


def _charge_ref(
    settings: CommonSettings,
    charge: asyncpg.Record,
    sub: asyncpg.Record,
    attempt: asyncpg.Record,
    **extra: Any,
) -> SubscriptionCharge:
    lines = charged_lines(sub)
    return SubscriptionCharge(
        subscription_id=sub["id"],
        charge_id=charge["id"],
        attempt_id=attempt["id"],
        period_index=charge["period_index"],
        due_date=charge["due_date"],
        trigger=attempt["trigger"],
        interval=sub["interval"],
        lines=lines,
        subtotal=sum(line.amount for line in lines),
        tax=sum(line.tax for line in lines),
        contact_id=sub["contact_id"],
        company_id=sub["company_id"],
        deal_ids=list(sub["deal_ids"]),
        contact_name=contact_name(sub["contact"]),
        processor_payment_intent_id=attempt["processor_payment_intent_id"],
        processor_customer_id=attempt["processor_customer_id"],
        status=sub["status"],
        payments_made=sub["payments_made"],
        payments_total=sub["payments_total"],
        next_payment_date=sub["next_payment_date"],
        update_url=payment_method_url(settings, sub["id"], sub["pm_token_version"]),
        test_mode=sub["test_mode"],
        **extra,
    )


async def _on_success(conn, settings, account, charge, sub, attempt, now: datetime) -> None:
    pos = lifecycle.after_payment(
        lifecycle.Position(sub["status"], sub["payments_made"], sub["next_index"], sub["next_payment_date"]),
        anchor=sub["start_date"],
        interval=sub["interval"],
        payments_total=sub["payments_total"],
        end_date=sub["end_date"],
        paid_index=charge["period_index"],
    )
    await repo.update_charge(conn, charge["id"], {"status": "succeeded", "final_outcome": None}, now)
    changes: dict[str, Any] = {
        "status": pos.status,
        "payments_made": pos.payments_made,
        "next_index": pos.next_index,
        "next_payment_date": pos.next_payment_date,
        "method_type": attempt["method_type"],
    }
    if sub["status"] in lifecycle.ENDED:
        # Ended while this charge was in flight (the API refuses that, a race could not):
        # the money was taken and is recorded, the subscription stays ended.
        log.warning("charge succeeded on an ended subscription", subscription_id=sub["id"], charge_id=charge["id"])
        changes = {"payments_made": pos.payments_made, "method_type": attempt["method_type"]}
    if changes.get("status") == "completed":
        changes["ended_at"] = now
    if sub["status"] == "unpaid":  # recovered by the buyer's new method
        changes["canceled_at"] = None
    sub = await change(conn, sub, changes, now)
    await publish_event(
        conn,
        schema=SCHEMA,
        producer="billing",
        account_id=account.id,
        event=PaymentSucceededV1(
            payment_id=attempt["payment_id"],
            amount=attempt["amount"],
            currency=attempt["currency"],
            method_type=attempt["method_type"],
            source={"type": "subscription", "id": sub["id"]},
            email=sub["email"],
            succeeded_at=now,
            subscription=_charge_ref(settings, charge, sub, attempt),
        ),
        occurred_at=now,
    )
    # Catch-up (downtime, a test-clock jump): the next date may already be due.
    if (
        pos.next_payment_date is not None
        and pos.next_payment_date <= now.astimezone(ZoneInfo(account.settings.time_zone)).date()
    ):
        from .scheduler import schedule_for_account

        await schedule_for_account(conn, account.id)


async def _on_failure(conn, settings, account, charge, sub, attempt, now: datetime) -> None:
    run = await dunning_run(conn, account, charge)
    # `dunning_run` already folded this attempt in (it is resolved): its decision is the
    # run's state; the flags come from replaying without it.
    before = dunning.replay(run.policy, run.due_date, run.tz, run.attempts[:-1])
    _, decision = dunning.apply(before, run.attempts[-1])
    charge_changes: dict[str, Any] = {"policy": run.policy.to_settings()}
    sub_changes: dict[str, Any] = {"status": decision.status}
    if decision.status == "past_due":
        charge_changes.update(status="retrying", run_at=decision.next_retry_at, enqueued_at=None)
    else:
        charge_changes.update(status="failed", final_outcome=decision.final_outcome)
        if decision.status == "canceled":
            sub_changes.update(canceled_at=now, ended_at=now, next_payment_date=None)
    await repo.update_charge(conn, charge["id"], charge_changes, now)
    sub = await change(conn, sub, sub_changes, now)
    await publish_event(
        conn,
        schema=SCHEMA,
        producer="billing",
        account_id=account.id,
        event=PaymentFailedV1(
            payment_id=attempt["payment_id"],
            amount=attempt["amount"],
            currency=attempt["currency"],
            method_type=attempt["method_type"],
            source={"type": "subscription", "id": sub["id"]},
            email=sub["email"],
            decline_code=attempt["decline_code"],
            reason=attempt["message"],
            failed_at=now,
            subscription=_charge_ref(
                settings,
                charge,
                sub,
                attempt,
                next_retry_at=decision.next_retry_at,
                retry_number=decision.next_retry_number,
                final_outcome=decision.final_outcome
                or (run.policy.after_final_failure if decision.status == "past_due" else None),
                hard_decline=decision.reason == "hard_decline",
                email_buyer=decision.email_buyer_update_link,
                notify_recipients=decision.notify_recipients,
            ),
        ),
        occurred_at=now,
    )


# -- the whole job -------------------------------------------------------------------------------
async def execute(deps: ChargeDeps, account_id: str, attempt: asyncpg.Record, account: Account) -> Recorded | None:
    processor = deps.processors.for_account(account)
    outcome = await call_processor(processor, attempt)  # ProcessorUnavailable: the job retries
    async with tenant_tx(deps.pool, account_id) as conn:
        account = await load_account(conn, SCHEMA, account_id) or account
        return await record_outcome(conn, deps.settings, account, attempt["id"], outcome)


async def run_charge(deps: ChargeDeps, account_id: str, charge_id: str) -> Recorded | None:
    async with tenant_tx(deps.pool, account_id) as conn:
        prepared = await prepare_due(conn, account_id, charge_id)
    if prepared is None:
        return None
    result = await execute(deps, account_id, prepared.attempt, prepared.account)
    if result is not None:
        log.info("subscription charge", charge_id=charge_id, payment_id=result.payment_id, outcome=result.status)
    return result


async def charge_new_method(deps: ChargeDeps, account_id: str, subscription_id: str) -> Recorded | None:
    """The buyer saved a new method through the update link: a subscription that owes a
    payment (past due, unpaid) is charged at once with it (dunning policy)."""
    async with tenant_tx(deps.pool, account_id) as conn:
        account = await load_account(conn, SCHEMA, account_id)
        charge = await repo.open_charge(conn, account_id, subscription_id, lock=True)
        if charge is None:
            return None
        if await repo.unresolved_attempt(conn, charge["id"]) is not None:
            return None  # a charge is in flight: its outcome decides
        run = await dunning_run(conn, account, charge)
        if not dunning.on_new_payment_method(run).retry_now:
            return None
        sub = await subs_repo.get(conn, account_id, subscription_id, lock=True)
        attempt = await _new_attempt(conn, account, charge, sub, "new_payment_method")
    return await execute(deps, account_id, attempt, account)


def local_date(account: Account, at: datetime) -> date:
    return at.astimezone(ZoneInfo(account.settings.time_zone)).date()
