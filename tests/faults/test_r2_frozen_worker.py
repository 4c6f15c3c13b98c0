"""TARGETS R2: a billing worker frozen (SIGSTOP) past the broker's heartbeat, then resumed.

The worker is caught holding charge jobs, some of them in the middle of their processor
call — the honest way to get there is a processor that does not answer: the test
processor is SIGSTOPped while billing-worker-0 (the only billing worker running) takes
the renewal run's jobs, so its eight threads each wait on a charge whose attempt row
(and idempotency key) is written, with eight more jobs prefetched. Then:

1. billing-worker-0 is SIGSTOPped, the processor is resumed (it commits the eight charges
   and answers into the frozen worker's sockets: the answers are lost to it for now),
   and billing-worker-1 is started;
2. the frozen worker's heartbeat goes stale; after the heartbeat timeout (15 s) a live
   worker's queue maintenance puts its jobs back on the queue, and billing-worker-1 runs
   them: the eight in flight resume their pending attempts with the stored keys (the
   processor replays its stored answers), the rest are charged;
3. once every charge has succeeded, billing-worker-0 is resumed: its eight calls get their
   answers, its prefetched jobs run — twins of jobs already done.

Every job may so have run twice; the checker (`tests.support.effects.ChargeLedger`)
counts the external effects per due charge: one charge at the processor, one payment,
one receipt, one CRM association, nothing lost and nothing doubled.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.support.client import Api
from tests.support.effects import ChargeLedger
from tests.support.load import Shoppers
from tests.support.subscriptions import advance, at, recurring_item, subscription_link

pytestmark = pytest.mark.faults

SUBSCRIPTIONS = 24  # > one worker's prefetch (2 × 8 threads): some wait on the queue
THREADS = 8
HEARTBEAT_TIMEOUT_S = 15.0
QUEUE = "billing"


async def _held(client: aioredis.Redis, namespace: str) -> dict[str, str]:
    """message id -> broker id of every billing message fetched but not acknowledged."""
    prefix = f"{namespace}:__acks__."
    held: dict[str, str] = {}
    async for key in client.scan_iter(match=prefix + "*", count=1000):
        broker, queue = key.decode()[len(prefix) :].split(".", 1)
        if queue in (QUEUE, f"{QUEUE}.DQ"):
            held.update({m.decode(): broker for m in await client.smembers(key)})
    return held


async def _acknowledged(client: aioredis.Redis, namespace: str, message_id: str) -> bool:
    pipe = client.pipeline(transaction=False)
    pipe.hexists(f"{namespace}:{QUEUE}.msgs", message_id)
    pipe.hexists(f"{namespace}:{QUEUE}.DQ.msgs", message_id)
    return not any(await pipe.execute())


async def _count(fs, query: str, *args) -> int:
    return (await fs.sql("billing", query, *args))[0]["n"]


@pytest.mark.timeout(600)
async def test_r2_frozen_billing_worker_effects_stay_single(fault_stack):
    fs = await asyncio.to_thread(fault_stack, "R2", workers={"billing": 2})
    account_id = fs.account["account_id"]
    frozen, rescuer = fs.stack.processes["billing-worker-0"], fs.stack.processes["billing-worker-1"]
    processor = fs.stack.processes["test-processor"]
    async with aiohttp.ClientSession() as http:
        api = Api(http, fs.config.base_url, fs.account["api_key"])
        await advance(api, at("2027-03-10", 12))
        link = await subscription_link(api, recurring_item("monthly", 2500, name="Wine club"))
        purchases = fs.ledger()
        shoppers = Shoppers(fs.config.base_url, fs.processor_url, link["url"], purchases)
        await shoppers.run(SUBSCRIPTIONS, concurrency=6)
        assert shoppers.paid == SUBSCRIPTIONS, shoppers.errors[-5:]
        charges = await ChargeLedger.next_payments(fs.stack, "R2", account_id, SUBSCRIPTIONS)
        await purchases.check_exactly_once(timeout=120, min_purchases=SUBSCRIPTIONS)

        client = aioredis.from_url(fs.config.redis_url)
        ns = fs.config.namespace
        await asyncio.to_thread(rescuer.stop)  # billing-worker-0 takes the whole run
        processor.signal(signal.SIGSTOP)
        try:
            await advance(api, at("2027-04-10", 12))
            deadline = time.monotonic() + 60
            while True:  # every thread inside a processor call, the prefetch full
                in_flight = await _count(
                    fs,
                    "SELECT count(*) AS n FROM billing.charge_attempts WHERE account_id = $1 AND status = 'pending'",
                    account_id,
                )
                held = await _held(client, ns)
                if in_flight >= THREADS and len(held) >= 2 * THREADS:
                    break
                assert time.monotonic() < deadline, f"worker 0 holds {len(held)} jobs, {in_flight} in flight"
                await asyncio.sleep(0.2)
            frozen.signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            stuck = {
                r["idempotency_key"]
                for r in await fs.sql(
                    "billing",
                    "SELECT idempotency_key FROM billing.charge_attempts WHERE account_id = $1 AND status = 'pending'",
                    account_id,
                )
            }
            held = await _held(client, ns)
            (broker,) = set(held.values())
        finally:
            processor.signal(signal.SIGCONT)
        try:
            await asyncio.to_thread(rescuer.start)
            redelivered: dict[str, float] = {}
            deadline = frozen_at + HEARTBEAT_TIMEOUT_S + 60
            while len(redelivered) < len(held):
                now_held = await _held(client, ns)
                for message_id in held:
                    if message_id in redelivered:
                        continue
                    holder = now_held.get(message_id)
                    if (holder is not None and holder != broker) or (
                        holder is None and await _acknowledged(client, ns, message_id)
                    ):
                        redelivered[message_id] = time.monotonic() - frozen_at
                assert time.monotonic() < deadline, f"{len(redelivered)} of {len(held)} frozen jobs came back"
                await asyncio.sleep(0.2)
            while await _count(
                fs,
                "SELECT count(*) AS n FROM billing.charges WHERE account_id = $1 AND status = 'succeeded'",
                account_id,
            ) < len(charges.due):
                assert time.monotonic() < deadline, "the charges did not all succeed while the worker was frozen"
                await asyncio.sleep(0.2)
            all_done = time.monotonic() - frozen_at
        finally:
            frozen.signal(signal.SIGCONT)
            resumed_at = time.monotonic()

        # The resumed worker finishes its copies: the calls in flight get their (late)
        # answers and record nothing; the prefetched twins find their charges settled.
        errors_before = fs.log_count('"level": "error"', "billing-worker-0")
        await asyncio.sleep(5.0)
        late_errors = fs.log_count('"level": "error"', "billing-worker-0") - errors_before
        await client.aclose()
        assert frozen.alive(), "the frozen worker died"

        report = await charges.check_exactly_once(timeout=120)
        replays = await charges.replays("commerce:ch_")

    resumed_keys = sorted(k for k in stuck if replays.get(k, 0) >= 1)
    print(
        f"R2: billing-worker-0 frozen {resumed_at - frozen_at:.1f} s holding {len(held)} charge jobs "
        f"({len(stuck)} inside a processor call); redelivered to billing-worker-1 within "
        f"{max(redelivered.values()):.1f} s (heartbeat timeout {HEARTBEAT_TIMEOUT_S:.0f} s); all "
        f"{report.charges} charges succeeded {all_done:.1f} s after the freeze; the in-flight attempts "
        f"resumed with their stored keys ({len(resumed_keys)} of {len(stuck)} keys replayed at the processor); "
        f"billing-worker-0 resumed with its {len(held)} jobs' twins and ran on ({late_errors} errors in its log in "
        f"the next 5 s)"
    )
    assert resumed_at - frozen_at > HEARTBEAT_TIMEOUT_S
    assert len(stuck) >= THREADS and len(resumed_keys) == len(stuck)
