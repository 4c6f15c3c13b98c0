"""Recording an event: once in the account's feed, and a delivery for each webhook
endpoint that wants it — one transaction, the inbox's (shared/inbox.py)."""

from __future__ import annotations

import asyncpg

from shared.events import EventEnvelope
from shared.logging import get_logger

from ..webhooks import repository as webhooks
from . import repository as repo

log = get_logger(__name__)


async def record_event(conn: asyncpg.Connection, envelope: EventEnvelope) -> list[str]:
    """Store the event (once) and fan it out; returns the endpoints that got a delivery."""
    if not await repo.account_known(conn, envelope.account_id):
        # The account's snapshot has not arrived yet: a retry will find it.
        raise RuntimeError(f"account {envelope.account_id} is not known here yet")
    await repo.lock_account_feed(conn, envelope.account_id)
    seq = await repo.insert(conn, envelope)
    if seq is None:
        return []
    endpoints = await webhooks.fan_out(conn, envelope.account_id, envelope.id, envelope.type, seq)
    log.info("event recorded", event_type=envelope.type, seq=seq, endpoints=len(endpoints))
    return endpoints
