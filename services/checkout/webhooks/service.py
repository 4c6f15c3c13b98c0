"""Processor webhooks, receiving: verify, de-duplicate, store, enqueue
(``POST /webhooks/stripe/{account_id}``, `WebhookReceiver.receive`). Processing the
stored events is `processing`'s job (checkout's worker).

1. the body is size-limited before it is read (the handler);
2. the ``Stripe-Signature`` header is verified with the account's webhook secret through
   the official SDK, within ``COMMERCE_WEBHOOK_TOLERANCE_SECONDS`` of now in both
   directions; any one of several ``v1`` signatures may match (secret rotation);
3. the event is stored in ``processor_events`` keyed by (account, processor event id)
   together with an outbox job ``processor_event.received`` — one transaction, before
   the endpoint answers 2xx; concurrent requests share that transaction (`GroupCommit`).
   A repeated delivery finds its row: 2xx, nothing else.
A request that fails any check is answered 400 (413 for size, 404 for an unknown account)
and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

import asyncpg

from shared.clock import AccountClock
from shared.config import CommonSettings
from shared.db import tenant_tx
from shared.events import EventEnvelope, subscribers_of
from shared.events.models import ProcessorEventReceivedV1
from shared.ids import new_id
from shared.logging import current_correlation_id
from shared.processor.webhooks import WebhookRejected, verify_signature
from shared.secrets import decrypt
from shared.web.problem import BadRequest, NotFound

from . import repository as repo
from .schemas import NotAnEvent, ProcessorEvent, parse_event

JOB_TYPE = ProcessorEventReceivedV1.event_type  # type: ignore[attr-defined]


class WebhookRefused(BadRequest):
    slug = "webhook-refused"


# -- receiving ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Endpoint:
    """What verifying an account's webhooks needs, cached for a few seconds."""

    secret: str | None
    clock: AccountClock
    loaded_at: float


@dataclass(frozen=True, slots=True)
class Received:
    event_id: str
    type: str
    duplicate: bool


class WebhookReceiver:
    """One per server process: the receive path and a small cache of webhook secrets
    (a secret changed by a reconnect is picked up at the latest after ``ttl`` seconds, at
    once when a signature does not match the cached one)."""

    def __init__(self, pool: asyncpg.Pool, settings: CommonSettings, *, ttl: float = 5.0, size: int = 10_000):
        self.pool, self.settings, self.ttl, self.size = pool, settings, ttl, size
        self.tolerance = settings.webhook_tolerance_seconds
        self._cache: OrderedDict[str, _Endpoint | None] = OrderedDict()
        self.store = GroupCommit(pool, list(subscribers_of(JOB_TYPE)))

    async def _load(self, account_id: str) -> _Endpoint | None:
        async with tenant_tx(self.pool, account_id) as conn:
            row = await repo.webhook_account(conn, account_id)
        if row is None:
            return None
        secret = decrypt(self.settings, row["secret"]) if row["secret"] else None
        return _Endpoint(secret, AccountClock(offset_us=row["clock_offset_us"]), time.monotonic())

    async def endpoint(self, account_id: str, *, fresh: bool = False) -> _Endpoint | None:
        cached = self._cache.get(account_id)
        if cached is not None and not fresh and time.monotonic() - cached.loaded_at < self.ttl:
            self._cache.move_to_end(account_id)
            return cached
        loaded = await self._load(account_id)
        if loaded is None:
            self._cache.pop(account_id, None)  # unknown accounts are not cached (no memory for junk ids)
            return None
        self._cache[account_id] = loaded
        self._cache.move_to_end(account_id)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return loaded

    async def receive(self, account_id: str, payload: bytes, signature: str | None) -> Received:
        if not account_id.startswith("acct_") or len(account_id) > 64:
            raise NotFound("No such account.")
        endpoint = await self.endpoint(account_id)
        if endpoint is None or endpoint.secret is None:
            raise NotFound("No such account, or it has no processor webhook secret.")
        try:
            verify_signature(payload, signature, [endpoint.secret], tolerance=self.tolerance)
        except WebhookRejected as first:
            # The secret may have changed since it was cached: check once more with the
            # stored one (at most once a second per account, so junk cannot hammer the DB).
            if time.monotonic() - endpoint.loaded_at < 1.0:
                raise WebhookRefused(first.reason) from None
            endpoint = await self.endpoint(account_id, fresh=True)
            if endpoint is None or endpoint.secret is None:
                raise NotFound("No such account, or it has no processor webhook secret.") from None
            try:
                verify_signature(payload, signature, [endpoint.secret], tolerance=self.tolerance)
            except WebhookRejected as exc:
                raise WebhookRefused(exc.reason) from None
        try:
            event = parse_event(payload)
        except NotAnEvent as exc:
            raise WebhookRefused(str(exc)) from None
        incoming = repo.IncomingEvent(
            account_id=account_id,
            event_id=event.id,
            type=event.type,
            object_id=event.object_id,
            livemode=event.livemode,
            created=event.created,
            payload=payload.decode(),
            job=self._job(account_id, event, endpoint.clock) if event.actionable else None,
        )
        new = await self.store.store(incoming)
        # No log line here (the hot path, TARGETS P2): the worker logs each processed event.
        return Received(event.id, event.type, duplicate=not new)

    @staticmethod
    def _job(account_id: str, event: ProcessorEvent, clock: AccountClock) -> str:
        data = ProcessorEventReceivedV1(processor_event_id=event.id, type=event.type, object_id=event.object_id)
        return EventEnvelope(
            id=new_id("evt"),
            type=JOB_TYPE,
            version=1,
            account_id=account_id,
            producer="checkout",
            occurred_at=clock.now(),
            correlation_id=current_correlation_id(),
            data=data.model_dump(mode="json"),
        ).model_dump_json()


class GroupCommit:
    """Stores received events in batches: requests that arrive while a batch is being
    committed wait and go together in the next one — one statement, one commit, one round
    trip for all of them (group commit, TARGETS P2). Each request is answered only after
    its own batch committed; a request that finds no batch in flight is stored at once
    (no timer: nothing is added to an idle endpoint's latency)."""

    def __init__(self, pool: asyncpg.Pool, pending: list[str], *, max_batch: int = 256) -> None:
        self.pool, self.pending, self.max_batch = pool, pending, max_batch
        self._queue: list[tuple[repo.IncomingEvent, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def store(self, event: repo.IncomingEvent) -> bool:
        """True if the event is new (stored and enqueued now), False for a repeat."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((event, future))
        if self._task is None:
            self._task = loop.create_task(self._drain(), name="webhook-group-commit")
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[repo.IncomingEvent, asyncio.Future]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                await self._commit(batch)
        except BaseException as exc:  # cancelled (shutdown) or a bug: nobody may wait forever
            for _, future in [*batch, *self._queue]:
                if not future.done():
                    future.set_exception(exc)
            self._queue = []
            raise
        finally:
            self._task = None

    async def _commit(self, batch: list[tuple[repo.IncomingEvent, asyncio.Future]]) -> None:
        position: dict[tuple[str, str], int] = {}
        events: list[repo.IncomingEvent] = []
        for event, _ in batch:  # one row per (account, event id); repeats in a batch are duplicates
            key = (event.account_id, event.event_id)
            if key not in position:
                position[key] = len(events)
                events.append(event)
        try:
            new = await repo.receive_many(self.pool, events, self.pending)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        answered: set[tuple[str, str]] = set()
        for event, future in batch:
            key = (event.account_id, event.event_id)
            first = key not in answered
            answered.add(key)
            if not future.done():
                future.set_result(first and position[key] in new)
