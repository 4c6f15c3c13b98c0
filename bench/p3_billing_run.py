"""TARGETS P3: a billing run — 1,000,000 subscriptions due → one charge job each, idempotent —
against a bare ``INSERT … SELECT`` of as many rows plus a pipelined enqueue of as many
messages, in the same run.

``python bench/p3_billing_run.py [--n 1000000] [--accounts 100] [--batch 50000] [--keep]``

Set-up (not timed): a fresh database with billing's schema (`bench/_load.py`), ``--accounts``
test accounts and ``--n`` active monthly subscriptions due yesterday, written with one
``INSERT … SELECT generate_series`` as billing's owner role, then VACUUM ANALYZE of those
tables (``billing.charges`` is left never analyzed, as on a fresh install: analyzed while
empty, it gets a plan that times out — see the report); a scratch Redis namespace. Before
each timed phase: a CHECKPOINT, so neither side pays for the other's WAL; during it
Python's cyclic GC is paused (both sides alike).

Timed, in this order, both as billing's owner role (the scheduler's):

1. **baseline**: ``INSERT INTO bench_p3.charges SELECT … FROM generate_series(1, n)
   RETURNING id, account_id`` — a table of the same columns as ``billing.charges`` with a
   text primary key (random ids, as the scheduler's) and nothing else — then the
   returned rows enqueued as ``billing.charge`` messages with `shared.broker.enqueue_many`
   in pipelines of ``--batch``;
2. **billing run**: `services.billing.charging.scheduler.run_pass` on a pool built like the
   scheduler process's (`shared.db.create_pool`, its statement timeout, custom plans), into
   its own scratch namespace; `enqueue_many` and the batch statement are wrapped to time
   them (a batch's enqueue overlaps the next batch's statement, so they add up to more
   than the run);
3. **second run**: `run_pass` again — it must create and enqueue nothing;
4. **baseline** again (the machine is shared: the ratio uses the mean of both).

Prints each phase, checks (charges in the table, messages on the queue, one per due
subscription) and ``P3: ratio=… (target ≤ 1.5)``. If the billing run does not create a
charge for every due subscription, it says so (``CHECKS FAILED``) and exits 1; a pass that
enqueues more messages than there are due charges is stopped (``RUNAWAY``): its claim
step takes charges enqueued longer ago than the lease (``BILLING_CHARGE_ENQUEUE_LEASE_S``,
60 s) for lost, its own included.

"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _load as load

TARGET = 1.5

SEED_ACCOUNTS = """
INSERT INTO billing.accounts (id, version, name, test_mode, settings)
SELECT format('acct_p3bench%s', lpad(g::text, 14, '0')), 1, 'P3 bench ' || g, true, '{}'::jsonb
FROM generate_series(1, $1) g
"""

# Active monthly subscriptions, each due yesterday (its second payment), with a saved card.
SEED_SUBSCRIPTIONS = """
INSERT INTO billing.subscriptions (
    id, account_id, status, currency, interval, start_date, payments_made, next_index, next_payment_date,
    amount, subtotal, line_items, email, contact, source_type, source_id, origin_payment_id, subscription_group,
    processor_customer_id, payment_method_id, method_type, test_mode, created_at, updated_at)
SELECT 'sub_' || substr(md5(g::text), 1, 26),
       format('acct_p3bench%s', lpad((g % $2 + 1)::text, 14, '0')),
       'active', 'USD', 'monthly', current_date - 32, 1, 1, current_date - 1,
       1500, 1500,
       '[{"name": "Coffee club", "quantity": 1, "unit_amount": 1500, "amount": 1500}]'::jsonb,
       'buyer' || g || '@example.com', jsonb_build_object('email', 'buyer' || g || '@example.com'),
       'payment_link', 'plink_p3bench', 'pay_' || substr(md5('p' || g), 1, 26), 'g0',
       'cus_' || substr(md5('c' || g), 1, 14), 'pm_' || substr(md5('m' || g), 1, 24), 'card', true,
       now() - interval '32 days', now() - interval '32 days'
FROM generate_series(1, $1) g
"""

BARE_DDL = [
    "DROP SCHEMA IF EXISTS bench_p3 CASCADE",
    "CREATE SCHEMA bench_p3 AUTHORIZATION commerce_billing",
]
# The columns of billing.charges, a primary key and nothing else (no unique constraint,
# foreign keys, secondary indexes or row-level security).
BARE_TABLE = """
CREATE TABLE bench_p3.charges (
    id text PRIMARY KEY,
    account_id text NOT NULL,
    subscription_id text NOT NULL,
    period_index integer NOT NULL,
    due_date date NOT NULL,
    amount bigint NOT NULL,
    currency text NOT NULL,
    status text NOT NULL,
    run_at timestamptz NOT NULL,
    enqueued_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    policy jsonb,
    final_outcome text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
)
"""
BARE_INSERT = """
INSERT INTO bench_p3.charges (id, account_id, subscription_id, period_index, due_date, amount, currency,
                              status, run_at, enqueued_at, created_at, updated_at)
SELECT 'ch_' || replace(gen_random_uuid()::text, '-', ''),
       format('acct_p3bench%s', lpad((g % $2 + 1)::text, 14, '0')),
       'sub_' || substr(md5(g::text), 1, 26), 1, current_date - 1, 1500, 'USD', 'scheduled',
       (current_date - 1)::timestamp AT TIME ZONE 'UTC', now(), now(), now()
FROM generate_series(1, $1) g
RETURNING id, account_id
"""


def fmt(seconds: float) -> str:
    return f"{seconds:.2f} s"


async def clear_namespace(client, namespace: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await client.delete(*keys[i : i + 500])


async def queued(client, namespace: str) -> int:
    return await client.llen(f"{namespace}:billing")


async def seed(owner_url: str, admin_url: str, n: int, accounts: int) -> float:
    import asyncpg

    started = time.perf_counter()
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute(SEED_ACCOUNTS, accounts)
        await conn.execute(SEED_SUBSCRIPTIONS, n, accounts)
    finally:
        await conn.close()
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute("VACUUM ANALYZE billing.subscriptions")
        await admin.execute("VACUUM ANALYZE billing.accounts")
        for statement in BARE_DDL:
            await admin.execute(statement)
        await admin.execute("SET ROLE commerce_billing")
        await admin.execute(BARE_TABLE)
    finally:
        await admin.close()
    return time.perf_counter() - started


async def baseline(owner_url: str, admin_url: str, client, namespace: str, n: int, accounts: int, batch: int):
    """(seconds, insert seconds, enqueue seconds, rows)."""
    import asyncpg

    from shared.broker import OutgoingMessage, enqueue_many

    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("TRUNCATE bench_p3.charges")
        await clear_namespace(client, namespace)
        await load.checkpoint(admin_url)
        with load.no_gc():
            started = time.perf_counter()
            rows = await conn.fetch(BARE_INSERT, n, accounts)
            inserted = time.perf_counter()
            for i in range(0, len(rows), batch):
                chunk = rows[i : i + batch]
                messages = [
                    OutgoingMessage(actor_name="billing.charge", queue_name="billing", args=(r["account_id"], r["id"]))
                    for r in chunk
                ]
                await enqueue_many(client, namespace, messages)
            done = time.perf_counter()
        count = len(rows)
        del rows
    finally:
        await conn.close()
    on_queue = await queued(client, namespace)
    await clear_namespace(client, namespace)
    return done - started, inserted - started, done - inserted, count, on_queue


class Runaway(Exception):
    """The pass put more messages on the queue than there are due charges (and went on)."""


class PassFailed(Exception):
    """The pass raised (a statement timeout, ...) — what it had done by then is in the message."""


async def billing_run(pool, admin_url: str, client, namespace: str, batch: int, limit: int):
    """(seconds, PassResult, seconds spent in enqueue_many); `Runaway` past ``limit`` messages."""
    import asyncpg

    from services.billing.charging import scheduler
    from services.billing.settings import BillingSettings

    lease_s = BillingSettings().charge_enqueue_lease_s  # the scheduler process's lease
    spent = [0.0]
    sent = [0]
    #: each batch's statement (create_due_charges), seconds
    statements: list[float] = []
    original, original_create = scheduler.enqueue_many, scheduler.create_due_charges

    async def timed_enqueue(redis, ns, messages):
        messages = list(messages)
        started = time.perf_counter()
        if sent[0] + len(messages) > limit:
            raise Runaway(f"{sent[0]:,} messages enqueued for {limit - batch:,} due charges, and more coming")
        try:
            return await original(redis, ns, messages)
        finally:
            spent[0] += time.perf_counter() - started
            sent[0] += len(messages)

    async def timed_create(*a, **kw):
        started = time.perf_counter()
        try:
            return await original_create(*a, **kw)
        finally:
            statements.append(time.perf_counter() - started)

    def batches() -> str:
        if not statements:
            return "no batch"
        return (
            f"{len(statements)} batches, their statements {min(statements):.2f}–{max(statements):.2f} s, "
            f"{sum(statements):.2f} s in all (statement timeout "
            f"{pool._connect_kwargs['server_settings']['statement_timeout']} ms)"
        )

    scheduler.enqueue_many, scheduler.create_due_charges = timed_enqueue, timed_create
    try:
        await load.checkpoint(admin_url)
        with load.no_gc():
            started = time.perf_counter()
            try:
                result = await scheduler.run_pass(pool, client, namespace, lease_s=lease_s, batch=batch)
            except Runaway as exc:
                raise Runaway(
                    f"{exc} after {time.perf_counter() - started:.1f} s (lease {lease_s:g} s; {batches()})"
                ) from None
            except asyncpg.PostgresError as exc:
                raise PassFailed(
                    f"{exc!r} after {time.perf_counter() - started:.1f} s, {sent[0]:,} messages enqueued by then "
                    f"({batches()})"
                ) from None
            elapsed = time.perf_counter() - started
            load.say(f"  ({batches()})")
    finally:
        scheduler.enqueue_many, scheduler.create_due_charges = original, original_create
    return elapsed, result, spent[0]


async def run(args: argparse.Namespace, db: load.BenchDatabase) -> int:
    import asyncpg
    import redis.asyncio as aioredis

    from devtools import infra
    from shared.db import create_pool

    owner_url, admin_url = db.url("commerce_billing"), db.admin_db_url
    redis_url = infra.ensure_redis(
        os.environ.get("COMMERCE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        load.ROOT / ".run" / "bench-infra" / "redis",
    ).url
    suffix = uuid.uuid4().hex[:8]
    bare_ns, run_ns = f"commerce-bench-p3-bare-{suffix}", f"commerce-bench-p3-run-{suffix}"
    client = aioredis.from_url(redis_url, socket_timeout=60)
    pool = await create_pool(owner_url, application_name="billing-scheduler", min_size=1, max_size=3, custom_plans=True)
    try:
        load.say(f"seeding {args.n:,} due subscriptions in {args.accounts} accounts…")
        load.say(f"seeded in {fmt(await seed(owner_url, admin_url, args.n, args.accounts))}")

        b1, b1_insert, b1_enqueue, b1_rows, b1_queued = await baseline(
            owner_url, admin_url, client, bare_ns, args.n, args.accounts, args.batch
        )
        load.say(
            f"baseline 1: {fmt(b1)} (INSERT … SELECT of {b1_rows:,} rows {fmt(b1_insert)}, "
            f"enqueue of {b1_queued:,} messages {fmt(b1_enqueue)})"
        )
        try:
            real, result, redis_s = await billing_run(pool, admin_url, client, run_ns, args.batch, args.n + args.batch)
        except Runaway as exc:
            load.say(
                f"billing run: RUNAWAY — {exc}: the pass's claim step re-enqueues its own charges once they "
                f"were enqueued longer ago than the lease (see the report) — CHECKS FAILED"
            )
            return 1
        except PassFailed as exc:
            load.say(f"billing run: FAILED — {exc} — CHECKS FAILED")
            return 1
        run_ended = time.perf_counter()
        on_queue = await queued(client, run_ns)
        conn = await asyncpg.connect(owner_url)
        try:
            charges = await conn.fetchval("SELECT count(*) FROM billing.charges")
            per_sub = await conn.fetchval(
                "SELECT count(*) FROM (SELECT subscription_id FROM billing.charges GROUP BY 1 HAVING count(*) > 1) d"
            )
        finally:
            await conn.close()
        load.say(
            f"billing run: {fmt(real)} (created {result.created:,}, enqueued {result.enqueued:,}; "
            f"enqueue {fmt(redis_s)}, overlapping the next batch's statement); charges in the table {charges:,}, "
            f"messages on the queue {on_queue:,}, subscriptions charged twice {per_sub}"
        )
        try:
            second, again, _ = await billing_run(pool, admin_url, client, run_ns, args.batch, args.n + args.batch)
        except (Runaway, PassFailed) as exc:
            load.say(f"second run: {type(exc).__name__.upper()} — {exc} — CHECKS FAILED")
            return 1
        since = time.perf_counter() - run_ended
        load.say(
            f"second run: {fmt(second)} (created {again.created}, enqueued {again.enqueued:,}"
            + (
                f": charges enqueued more than the lease ago and not final are taken for lost — no worker runs "
                f"here, and the first run ended {since:.0f} s before"
                if again.enqueued
                else ""
            )
            + ")"
        )
        await clear_namespace(client, run_ns)

        b2, b2_insert, b2_enqueue, b2_rows, b2_queued = await baseline(
            owner_url, admin_url, client, bare_ns, args.n, args.accounts, args.batch
        )
        load.say(
            f"baseline 2: {fmt(b2)} (INSERT … SELECT of {b2_rows:,} rows {fmt(b2_insert)}, "
            f"enqueue of {b2_queued:,} messages {fmt(b2_enqueue)})"
        )
        base = statistics.mean([b1, b2])
        ratio = real / base
        ok = (
            result.created == args.n
            and result.enqueued == args.n
            and charges == args.n
            and on_queue == args.n
            and per_sub == 0
            and again.created == 0
            and b1_queued == b2_queued == args.n
        )
        load.say(
            f"P3: ratio={ratio:.2f} (target <= {TARGET:.1f}) billing run {fmt(real)} for {result.created:,} of "
            f"{args.n:,} due subscriptions vs baseline {fmt(base)} (mean of {fmt(b1)} and {fmt(b2)}); "
            f"second run created {again.created}"
            f"{'' if ok else ' — CHECKS FAILED'}"
        )
        if result.created < args.n:
            load.say(
                f"  the billing run created charges for {result.created:,} of {args.n:,} due subscriptions "
                f"(--batch {args.batch:,})"
            )
        return 0 if ok else 1
    finally:
        await pool.close()
        await clear_namespace(client, bare_ns)
        await clear_namespace(client, run_ns)
        await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="due subscriptions")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50_000, help="the scheduler's batch (run_pass's default)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()
    load.say(f"P3 — billing run vs bare INSERT … SELECT + pipelined enqueue; {load.machine_load()}")
    return load.run_with_database("commerce_bench_p3", ("billing",), lambda db: run(args, db), keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
