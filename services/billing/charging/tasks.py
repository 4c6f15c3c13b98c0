"""The charge job: actor ``billing.charge`` on the ``billing`` queue."""

from __future__ import annotations

from collections.abc import Callable

import dramatiq

from shared.inbox import HandlerContext

from .scheduler import CHARGE_ACTOR
from .service import ChargeDeps, run_charge


def declare_charge_actor(broker: dramatiq.Broker, get_context: Callable[[], HandlerContext]) -> dramatiq.Actor:
    async def charge(account_id: str, charge_id: str) -> None:
        ctx = get_context()
        deps = ChargeDeps(ctx.app_pool, ctx.extras["processors"], ctx.settings.common)
        await run_charge(deps, account_id, charge_id)

    # Retries cover transient faults only (processor unavailable, database restart): each
    # replays the pending attempt with its stored key. Business retries (dunning) are rows.
    return dramatiq.actor(
        charge,
        actor_name=CHARGE_ACTOR,
        queue_name="billing",
        broker=broker,
        max_retries=8,
        min_backoff=500,
        max_backoff=30_000,
    )
