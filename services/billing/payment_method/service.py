"""Replacing a subscription's payment method through its update link (PRODUCT §6.4, §6.5).

The buyer confirms a SetupIntent with the processor's fields; `complete` checks it with
the processor, saves the method on the subscription and — when something is owed (past
due, or unpaid after the final retry) — charges it at once (`charge_new_method`). A
method saved anywhere else is never used silently: only this link changes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.accounts import Account, load_account
from shared.db import tenant_tx
from shared.ids import token_hash
from shared.processor.base import PaymentProcessor

from ..charging.service import ChargeDeps, Recorded, charge_new_method
from ..subscriptions import repository as subs_repo
from ..subscriptions.service import change, contact_name

SCHEMA = "billing"
#: Statuses whose payment method can no longer be changed.
CLOSED = ("canceled", "completed")


class LinkNotFound(Exception):
    pass


class LinkClosed(Exception):
    """The subscription ended: nothing to update."""


class SetupNotConfirmed(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True, slots=True)
class Resolved:
    account: Account
    subscription: asyncpg.Record


async def resolve(pool: asyncpg.Pool, token: str) -> Resolved:
    async with pool.acquire() as conn:
        found = await subs_repo.resolve_token(conn, token_hash(token))
    if found is None:
        raise LinkNotFound
    async with tenant_tx(pool, found["account_id"]) as conn:
        account = await load_account(conn, SCHEMA, found["account_id"])
        sub = await subs_repo.get(conn, found["account_id"], found["subscription_id"])
    if account is None or sub is None:
        raise LinkNotFound
    return Resolved(account, sub)


def setup_key(sub: asyncpg.Record, attempt: int) -> str:
    return f"commerce:{sub['id']}:pm_setup:{attempt}"


async def start_setup(pool: asyncpg.Pool, processor: PaymentProcessor, resolved: Resolved) -> dict[str, Any]:
    """A SetupIntent for the subscription's customer (created first if the subscription
    has none, e.g. one created by the API). Each call is a new attempt, keyed durably."""
    account, sub = resolved.account, resolved.subscription
    if sub["status"] in CLOSED:
        raise LinkClosed
    async with tenant_tx(pool, account.id) as conn:
        sub = await subs_repo.get(conn, account.id, sub["id"], lock=True)
        attempt = int((sub["pm_setup"] or {}).get("attempt", 0)) + 1
        await subs_repo.set_pm_setup(conn, sub["id"], {"attempt": attempt})
    customer_id = sub["processor_customer_id"]
    if not customer_id:
        customer = await processor.find_or_create_customer(
            email=sub["email"],
            name=contact_name(sub["contact"]),
            metadata={"account_id": account.id, "subscription_id": sub["id"]},
            idempotency_key=f"commerce:{sub['id']}:customer",
        )
        customer_id = customer.id
    method_types = [sub["method_type"]] if sub["method_type"] and sub["method_type"] != "card" else ["card"]
    outcome = await processor.create_setup_intent(
        customer_id=customer_id,
        payment_method_types=method_types,
        metadata={"account_id": account.id, "subscription_id": sub["id"], "purpose": "update_payment_method"},
        idempotency_key=setup_key(sub, attempt),
    )
    async with tenant_tx(pool, account.id) as conn:
        await subs_repo.set_pm_setup(
            conn, sub["id"], {"attempt": attempt, "id": outcome.id, "customer_id": customer_id}
        )
    return {"intent_type": "setup_intent", "client_secret": outcome.client_secret, "intent_id": outcome.id}


async def complete(
    deps: ChargeDeps, processor: PaymentProcessor, resolved: Resolved
) -> tuple[asyncpg.Record, Recorded | None]:
    """Save the confirmed method; retry what is owed with it. Idempotent: completing the
    same SetupIntent again changes nothing and charges nothing more."""
    account, sub = resolved.account, resolved.subscription
    if sub["status"] in CLOSED:
        raise LinkClosed
    setup = sub["pm_setup"] or {}
    if not setup.get("id"):
        raise SetupNotConfirmed("missing")
    outcome = await processor.retrieve_setup_intent(setup["id"])
    if outcome.status != "succeeded" or not outcome.payment_method_id:
        raise SetupNotConfirmed(outcome.status)
    async with tenant_tx(deps.pool, account.id) as conn:
        account = await load_account(conn, SCHEMA, account.id)
        sub = await subs_repo.get(conn, account.id, sub["id"], lock=True)
        if sub["payment_method_id"] != outcome.payment_method_id:
            sub = await change(
                conn,
                sub,
                {
                    "payment_method_id": outcome.payment_method_id,
                    "processor_customer_id": setup.get("customer_id") or sub["processor_customer_id"],
                    "method_type": outcome.payment_method_type or sub["method_type"] or "card",
                },
                account.clock.now(),
            )
    retry = await charge_new_method(deps, account.id, sub["id"])
    return sub, retry
