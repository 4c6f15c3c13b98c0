"""TARGETS R4: a crash between commit and enqueue, and between send and mark.

(a) The checkout relay is SIGKILLed while purchases complete: their events are committed
    but not enqueued. Restarted, it publishes them; every fact is delivered exactly once.
(b) The relay crashes at the failpoint ``relay.after_publish`` — the dramatiq messages are
    in Redis, the rows are not marked published (the transaction never commits). The
    consumers apply the events and acknowledge them; the restarted relay publishes the
    same rows again and the consumers' inboxes absorb the duplicates.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.load import cancel

pytestmark = pytest.mark.faults

RELAY = "checkout-relay"


async def _unpublished(fs) -> int:
    rows = await fs.sql("checkout", "SELECT count(*) AS n FROM checkout.outbox WHERE published_at IS NULL")
    return rows[0]["n"]


@pytest.mark.timeout(600)
async def test_r4_relay_killed_between_commit_and_enqueue(fault_stack):
    fs = await asyncio.to_thread(fault_stack, "R4a")
    ledger = fs.ledger()
    shoppers = fs.shoppers(ledger)
    load = asyncio.create_task(shoppers.run(60, concurrency=6))
    try:
        await shoppers.wait_paid(15)
        await asyncio.to_thread(fs.stack.processes[RELAY].kill)
        killed_after = shoppers.paid
        await load
    finally:
        await cancel(load)
    assert shoppers.gave_up == 0, shoppers.errors[-5:]
    stranded = await _unpublished(fs)
    print(f"\nR4a: relay SIGKILLed after {killed_after} purchases; {stranded} committed events not enqueued")
    assert stranded > 0, "the relay was killed too late to strand any committed event"

    await asyncio.to_thread(fs.start_process, RELAY)
    await ledger.check_exactly_once(timeout=120, min_purchases=60)
    assert await _unpublished(fs) == 0


@pytest.mark.timeout(600)
async def test_r4_relay_killed_between_send_and_mark(fault_stack):
    fs = await asyncio.to_thread(fault_stack, "R4b")
    relay = fs.stack.processes[RELAY]
    await asyncio.to_thread(fs.start_process, RELAY, {"COMMERCE_FAILPOINTS": "relay.after_publish=exit"})
    ledger = fs.ledger()
    shoppers = fs.shoppers(ledger)
    await shoppers.run(30, concurrency=5)
    assert shoppers.gave_up == 0, shoppers.errors[-5:]

    deadline = time.monotonic() + 30
    while relay.alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not relay.alive(), "the relay did not reach its failpoint"
    assert relay.popen.returncode == 137, relay.popen.returncode

    # The batch the relay sent before dying reached the consumers, though the outbox
    # still says it was never published.
    # (Wait until the consumers are through that batch: the set stops growing.)
    sent_unmarked: set[str] = set()
    previous: set[str] | None = None
    deadline = time.monotonic() + 30
    while (not sent_unmarked or sent_unmarked != previous) and time.monotonic() < deadline:
        previous = sent_unmarked
        await asyncio.sleep(1.0)
        unmarked = await fs.sql("checkout", "SELECT event_id FROM checkout.outbox WHERE published_at IS NULL")
        applied = await fs.sql("billing", "SELECT event_id FROM billing.inbox")
        sent_unmarked = {r["event_id"] for r in unmarked} & {r["event_id"] for r in applied}
    assert sent_unmarked, "no event was sent before the crash"
    absorbed_before = fs.log_count("duplicate event absorbed", "")

    await asyncio.to_thread(fs.start_process, RELAY)  # without the failpoint
    await ledger.check_exactly_once(timeout=120, min_purchases=30)
    absorbed = fs.log_count("duplicate event absorbed", "") - absorbed_before
    print(f"R4b: {len(sent_unmarked)} events sent but not marked; {absorbed} duplicate deliveries absorbed")
    assert absorbed >= len(sent_unmarked), "the re-published events did not reach the consumers again"
    assert await _unpublished(fs) == 0
