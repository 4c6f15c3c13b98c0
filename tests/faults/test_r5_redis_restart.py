"""TARGETS R5: Redis restarted without persistence under load.

The stack runs on a private Redis (``--save "" --appendonly no``). While buyers pay, Redis
is SIGKILLed and started again, empty, on the same port: queued and in-flight messages,
retry schedules, acknowledgements not yet drained and the broker epoch are gone. The
services reconnect by themselves; the relays notice the new epoch and publish again every
event not yet acknowledged; the consumers' inboxes absorb what had already been applied.
Afterwards every committed fact has been delivered exactly once.

So that Redis surely holds unacknowledged work when it dies, the CRM worker is paused
(SIGSTOP) for a moment before the kill: its queue fills up in Redis and is lost with it.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.support.load import cancel

pytestmark = pytest.mark.faults

PURCHASES = 150


@pytest.mark.timeout(600)
async def test_r5_redis_restarted_empty_under_load(fault_stack):
    fs = await asyncio.to_thread(fault_stack, "R5", private_redis=True)
    pids = fs.pids()
    ledger = fs.ledger()
    shoppers = fs.shoppers(ledger)
    crm_worker = fs.stack.processes["crm_sync-worker-0"]
    load = asyncio.create_task(shoppers.run(PURCHASES, concurrency=8))
    try:
        await shoppers.wait_paid(PURCHASES // 4)
        crm_worker.signal(signal.SIGSTOP)
        await shoppers.wait_paid(PURCHASES // 4 + 20)
        down = time.monotonic()
        await asyncio.to_thread(fs.kill_redis)
        paid_at_kill = shoppers.paid
        await asyncio.sleep(2.0)
        await asyncio.to_thread(fs.start_redis)  # same port, no data
        up = time.monotonic()
        crm_worker.signal(signal.SIGCONT)
        await load
    finally:
        crm_worker.signal(signal.SIGCONT)
        await cancel(load)
    print(
        f"\nR5: Redis SIGKILLed after {paid_at_kill} purchases, back empty after {up - down:.1f} s; "
        f"failed buyer requests (retried): {shoppers.retried()}"
    )
    assert shoppers.gave_up == 0, shoppers.errors[-5:]

    report = await ledger.check_exactly_once(timeout=180, min_purchases=PURCHASES)
    assert report.purchases == PURCHASES
    republished = await fs.sql("checkout", "SELECT count(*) AS n FROM checkout.outbox WHERE publish_count > 1")
    print(f"R5: {republished[0]['n']} events published again by the relay after the restart")
    assert republished[0]["n"] > 0, "Redis held no unacknowledged event when it died"
    assert fs.dead() == [], f"processes died: {fs.dead()}"
    assert fs.pids() == pids, "service processes were restarted"
