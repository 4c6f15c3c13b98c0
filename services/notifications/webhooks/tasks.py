"""Jobs of webhook sending: the drain actor and the sweep that re-kicks due endpoints.

- ``notifications.drain_webhook_endpoint(account_id, endpoint_id)``: one drain
  (`delivery.drain`). Queue retries are for transient faults only (the database
  restarting); the business retries — an endpoint failing — live in the rows
  (``next_attempt_at``), so a lost or exhausted job loses nothing: the sweep kicks the
  endpoint again.
- the sweep: every worker process runs it on its event loop every
  ``webhook_sweep_interval_s``; it claims due endpoints with ``SKIP LOCKED`` and marks
  them kicked in the transaction that enqueues their drains, so any number of workers
  kick each due endpoint once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import dramatiq

from shared.broker import OutgoingMessage, PermanentError, enqueue_many
from shared.db import system_tx
from shared.inbox import HandlerContext
from shared.logging import get_logger

from . import repository as repo
from .delivery import DrainDeps, drain

log = get_logger(__name__)

DRAIN_ACTOR = "notifications.drain_webhook_endpoint"
QUEUE = "notifications"
#: A kicked endpoint that is still due this long after (its drain message was lost) is kicked again.
REKICK_AFTER_S = 30.0
SWEEP_BATCH = 500


def drain_messages(targets: Iterable[tuple[str, str]]) -> list[OutgoingMessage]:
    return [OutgoingMessage(DRAIN_ACTOR, QUEUE, args=(account_id, endpoint_id)) for account_id, endpoint_id in targets]


async def kick_drains(ctx: HandlerContext, targets: Iterable[tuple[str, str]]) -> int:
    return await enqueue_many(ctx.redis, ctx.settings.common.broker_namespace, drain_messages(targets))


def drain_deps(ctx: HandlerContext) -> DrainDeps:
    settings = ctx.settings
    return DrainDeps(
        app_pool=ctx.app_pool,
        sender=ctx.extras["webhook_sender"],
        common=settings.common,
        kick=lambda account_id, endpoint_id: kick_drains(ctx, [(account_id, endpoint_id)]),
        lease_s=settings.webhook_drain_lease_s,
        test_loopback=settings.webhook_test_mode_loopback,
    )


def declare_drain_actor(broker: dramatiq.Broker, get_context: Callable[[], HandlerContext]) -> dramatiq.Actor:
    async def drain_webhook_endpoint(account_id: str, endpoint_id: str) -> None:
        if not isinstance(account_id, str) or not isinstance(endpoint_id, str):
            raise PermanentError("drain_webhook_endpoint takes (account_id, endpoint_id)")
        await drain(drain_deps(get_context()), account_id, endpoint_id)

    return dramatiq.actor(
        drain_webhook_endpoint,
        actor_name=DRAIN_ACTOR,
        queue_name=QUEUE,
        broker=broker,
        max_retries=3,
        min_backoff=1_000,
        max_backoff=10_000,
        throws=(PermanentError,),
    )


async def sweep_once(ctx: HandlerContext) -> int:
    """Kick every due endpoint no drain holds; returns how many."""
    async with system_tx(ctx.owner_pool) as conn:
        due = await repo.kick_due(conn, limit=SWEEP_BATCH, rekick_after_s=REKICK_AFTER_S)
        if due:
            # Enqueued before the commit: a crash in between only kicks twice.
            await kick_drains(ctx, [(r["account_id"], r["id"]) for r in due])
    return len(due)


async def sweep_forever(ctx: HandlerContext, *, interval: float | None = None) -> None:
    pause = interval if interval is not None else ctx.settings.webhook_sweep_interval_s
    while True:
        try:
            while await sweep_once(ctx) == SWEEP_BATCH:
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # database or Redis away: the next pass catches up
            log.warning("webhook sweep failed", error=repr(exc))
        await asyncio.sleep(pause)
