"""Transactional outbox: an event is written in the transaction of its fact, then relayed.

Writer: `publish_event` inserts the envelope in ``<schema>.outbox`` with the list of
subscriber actors still to acknowledge it (``pending``). It is published only if that
transaction commits; a statement trigger NOTIFYs the relay.

Relay (`OutboxRelay`, one or more per service, any number of replicas):
1. claims unpublished rows with ``FOR UPDATE SKIP LOCKED``, pushes one dramatiq message
   per pending subscriber to Redis in one pipeline, marks them published (with the
   broker epoch) in the same transaction; woken by LISTEN/NOTIFY, polling as a fallback;
2. drains acknowledgements: a consumer, once its inbox has the event, pushes
   ``"<event_id> <actor>"`` to ``<ns>:outbox-acks:<producer>``; the relay removes those
   actors from ``pending`` in one set-based UPDATE;
3. sweeps: rows still pending are published again to the subscribers that have not
   acknowledged — at once when Redis lost its data (the epoch key vanished), otherwise
   after ``redeliver_after`` seconds, doubling per attempt. Consumers de-duplicate by
   event id, so a re-publish never doubles an effect.

A crash between commit and publish, or between publish and mark, or a Redis restart
without persistence, therefore loses nothing (TARGETS R4, R5). The ``pending`` column is
also a barrier: `wait_delivered` returns once every subscriber has processed an event
(used where a caller must read its own write in another service, e.g. a new API key).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from .broker import OutgoingMessage, enqueue_many
from .events import EventEnvelope, queue_of_actor, subscribers_of
from .failpoints import failpoint
from .ids import new_id
from .logging import current_correlation_id, get_logger

log = get_logger(__name__)

ACK_SEPARATOR = " "


def ack_key(namespace: str, producer: str) -> str:
    return f"{namespace}:outbox-acks:{producer}"


def epoch_key(namespace: str) -> str:
    return f"{namespace}:broker-epoch"


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


def _outbox_row(
    *, producer: str, account_id: str, event: BaseModel, occurred_at: datetime, correlation_id: str | None
) -> dict:
    event_type = type(event).event_type  # type: ignore[attr-defined]
    envelope = EventEnvelope(
        id=new_id("evt"),
        type=event_type,
        version=type(event).event_version,  # type: ignore[attr-defined]
        account_id=account_id,
        producer=producer,
        occurred_at=occurred_at,
        correlation_id=correlation_id or current_correlation_id(),
        data=event.model_dump(mode="json"),
    )
    return {
        "event_id": envelope.id,
        "account_id": account_id,
        "type": event_type,
        "version": envelope.version,
        "envelope": envelope.model_dump(mode="json"),
        "pending": list(subscribers_of(event_type)),
    }


async def publish_event(
    conn: asyncpg.Connection,
    *,
    schema: str,
    producer: str,
    account_id: str,
    event: BaseModel,
    occurred_at: datetime,
    correlation_id: str | None = None,
) -> str:
    """Write ``event`` to the outbox inside the caller's transaction; returns its id."""
    row = _outbox_row(
        producer=producer, account_id=account_id, event=event, occurred_at=occurred_at, correlation_id=correlation_id
    )
    await conn.execute(
        f"""
        INSERT INTO {schema}.outbox (event_id, account_id, type, version, envelope, pending,
                                     delivered_at)
        VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN cardinality($6::text[]) = 0 THEN now() END)
        """,
        row["event_id"],
        row["account_id"],
        row["type"],
        row["version"],
        row["envelope"],
        row["pending"],
    )
    return row["event_id"]


async def publish_many(
    conn: asyncpg.Connection,
    *,
    schema: str,
    producer: str,
    events: Sequence[tuple[str, BaseModel, datetime]],
) -> list[str]:
    """`publish_event` for a batch of ``(account_id, event, occurred_at)``: one statement,
    in order, inside the caller's transaction (set-based writers: schedulers)."""
    rows = [
        _outbox_row(producer=producer, account_id=a, event=e, occurred_at=at, correlation_id=None)
        for a, e, at in events
    ]
    if rows:
        await conn.execute(
            f"""
            INSERT INTO {schema}.outbox (event_id, account_id, type, version, envelope, pending, delivered_at)
            SELECT r.event_id, r.account_id, r.type, r.version, r.envelope,
                   ARRAY(SELECT jsonb_array_elements_text(r.pending)),
                   CASE WHEN jsonb_array_length(r.pending) = 0 THEN now() END
            FROM jsonb_to_recordset($1::jsonb)
                AS r(event_id text, account_id text, type text, version int, envelope jsonb, pending jsonb)
            """,
            rows,
        )
    return [r["event_id"] for r in rows]


async def acknowledge(redis, *, namespace: str, producer: str, event_id: str, actor_name: str) -> None:
    """Tell the producer's relay that ``actor_name`` has processed ``event_id``."""
    await redis.rpush(ack_key(namespace, producer), f"{event_id}{ACK_SEPARATOR}{actor_name}")


async def wait_delivered(
    conn_factory, schema: str, event_ids: Iterable[str], *, timeout: float, interval: float = 0.02
) -> bool:
    """Wait until every subscriber acknowledged the events; False on timeout.

    ``conn_factory`` is an async context manager factory giving a connection that can
    see the rows (a tenant transaction of the events' account).
    """
    ids = list(event_ids)
    deadline = time.monotonic() + timeout
    while True:
        async with conn_factory() as conn:
            left = await conn.fetchval(
                f"SELECT count(*) FROM {schema}.outbox WHERE event_id = ANY($1::text[]) AND delivered_at IS NULL",
                ids,
            )
        if not left:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


def _messages_for(envelope: dict, actors: Iterable[str]) -> list[OutgoingMessage]:
    options = {"correlation_id": envelope.get("correlation_id"), "event_id": envelope["id"]}
    return [
        OutgoingMessage(
            actor_name=actor,
            queue_name=queue_of_actor(actor),
            args=(envelope,),
            options=options,
            message_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{envelope['id']}/{actor}")),
        )
        for actor in actors
    ]


class OutboxRelay:
    def __init__(
        self,
        *,
        schema: str,
        producer: str,
        owner_pool: asyncpg.Pool,
        listen_dsn: str,
        redis,
        namespace: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        redeliver_after: float = 30.0,
        sweep_interval: float = 1.0,
    ) -> None:
        self.schema = schema
        self.producer = producer
        self.pool = owner_pool
        self.listen_dsn = listen_dsn
        self.redis = redis
        self.namespace = namespace
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.redeliver_after = redeliver_after
        self.sweep_interval = sweep_interval
        self._wake = asyncio.Event()
        self._last_sweep = 0.0
        self.published = 0
        self.republished = 0
        self.acked = 0
        self.healthy = False

    # -- broker epoch: a key that disappears when Redis loses its data ------------------
    async def current_epoch(self) -> str:
        key = epoch_key(self.namespace)
        value = await self.redis.get(key)
        if value is None:
            await self.redis.set(key, uuid.uuid4().hex, nx=True)
            value = await self.redis.get(key)
        return value.decode() if isinstance(value, bytes) else value

    # -- the three jobs -----------------------------------------------------------------
    async def publish_pending(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""
                SELECT seq, envelope, pending FROM {self.schema}.outbox
                WHERE published_at IS NULL
                ORDER BY seq
                LIMIT $1
                FOR UPDATE SKIP LOCKED
                """,
                self.batch_size,
            )
            if not rows:
                return 0
            epoch = await self.current_epoch()
            messages = [m for r in rows for m in _messages_for(r["envelope"], r["pending"])]
            await enqueue_many(self.redis, self.namespace, messages)
            failpoint("relay.after_publish")  # sent, not yet marked (fault suite, R4)
            await conn.execute(
                f"""
                UPDATE {self.schema}.outbox
                SET published_at = now(), last_published_at = now(),
                    publish_count = publish_count + 1, broker_epoch = $2
                WHERE seq = ANY($1::bigint[])
                """,
                [r["seq"] for r in rows],
                epoch,
            )
        self.published += len(rows)
        return len(rows)

    async def drain_acks(self, limit: int = 5000) -> int:
        raw = await self.redis.lpop(ack_key(self.namespace, self.producer), limit)
        if not raw:
            return 0
        by_event: dict[str, set[str]] = defaultdict(set)
        for item in raw:
            text = item.decode() if isinstance(item, bytes) else item
            event_id, _, actor = text.partition(ACK_SEPARATOR)
            if event_id and actor:
                by_event[event_id].add(actor)
        event_ids = list(by_event)
        actors = [sorted(by_event[e]) for e in event_ids]
        # Postgres has no ragged arrays: send parallel flat arrays and regroup in SQL.
        flat_events = [e for e, acts in zip(event_ids, actors, strict=True) for _ in acts]
        flat_actors = [a for acts in actors for a in acts]
        try:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    f"""
                    WITH acks AS (
                        SELECT e AS event_id, array_agg(a) AS actors
                        FROM unnest($1::text[], $2::text[]) AS t(e, a)
                        GROUP BY e
                    )
                    UPDATE {self.schema}.outbox o
                    SET pending = ARRAY(SELECT unnest(o.pending) EXCEPT SELECT unnest(acks.actors)),
                        delivered_at = CASE
                            WHEN o.pending <@ acks.actors THEN coalesce(o.delivered_at, now())
                            ELSE o.delivered_at END
                    FROM acks
                    WHERE o.event_id = acks.event_id
                    """,
                    flat_events,
                    flat_actors,
                )
        except BaseException:
            # Put them back so a database outage does not drop acknowledgements.
            await self.redis.rpush(ack_key(self.namespace, self.producer), *raw)
            raise
        self.acked += len(flat_actors)
        return len(flat_actors)

    async def sweep(self) -> int:
        """Publish again what subscribers have not acknowledged in time."""
        async with self.pool.acquire() as conn, conn.transaction():
            epoch = await self.current_epoch()
            rows = await conn.fetch(
                f"""
                SELECT seq, envelope, pending FROM {self.schema}.outbox
                WHERE published_at IS NOT NULL AND delivered_at IS NULL
                  AND (broker_epoch IS DISTINCT FROM $1
                       OR last_published_at < now() - make_interval(
                              secs => $2 * power(2, least(publish_count - 1, 6))))
                ORDER BY seq
                LIMIT $3
                FOR UPDATE SKIP LOCKED
                """,
                epoch,
                self.redeliver_after,
                self.batch_size,
            )
            if not rows:
                return 0
            messages = [m for r in rows for m in _messages_for(r["envelope"], r["pending"])]
            await enqueue_many(self.redis, self.namespace, messages)
            await conn.execute(
                f"""
                UPDATE {self.schema}.outbox
                SET last_published_at = now(), publish_count = publish_count + 1,
                    broker_epoch = $2
                WHERE seq = ANY($1::bigint[])
                """,
                [r["seq"] for r in rows],
                epoch,
            )
        self.republished += len(rows)
        log.info("outbox re-published", count=len(rows), epoch=epoch)
        return len(rows)

    # -- the loop ------------------------------------------------------------------------
    def _on_notify(self, *_args) -> None:
        self._wake.set()

    async def _listen(self, stop: asyncio.Event) -> None:
        """Keep a LISTEN connection open; reconnect after database restarts."""
        channel = notify_channel(self.schema)
        while not stop.is_set():
            conn = None
            try:
                conn = await asyncpg.connect(self.listen_dsn)
                await conn.add_listener(channel, self._on_notify)
                self._wake.set()  # catch up on what was written while we were away
                while not stop.is_set() and not conn.is_closed():
                    await asyncio.sleep(0.5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox listener disconnected", error=str(exc))
                await asyncio.sleep(1.0)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()

    async def run_once(self, *, publish: bool = True) -> None:
        if publish:
            while await self.publish_pending() == self.batch_size:
                pass
        while await self.drain_acks() > 0:
            pass
        now = time.monotonic()
        if now - self._last_sweep >= self.sweep_interval:
            self._last_sweep = now
            while await self.sweep() == self.batch_size:
                pass

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop))
        backoff = 0.1
        last_poll = 0.0
        try:
            while not stop.is_set():
                # Publish when NOTIFY woke us, or every poll_interval as a fallback.
                publish = self._wake.is_set() or time.monotonic() - last_poll >= self.poll_interval
                self._wake.clear()
                try:
                    if publish:
                        last_poll = time.monotonic()
                    await self.run_once(publish=publish)
                    self.healthy = True
                    backoff = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.healthy = False
                    self._wake.set()
                    log.warning("outbox relay cycle failed", error=repr(exc))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                # Acks arrive through Redis, not NOTIFY: look for them every 50 ms.
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=0.05)
                except TimeoutError:
                    pass
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
