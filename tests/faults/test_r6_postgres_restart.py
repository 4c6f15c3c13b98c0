"""TARGETS R6: PostgreSQL restarted (``pg_ctl -m immediate``) mid-checkout.

The stack runs on a private PostgreSQL. While buyers pay, it is stopped in immediate mode
(no checkpoint, every backend killed: a crash) and started again (crash recovery). Buyers
retry what failed — ``/complete`` on the same session, so the stored idempotency key must
bring the retry to the same PaymentIntent. Afterwards:
- no payment without its event, no event without its payment, no processor charge
  without a payment, and every effect exactly once (the effects checker);
- the pools recovered by themselves: no service process was restarted;
- errors happened only while PostgreSQL was down: no request that ended before the stop
  and none sent after ``pg_ctl start`` returned failed.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.ids import token_hash
from tests.support.load import cancel

pytestmark = pytest.mark.faults

PURCHASES = 100


@pytest.mark.timeout(600)
async def test_r6_postgres_restarted_immediate_mid_checkout(fault_stack):
    # A receipt whose claim committed while the worker saw the connection die is sent
    # when its lease expires (default 120 s); a shorter lease keeps the test short.
    fs = await asyncio.to_thread(fault_stack, "R6", private_postgres=True, env={"NOTIFICATIONS_SENDING_LEASE_S": "45"})
    pids = fs.pids()
    ledger = fs.ledger()
    shoppers = fs.shoppers(ledger)
    load = asyncio.create_task(shoppers.run(PURCHASES, concurrency=8))
    try:
        await shoppers.wait_paid(PURCHASES // 3)
        down = time.monotonic()
        await asyncio.to_thread(fs.stop_postgres, "immediate")
        stopped = time.monotonic()
        paid_at_stop = shoppers.paid
        await asyncio.sleep(2.0)
        await asyncio.to_thread(fs.start_postgres)
        up = time.monotonic()
        await load
    finally:
        await cancel(load)
    before = [e for e in shoppers.errors if e.ended < down]
    after = [e for e in shoppers.errors if e.started >= up]
    during = len(shoppers.errors) - len(before) - len(after)
    print(
        f"\nR6: PostgreSQL stopped (immediate) after {paid_at_stop} purchases in {stopped - down:.1f} s, "
        f"back after {up - down:.1f} s; failed buyer requests: "
        f"{len(before)} before, {during} while down ({shoppers.retried()}), {len(after)} after"
    )
    assert shoppers.gave_up == 0, shoppers.errors[-5:]
    assert not before, before[:5]
    assert not after, [(round(e.started - up, 2), e.step, e.detail) for e in after[:10]]

    # /complete retried after its charge operation (and idempotency key) was stored: the
    # retry must reach the same PaymentIntent (the checker counts charges per session).
    ops = await fs.sql(
        "checkout",
        """SELECT s.token_hash, min(o.created_at) AS created_at FROM checkout.processor_operations o
           JOIN checkout.checkout_sessions s ON s.id = o.subject_id WHERE o.kind = 'charge' GROUP BY 1""",
    )
    stored = {bytes(r["token_hash"]): r["created_at"].timestamp() for r in ops}
    reused = {
        e.token
        for e in shoppers.errors
        if e.step == "complete" and e.token and stored.get(token_hash(e.token), float("inf")) < e.sent_at
    }
    print(f"R6: {len(reused)} sessions retried /complete after their charge's idempotency key was stored")

    report = await ledger.check_exactly_once(timeout=180, min_purchases=PURCHASES)
    assert report.purchases == PURCHASES
    assert fs.dead() == [], f"processes died: {fs.dead()}"
    assert fs.pids() == pids, "service processes were restarted"
