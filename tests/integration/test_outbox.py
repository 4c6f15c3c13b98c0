"""The transactional outbox and the inbox against real PostgreSQL and Redis (in-process)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from shared.db import create_pool, tenant_tx
from shared.events import EventEnvelope
from shared.events.models import PurchaseCompletedV1
from shared.events.routing import subscribers_of
from shared.inbox import EventHandler, HandlerContext, consume
from shared.outbox import OutboxRelay, acknowledge, epoch_key, publish_event, wait_delivered

SCHEMA = "checkout"


def purchase(payment_id: str) -> PurchaseCompletedV1:
    return PurchaseCompletedV1(
        payment_id=payment_id,
        session_id="cs_x",
        source={"type": "payment_link", "id": "plink_x"},
        amount=1000,
        currency="USD",
        subtotal=1000,
        method_type="card",
        contact={"email": "a@example.com"},
        items=[],
        paid_at=datetime.now(UTC),
        test_mode=True,
    )


@pytest.fixture
async def pools(dsn):
    app = await create_pool(dsn(SCHEMA), application_name="test", min_size=1, max_size=4)
    owner = await create_pool(dsn(SCHEMA, owner=True), application_name="test-owner", min_size=1, max_size=4)
    # The relay works across accounts: start each test from an empty outbox.
    await owner.execute(f"DELETE FROM {SCHEMA}.outbox")
    yield app, owner
    await app.close()
    await owner.close()


@pytest.fixture
async def redis(redis_url):
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def namespace(redis_url):
    return f"test-outbox-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def account_id():
    return f"acct_test_{uuid.uuid4().hex[:10]}"


def relay(pools, redis, namespace, dsn, **kw) -> OutboxRelay:
    return OutboxRelay(
        schema=SCHEMA,
        producer="checkout",
        owner_pool=pools[1],
        listen_dsn=dsn(SCHEMA, owner=True),
        redis=redis,
        namespace=namespace,
        **kw,
    )


async def write_events(app_pool, account_id: str, n: int, *, commit: bool = True) -> list[str]:
    ids = []
    try:
        async with tenant_tx(app_pool, account_id) as conn:
            for i in range(n):
                ids.append(
                    await publish_event(
                        conn,
                        schema=SCHEMA,
                        producer="checkout",
                        account_id=account_id,
                        event=purchase(f"pay_{uuid.uuid4().hex[:8]}_{i}"),
                        occurred_at=datetime.now(UTC),
                    )
                )
            if not commit:
                raise RuntimeError("roll back")
    except RuntimeError:
        if commit:
            raise
    return ids


async def queued(redis, namespace: str, queue: str) -> list[dict]:
    ids = await redis.lrange(f"{namespace}:{queue}", 0, -1)
    bodies = await redis.hmget(f"{namespace}:{queue}.msgs", ids) if ids else []
    return [json.loads(b) for b in bodies]


async def test_an_event_is_published_only_if_its_transaction_commits(pools, redis, namespace, dsn, account_id):
    await write_events(pools[0], account_id, 3, commit=False)
    committed = await write_events(pools[0], account_id, 2)
    r = relay(pools, redis, namespace, dsn)
    assert await r.publish_pending() == 2
    for subscriber in subscribers_of("purchase.completed"):
        queue = subscriber.split(".")[0]
        messages = [m for m in await queued(redis, namespace, queue) if m["actor_name"] == subscriber]
        assert sorted(m["args"][0]["id"] for m in messages) == sorted(committed)
        assert all(m["queue_name"] == queue for m in messages)
    assert await r.publish_pending() == 0  # nothing twice


async def test_acknowledgements_close_an_event_and_release_the_barrier(pools, redis, namespace, dsn, account_id):
    (event_id,) = await write_events(pools[0], account_id, 1)
    r = relay(pools, redis, namespace, dsn)
    await r.publish_pending()
    subscribers = subscribers_of("purchase.completed")
    for actor in subscribers[:-1]:
        await acknowledge(redis, namespace=namespace, producer="checkout", event_id=event_id, actor_name=actor)
    await r.drain_acks()

    def tenant():
        return tenant_tx(pools[0], account_id)

    assert not await wait_delivered(tenant, SCHEMA, [event_id], timeout=0.2)
    await acknowledge(redis, namespace=namespace, producer="checkout", event_id=event_id, actor_name=subscribers[-1])
    await r.drain_acks()
    assert await wait_delivered(tenant, SCHEMA, [event_id], timeout=1)
    async with pools[1].acquire() as conn:
        row = await conn.fetchrow(f"SELECT pending, delivered_at FROM {SCHEMA}.outbox WHERE event_id = $1", event_id)
    assert row["pending"] == [] and row["delivered_at"] is not None


async def test_unacknowledged_events_are_published_again_to_the_missing_subscribers_only(
    pools, redis, namespace, dsn, account_id
):
    (event_id,) = await write_events(pools[0], account_id, 1)
    r = relay(pools, redis, namespace, dsn, redeliver_after=0.05)
    await r.publish_pending()
    first, *rest = subscribers_of("purchase.completed")
    await acknowledge(redis, namespace=namespace, producer="checkout", event_id=event_id, actor_name=first)
    await r.drain_acks()
    await asyncio.sleep(0.1)
    assert await r.sweep() == 1
    for actor in rest:
        queue = actor.split(".")[0]
        ids = [m["args"][0]["id"] for m in await queued(redis, namespace, queue) if m["actor_name"] == actor]
        assert ids.count(event_id) == 2  # original + re-publish
    first_queue = first.split(".")[0]
    firsts = [m for m in await queued(redis, namespace, first_queue) if m["actor_name"] == first]
    assert len(firsts) == 1  # the subscriber that acknowledged is not bothered again
    assert await r.sweep() == 0  # backoff doubles: not again right away


async def test_a_redis_wipe_republishes_at_once(pools, redis, namespace, dsn, account_id):
    ids = await write_events(pools[0], account_id, 3)
    r = relay(pools, redis, namespace, dsn, redeliver_after=3600)
    await r.publish_pending()
    assert await r.sweep() == 0
    # What a restart without persistence does: every key is gone, the epoch with it.
    keys = await redis.keys(f"{namespace}:*")
    await redis.delete(*keys)
    assert await redis.get(epoch_key(namespace)) is None
    assert await r.sweep() == 3
    queue = subscribers_of("purchase.completed")[0].split(".")[0]
    assert sorted(m["args"][0]["id"] for m in await queued(redis, namespace, queue)) == sorted(ids)


async def test_concurrent_relays_never_publish_the_same_row_in_one_pass(pools, redis, namespace, dsn, account_id):
    ids = await write_events(pools[0], account_id, 200)
    relays = [relay(pools, redis, namespace, dsn, batch_size=25) for _ in range(3)]

    async def drain(r: OutboxRelay) -> int:
        total = 0
        while (n := await r.publish_pending()) > 0:
            total += n
        return total

    counts = await asyncio.gather(*(drain(r) for r in relays))
    assert sum(counts) == len(ids)
    queue = subscribers_of("purchase.completed")[0].split(".")[0]
    published = [m["args"][0]["id"] for m in await queued(redis, namespace, queue)]
    assert sorted(published) == sorted(ids)


async def test_a_crash_between_publish_and_mark_is_absorbed_by_the_inbox(pools, redis, namespace, dsn, account_id):
    """Relay publishes, dies before marking: the next pass publishes again; the consumer's
    inbox applies the fact once."""
    (event_id,) = await write_events(pools[0], account_id, 1)
    crashing = relay(pools, redis, namespace, dsn)
    import shared.outbox as outbox_module

    real_enqueue = outbox_module.enqueue_many

    async def enqueue_then_die(*args, **kwargs):
        await real_enqueue(*args, **kwargs)
        raise SystemExit("killed between send and mark")

    outbox_module.enqueue_many = enqueue_then_die
    try:
        with pytest.raises(SystemExit):
            await crashing.publish_pending()
    finally:
        outbox_module.enqueue_many = real_enqueue
    assert await relay(pools, redis, namespace, dsn).publish_pending() == 1

    actor = subscribers_of("purchase.completed")[0]
    queue = actor.split(".")[0]
    deliveries = [m["args"][0] for m in await queued(redis, namespace, queue) if m["actor_name"] == actor]
    assert [d["id"] for d in deliveries] == [event_id, event_id]

    # Consume both copies with a real inbox (billing's schema) and count applications.
    from shared.config import ServiceSettings

    billing_app = await create_pool(dsn("billing"), application_name="test-billing", min_size=1, max_size=2)
    billing_owner = await create_pool(dsn("billing", owner=True), application_name="t", min_size=1, max_size=2)
    applied: list[str] = []

    async def handler(ctx, conn, event, envelope: EventEnvelope) -> None:
        applied.append(envelope.id)

    settings = ServiceSettings(
        database_url=dsn("billing"),
        database_owner_url=dsn("billing", owner=True),
        common={"broker_namespace": namespace},
    )
    ctx = HandlerContext("billing", "billing", settings, billing_app, billing_owner, redis)
    try:
        for delivery in deliveries:
            await consume(ctx, EventHandler(actor, "purchase.completed", 1, handler), delivery)
    finally:
        await billing_app.close()
        await billing_owner.close()
    assert applied == [event_id]
    acks = await redis.lrange(f"{namespace}:outbox-acks:checkout", 0, -1)
    assert len(acks) == 2  # acknowledged on every delivery, so the producer stops re-sending
