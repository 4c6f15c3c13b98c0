"""Every account has a default pipeline from the moment crm_sync knows it.

crm_sync's ``account.updated`` handler is the shared account projection
(`shared.projection.register_account_projection`); `keep_default_pipelines` chains one
step after it: once the snapshot is stored, the account gets its default pipeline if it
has none (idempotent: a no-op after the first time; race-safe). Accounts that existed
before this rule get theirs with their next snapshot, or on first use (listing
pipelines, creating a deal, a purchase whose link creates deals).
"""

from __future__ import annotations

import dataclasses

import asyncpg

from shared.events import EventEnvelope
from shared.events.models import AccountUpdatedV1
from shared.inbox import HandlerContext, HandlerRegistry

from .service import ensure_default_pipeline


def keep_default_pipelines(registry: HandlerRegistry) -> None:
    """Wrap the registry's ``account.updated`` handler (registered before this call)."""
    name = f"{registry.service}.on_account_updated"
    projection = registry.handlers[name]

    async def on_account_updated(
        ctx: HandlerContext, conn: asyncpg.Connection, event: AccountUpdatedV1, envelope: EventEnvelope
    ) -> None:
        await projection.fn(ctx, conn, event, envelope)
        await ensure_default_pipeline(conn, event.account.id)

    registry.handlers[name] = dataclasses.replace(projection, fn=on_account_updated)
