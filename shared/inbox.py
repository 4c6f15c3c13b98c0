"""Consume each event once: the inbox, the handler registry and the actor wrapper.

Every subscriber actor runs the same steps:
1. in one tenant transaction: insert ``(event_id, actor)`` into ``<schema>.inbox``; only
   if that row is new, run the handler with the same connection, so the fact and its
   "processed" mark commit together;
2. after commit, the handler's optional ``after_commit`` step (work that must not sit
   in a transaction, e.g. SMTP), which runs on every delivery so a crash between the
   commit and that step is repaired by the redelivery;
3. acknowledge the event to the producer's outbox relay.

A permanent error (bad payload), or a transient one on the last retry, leaves a row in
``<schema>.failed_jobs`` and is acknowledged, so the producer stops re-publishing it and
an operator can replay it (``commerce jobs retry``).
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import dramatiq
from dramatiq.middleware import CurrentMessage
from pydantic import BaseModel, ValidationError

from .broker import PermanentError
from .config import ServiceSettings
from .db import tenant_tx
from .events import EventEnvelope, parse_event
from .events.envelope import UnknownEvent
from .logging import bound, get_logger
from .outbox import acknowledge

log = get_logger(__name__)

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (PermanentError, ValidationError, UnknownEvent)


@dataclass
class HandlerContext:
    """What a handler may use; created once per worker process on its event loop."""

    service: str
    schema: str
    settings: ServiceSettings
    app_pool: asyncpg.Pool
    owner_pool: asyncpg.Pool
    redis: Any
    extras: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[HandlerContext, asyncpg.Connection, BaseModel, EventEnvelope], Awaitable[None]]
AfterCommit = Callable[[HandlerContext, EventEnvelope], Awaitable[None]]


@dataclass(frozen=True)
class EventHandler:
    actor_name: str
    event_type: str
    version: int
    fn: Handler
    after_commit: AfterCommit | None = None


class HandlerRegistry:
    """The event handlers of one service (actor names ``<service>.on_<event>``)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.handlers: dict[str, EventHandler] = {}

    def on(self, event_type: str, version: int = 1, *, after_commit: AfterCommit | None = None):
        def register(fn: Handler) -> Handler:
            actor_name = f"{self.service}.on_{event_type.replace('.', '_')}"
            if actor_name in self.handlers:
                raise RuntimeError(f"{actor_name} registered twice")
            self.handlers[actor_name] = EventHandler(actor_name, event_type, version, fn, after_commit)
            return fn

        return register


def _is_last_attempt(max_retries: int) -> bool:
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return message.options.get("retries", 0) >= max_retries


async def record_failure(ctx: HandlerContext, actor_name: str, envelope: dict, exc: BaseException) -> None:
    message = CurrentMessage.get_current_message()
    account_id = envelope.get("account_id")
    error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]
    query = f"""
        INSERT INTO {ctx.schema}.failed_jobs (account_id, actor_name, message_id, event_id, args, error)
        VALUES ($1, $2, $3, $4, $5, $6)
    """
    args = (
        account_id,
        actor_name,
        message.message_id if message else None,
        envelope.get("id"),
        [envelope],
        error,
    )
    if account_id:
        async with tenant_tx(ctx.app_pool, account_id) as conn:
            await conn.execute(query, *args)
    else:
        async with ctx.owner_pool.acquire() as conn:
            await conn.execute(query, *args)


async def consume(ctx: HandlerContext, handler: EventHandler, envelope_data: dict) -> None:
    correlation_id = envelope_data.get("correlation_id") if isinstance(envelope_data, dict) else None
    with bound(correlation_id=correlation_id, actor=handler.actor_name):
        try:
            envelope = EventEnvelope.model_validate(envelope_data)
            with bound(account_id=envelope.account_id, event_id=envelope.id):
                async with tenant_tx(ctx.app_pool, envelope.account_id) as conn:
                    claimed = await conn.fetchval(
                        f"INSERT INTO {ctx.schema}.inbox (event_id, handler, account_id) "
                        f"VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
                        envelope.id,
                        handler.actor_name,
                        envelope.account_id,
                    )
                    if claimed:
                        await handler.fn(ctx, conn, parse_event(envelope), envelope)
                        log.info("event handled", event_type=envelope.type)
                    else:
                        log.info("duplicate event absorbed", event_type=envelope.type)
                if handler.after_commit is not None:
                    await handler.after_commit(ctx, envelope)
        except Exception as exc:
            permanent = isinstance(exc, PERMANENT_ERRORS)
            if permanent or _is_last_attempt(ctx.settings.job_max_retries):
                log.error("event handling failed for good", error=repr(exc), permanent=permanent)
                await record_failure(ctx, handler.actor_name, envelope_data, exc)
                await _ack(ctx, envelope_data, handler.actor_name)
            raise
        await _ack(ctx, envelope_data, handler.actor_name)


async def _ack(ctx: HandlerContext, envelope_data: dict, actor_name: str) -> None:
    producer, event_id = envelope_data.get("producer"), envelope_data.get("id")
    if producer and event_id:
        await acknowledge(
            ctx.redis,
            namespace=ctx.settings.common.broker_namespace,
            producer=producer,
            event_id=event_id,
            actor_name=actor_name,
        )


def declare_actors(
    broker: dramatiq.Broker,
    registry: HandlerRegistry,
    settings: ServiceSettings,
    get_context: Callable[[], HandlerContext],
) -> list[dramatiq.Actor]:
    """Declare one dramatiq actor per handler, by name, on the service's queue."""
    actors = []
    for handler in registry.handlers.values():

        async def run(envelope: dict, _handler: EventHandler = handler) -> None:
            await consume(get_context(), _handler, envelope)

        run.__name__ = handler.actor_name.replace(".", "_")
        actors.append(
            dramatiq.actor(
                run,
                actor_name=handler.actor_name,
                queue_name=registry.service,
                broker=broker,
                max_retries=settings.job_max_retries,
                throws=PERMANENT_ERRORS,
            )
        )
    return actors
