"""The actor that receives every public event (``notifications.on_event``, routed by
shared/events/routing.py to each type in PUBLIC_EVENT_TYPES): it consumes through the
inbox like every subscriber (once per event id), records the event and its deliveries,
and after the commit kicks the drains of the endpoints that can send now."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import dramatiq
from pydantic import BaseModel

from shared.config import ServiceSettings
from shared.db import tenant_tx
from shared.events import EventEnvelope
from shared.events.routing import FEED_ACTOR
from shared.inbox import EventHandler, HandlerContext, HandlerRegistry, declare_actors

from ..webhooks import repository as webhooks
from ..webhooks.tasks import kick_drains
from .service import record_event


async def _record(ctx: HandlerContext, conn: asyncpg.Connection, _event: BaseModel, envelope: EventEnvelope) -> None:
    await record_event(conn, envelope)


async def _kick(ctx: HandlerContext, envelope: EventEnvelope) -> None:
    async with tenant_tx(ctx.app_pool, envelope.account_id) as conn:
        due = await webhooks.due_endpoints_of_event(conn, envelope.account_id, envelope.id)
    await kick_drains(ctx, [(envelope.account_id, endpoint_id) for endpoint_id in due])


#: Not one of the service's per-type registries (those are ``<service>.on_<type>``):
#: this one handler takes every public type.
feed_registry = HandlerRegistry("notifications")
feed_registry.handlers[FEED_ACTOR] = EventHandler(FEED_ACTOR, "*", 1, _record, _kick)


def declare_feed_actor(
    broker: dramatiq.Broker, settings: ServiceSettings, get_context: Callable[[], HandlerContext]
) -> list[dramatiq.Actor]:
    return declare_actors(broker, feed_registry, settings, get_context)
