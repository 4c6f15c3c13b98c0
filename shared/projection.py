"""The ``account.updated`` handler every non-owner service registers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from .accounts import apply_account_snapshot
from .events import EventEnvelope
from .events.models import AccountUpdatedV1
from .inbox import HandlerContext, HandlerRegistry

ClockHook = Callable[[HandlerContext, asyncpg.Connection, str, int, int], Awaitable[None]]


def register_account_projection(registry: HandlerRegistry, *, on_clock_advanced: ClockHook | None = None) -> None:
    """Keep ``<schema>.accounts`` / ``api_keys`` current; when the test clock moved
    forward, let the service schedule what became due (before the event is acknowledged,
    which is what ``POST /v1/test_clock/advance`` waits for)."""

    @registry.on("account.updated")
    async def on_account_updated(
        ctx: HandlerContext, conn: asyncpg.Connection, event: AccountUpdatedV1, envelope: EventEnvelope
    ) -> None:
        snap = event.account
        before = await conn.fetchval(
            f"SELECT clock_offset_us FROM {ctx.schema}.accounts WHERE id = $1 FOR UPDATE", snap.id
        )
        applied = await apply_account_snapshot(conn, ctx.schema, snap)
        if applied and on_clock_advanced and before is not None and snap.clock_offset_us > before:
            await on_clock_advanced(ctx, conn, snap.id, before, snap.clock_offset_us)
