"""Checkout's worker processes the processor events its webhook endpoint stored."""

from __future__ import annotations

import asyncpg

from shared.events import EventEnvelope
from shared.events.models import ProcessorEventReceivedV1
from shared.inbox import HandlerContext, HandlerRegistry

from .processing import process_event

registry = HandlerRegistry("checkout")


async def _process(ctx: HandlerContext, envelope: EventEnvelope) -> None:
    # After the inbox commit and on every redelivery: processing calls the processor (no
    # transaction held open meanwhile) and is idempotent by the stored event's status.
    await process_event(ctx, envelope.account_id, envelope.data["processor_event_id"])


@registry.on("processor_event.received", after_commit=_process)
async def on_processor_event_received(
    ctx: HandlerContext, conn: asyncpg.Connection, event: ProcessorEventReceivedV1, envelope: EventEnvelope
) -> None:
    """Nothing to do inside the inbox transaction; see `_process`."""
