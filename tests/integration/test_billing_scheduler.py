"""The billing scheduler's set-based pass against a real database and Redis: every due
subscription gets one charge job however many batches a pass takes; a second pass (or a
second scheduler at once) creates nothing; not-yet-due, paused, invoiced and
method-less subscriptions are left alone; the runnable sweep re-enqueues after the lease."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.billing.charging import scheduler


@pytest.fixture
async def owner(dsn):
    conn = await asyncpg.connect(dsn("billing", owner=True))
    yield conn
    await conn.close()


@pytest.fixture
async def pool(dsn):
    pool = await asyncpg.create_pool(dsn("billing", owner=True), min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def redis(redis_url):
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def account(owner) -> str:
    account_id = f"acct_sched_{uuid.uuid4().hex[:10]}"
    await owner.execute(
        "INSERT INTO billing.accounts (id, version, name, test_mode, settings) VALUES ($1, 1, 'Scheduler', true, $2)",
        account_id,
        json.dumps({"time_zone": "UTC"}),
    )
    return account_id


async def add_subscriptions(owner, account_id: str, n: int, *, due: bool = True, **overrides) -> None:
    values = {
        "status": "active",
        "collection_method": "charge_automatically",
        "payment_method_id": "pm_x",
        **overrides,
    }
    await owner.execute(
        """INSERT INTO billing.subscriptions
               (id, account_id, status, currency, interval, start_date, payments_made, next_index,
                next_payment_date, amount, subtotal, line_items, collection_method, source_type, source_id,
                payment_method_id, test_mode, created_at, updated_at)
           SELECT $2 || '_' || g, $1, $3, 'USD', 'monthly', current_date - 31, 1, 1,
                  CASE WHEN $6 THEN current_date - 1 ELSE current_date + 5 END, 1500, 1500, '[]', $4, 'api', 'x',
                  $5, true, now(), now()
           FROM generate_series(1, $7) g""",
        account_id,
        f"sub_{uuid.uuid4().hex[:8]}",
        values["status"],
        values["collection_method"],
        values["payment_method_id"],
        due,
        n,
    )


async def jobs(redis, namespace: str) -> list[list]:
    bodies = await redis.hvals(f"{namespace}:billing.msgs")
    return [json.loads(b)["args"] for b in bodies]


async def test_every_due_subscription_gets_one_job_however_many_batches(pool, owner, redis, account):
    namespace = f"commerce-it-sched-{uuid.uuid4().hex[:8]}"
    await add_subscriptions(owner, account, 23)
    await add_subscriptions(owner, account, 4, due=False)
    await add_subscriptions(owner, account, 3, status="paused")
    await add_subscriptions(owner, account, 2, collection_method="send_invoice")
    await add_subscriptions(owner, account, 2, payment_method_id=None)
    try:
        first = await scheduler.run_pass(pool, redis, namespace, lease_s=60, batch=5)
        assert (first.created, first.enqueued) == (23, 23)
        queued = await jobs(redis, namespace)
        assert len(queued) == 23 and {a[0] for a in queued} == {account}
        charges = await owner.fetch(
            "SELECT subscription_id, period_index FROM billing.charges WHERE account_id = $1", account
        )
        assert len(charges) == len({c["subscription_id"] for c in charges}) == 23
        again = await scheduler.run_pass(pool, redis, namespace, lease_s=60, batch=5)
        assert (again.created, again.enqueued) == (0, 0)  # a second run creates (and enqueues) nothing
    finally:
        await redis.delete(f"{namespace}:billing.msgs", f"{namespace}:billing")


async def test_two_schedulers_at_once_create_each_charge_once(pool, owner, redis, account):
    namespace = f"commerce-it-sched-{uuid.uuid4().hex[:8]}"
    await add_subscriptions(owner, account, 40)
    try:
        results = await asyncio.gather(
            *(scheduler.run_pass(pool, redis, namespace, lease_s=60, batch=7) for _ in range(3))
        )
        assert sum(r.created for r in results) == 40
        count = await owner.fetchval("SELECT count(*) FROM billing.charges WHERE account_id = $1", account)
        assert count == 40 and len(await jobs(redis, namespace)) == 40
    finally:
        await redis.delete(f"{namespace}:billing.msgs", f"{namespace}:billing")


async def test_a_charge_whose_job_was_lost_is_enqueued_again_after_the_lease(pool, owner, redis, account):
    namespace = f"commerce-it-sched-{uuid.uuid4().hex[:8]}"
    await add_subscriptions(owner, account, 2)
    try:
        await scheduler.run_pass(pool, redis, namespace, lease_s=60, batch=10)
        await redis.delete(f"{namespace}:billing.msgs", f"{namespace}:billing")  # Redis lost them
        assert (await scheduler.run_pass(pool, redis, namespace, lease_s=60, batch=10)).enqueued == 0
        await owner.execute(
            "UPDATE billing.charges SET enqueued_at = now() - interval '61 seconds' WHERE account_id = $1", account
        )
        assert (await scheduler.run_pass(pool, redis, namespace, lease_s=60, batch=10)).enqueued == 2
    finally:
        await redis.delete(f"{namespace}:billing.msgs", f"{namespace}:billing")


async def test_the_walk_crosses_accounts_each_on_its_own_clock(pool, owner, redis, account):
    """Batches smaller than one account's due set carry the cursor from account to
    account; an account whose clock is 10 days behind has nothing due yet."""
    namespace = f"commerce-it-sched-{uuid.uuid4().hex[:8]}"
    others = []
    for offset_days in (0, -10, 0):
        other = f"acct_sched_{uuid.uuid4().hex[:10]}"
        await owner.execute(
            """INSERT INTO billing.accounts (id, version, name, test_mode, settings, clock_offset_us)
               VALUES ($1, 1, 'Scheduler', true, '{"time_zone": "UTC"}', $2)""",
            other,
            offset_days * 86_400_000_000,
        )
        others.append(other)
    await add_subscriptions(owner, account, 5)
    for other in others:
        await add_subscriptions(owner, other, 3)
    try:
        await scheduler.run_pass(pool, redis, namespace, lease_s=60, batch=2)
        mine = {account, *others}
        created = await owner.fetch(
            "SELECT account_id, count(*) AS n FROM billing.charges WHERE account_id = ANY($1) GROUP BY 1", list(mine)
        )
        assert {r["account_id"]: r["n"] for r in created} == {account: 5, others[0]: 3, others[2]: 3}
        marked = await owner.fetchval(
            "SELECT count(*) FROM billing.due_dates WHERE account_id = ANY($1) AND charged_index = next_index",
            list(mine),
        )
        assert marked == 11  # out of the due index until their charges move them on
    finally:
        await redis.delete(f"{namespace}:billing.msgs", f"{namespace}:billing")


async def test_a_subscription_claimed_by_a_concurrent_scheduler_is_not_charged_again(pool, owner, redis, account, dsn):
    """Another scheduler's batch has claimed one subscription (marked it, not committed
    yet): this pass waits for that claim and, once it commits, creates charges for the
    other two only."""
    namespace = f"commerce-it-sched-{uuid.uuid4().hex[:8]}"
    await add_subscriptions(owner, account, 3)
    busy = await owner.fetchval("SELECT min(id) FROM billing.subscriptions WHERE account_id = $1", account)
    holder = await asyncpg.connect(dsn("billing", owner=True))
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("UPDATE billing.due_dates SET charged_index = next_index WHERE subscription_id = $1", busy)
        running = asyncio.create_task(scheduler.run_pass(pool, redis, namespace, lease_s=60, batch=10))
        await asyncio.sleep(1.0)
        assert not running.done()  # waiting for the other claim
        await tx.commit()
        await asyncio.wait_for(running, 30)
        charged = await owner.fetch("SELECT subscription_id FROM billing.charges WHERE account_id = $1", account)
        assert len(charged) == 2 and busy not in {r["subscription_id"] for r in charged}
    finally:
        await holder.close()
        await redis.delete(f"{namespace}:billing.msgs", f"{namespace}:billing")


async def test_a_pass_never_requeues_what_it_queued_itself(pool, owner, redis, account):
    """Even with a lease shorter than the pass (here 0 s), the charges this pass created
    are not claimed again by its own sweep (the lease counts from the pass's start)."""
    namespace = f"commerce-it-sched-{uuid.uuid4().hex[:8]}"
    await add_subscriptions(owner, account, 12)
    try:
        result = await scheduler.run_pass(pool, redis, namespace, lease_s=0, batch=5)
        assert result.created == 12
        # (other tests' charges, queued before this pass, are re-queued: their lease of 0 s ran out)
        mine = [args[1] for args in await jobs(redis, namespace) if args[0] == account]
        assert len(mine) == len(set(mine)) == 12
    finally:
        await redis.delete(f"{namespace}:billing.msgs", f"{namespace}:billing")


async def test_each_payment_date_is_looked_at_once_for_reminders(owner, account, dsn):
    """Weekly plans (interval not longer than the 14-day lead) get a 'skipped' row and are
    not read again; the annual ones behind them in the window are reminded, however small
    the pass's limit."""
    from services.billing.reminders.scheduler import remind_due
    from shared.config import CommonSettings
    from shared.db import create_pool

    await owner.execute(
        """UPDATE billing.accounts SET settings = settings || '{"subscription_settings": {"reminders_enabled": true}}'
           WHERE id = $1""",
        account,
    )
    await owner.execute(
        """INSERT INTO billing.subscriptions
               (id, account_id, status, currency, interval, start_date, payments_made, next_index,
                next_payment_date, amount, subtotal, line_items, collection_method, source_type, source_id,
                payment_method_id, email, test_mode, created_at, updated_at)
           SELECT $1 || '_' || g, $2, 'active', 'USD', CASE WHEN g <= 3 THEN 'weekly' ELSE 'annually' END,
                  current_date - 360, 1, 1, current_date + CASE WHEN g <= 3 THEN 5 ELSE 10 END, 1500, 1500, '[]',
                  'charge_automatically', 'api', 'x', 'pm_x', 'buyer@example.com', true,
                  now() - interval '360 days', now()
           FROM generate_series(1, 5) g""",
        f"sub_{uuid.uuid4().hex[:8]}",
        account,
    )
    settings = CommonSettings(public_base_url="http://router.test")
    pool = await create_pool(dsn("billing", owner=True), application_name="it-reminders", min_size=1, max_size=1)
    sent = 0
    try:
        for _ in range(3):
            async with pool.acquire() as conn, conn.transaction():
                sent += await remind_due(conn, settings, account_id=account, limit=2)
        async with pool.acquire() as conn, conn.transaction():
            again = await remind_due(conn, settings, account_id=account, limit=2)
    finally:
        await pool.close()
    rows = await owner.fetch(
        "SELECT event_id IS NOT NULL AS sent, skipped FROM billing.reminders WHERE account_id = $1", account
    )
    assert sent == 2 and sorted(r["sent"] for r in rows) == [False, False, False, True, True]
    assert {r["skipped"] for r in rows if not r["sent"]} == {"interval not longer than the lead time"}
    assert again == 0
    assert await owner.fetchval("SELECT count(*) FROM billing.reminders WHERE account_id = $1", account) == 5


async def test_a_pass_failing_midway_leaves_its_unqueued_charges_to_the_lease(pool, owner, redis, account, monkeypatch):
    """A batch's jobs are enqueued while the next batch's statement runs: when an enqueue
    fails (Redis down), the pass fails, the charges it committed stay, and the lease puts
    every one of them on the queue later — none is lost, none is created twice."""
    namespace = f"commerce-it-sched-{uuid.uuid4().hex[:8]}"
    await add_subscriptions(owner, account, 23)
    real_enqueue, calls = scheduler.enqueue_many, []

    async def failing_second_time(client, ns, messages):
        calls.append(len(messages))
        if len(calls) == 2:
            raise ConnectionError("Redis went away")
        return await real_enqueue(client, ns, messages)

    try:
        monkeypatch.setattr(scheduler, "enqueue_many", failing_second_time)
        with pytest.raises(ConnectionError):
            await scheduler.run_pass(pool, redis, namespace, lease_s=60, batch=5)
        monkeypatch.setattr(scheduler, "enqueue_many", real_enqueue)
        created = await owner.fetchval("SELECT count(*) FROM billing.charges WHERE account_id = $1", account)
        assert 5 <= created < 23 and len(await jobs(redis, namespace)) == 5  # the first batch's jobs only
        await owner.execute(
            "UPDATE billing.charges SET enqueued_at = now() - interval '61 seconds' WHERE account_id = $1", account
        )
        later = await scheduler.run_pass(pool, redis, namespace, lease_s=60, batch=5)
        assert later.created == 23 - created
        charges = await owner.fetch("SELECT id FROM billing.charges WHERE account_id = $1", account)
        assert len(charges) == len({c["id"] for c in charges}) == 23
        assert {c["id"] for c in charges} == {args[1] for args in await jobs(redis, namespace)}
    finally:
        await redis.delete(f"{namespace}:billing.msgs", f"{namespace}:billing")
