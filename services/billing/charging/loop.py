"""``python -m services.billing scheduler``: billing's time-driven loop.

Each pass: create the charges that fell due and enqueue them (and anything runnable that
is not on the queue), end subscriptions cancelled at their period end, publish due
reminders; every ``reconcile_after_s / 2`` the reconciler resolves stale attempts. A pass
runs every ``scheduler_interval_s`` and at once when woken by NOTIFY (a test-clock move,
a charge that made the next one due). Any number of schedulers may run (see
`scheduler.py`); one is enough.
"""

from __future__ import annotations

import asyncio
import signal
import time

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram

from shared.db import create_pool
from shared.logging import get_logger
from shared.processor.registry import ProcessorRegistry

from ..invoices.scheduler import run_pass as issue_invoices
from ..reminders.scheduler import remind_due
from ..settings import BillingSettings
from . import scheduler, transitions
from .reconciler import PROCESSING_POLL_S, reconcile_once
from .service import ChargeDeps

log = get_logger(__name__)

PASS_SECONDS = Histogram("commerce_billing_scheduler_pass_seconds", "Duration of one scheduler pass.")
CHARGES_CREATED = Counter("commerce_billing_charges_created_total", "Charges created by the scheduler.")
JOBS_ENQUEUED = Counter("commerce_billing_charge_jobs_enqueued_total", "Charge jobs put on the queue.")


class BillingScheduler:
    def __init__(self, settings: BillingSettings, owner_pool: asyncpg.Pool, deps: ChargeDeps, redis) -> None:
        self.settings = settings
        self.owner_pool = owner_pool
        self.deps = deps
        self.redis = redis
        self.wake = asyncio.Event()
        self.healthy = True
        self._last_reconcile = 0.0

    async def run_once(self) -> None:
        started = time.perf_counter()
        steps: dict[str, float] = {}

        def lap(name: str, since: float) -> float:
            now = time.perf_counter()
            steps[name] = round(now - since, 3)
            return now

        t = started
        await issue_invoices(self.owner_pool, self.settings.common)  # before charges: see invoices/scheduler.py
        t = lap("invoices", t)
        result = await scheduler.run_pass(
            self.owner_pool,
            self.redis,
            self.settings.common.broker_namespace,
            lease_s=self.settings.charge_enqueue_lease_s,
        )
        t = lap("charges", t)
        CHARGES_CREATED.inc(result.created)
        JOBS_ENQUEUED.inc(result.enqueued)
        if result.enqueued:
            log.info("charges enqueued", created=result.created, enqueued=result.enqueued)
        async with self.owner_pool.acquire() as conn, conn.transaction():
            await transitions.end_periods(conn)
        t = lap("period_ends", t)
        async with self.owner_pool.acquire() as conn, conn.transaction():
            await remind_due(conn, self.settings.common)
        t = lap("reminders", t)
        if time.monotonic() - self._last_reconcile > min(self.settings.reconcile_after_s / 2, PROCESSING_POLL_S):
            self._last_reconcile = time.monotonic()
            await reconcile_once(self.owner_pool, self.deps, older_than_s=self.settings.reconcile_after_s)
            lap("reconcile", t)
        elapsed = time.perf_counter() - started
        PASS_SECONDS.observe(elapsed)
        if elapsed > 1.0:
            log.warning("slow scheduler pass", seconds=round(elapsed, 3), steps=steps)

    async def _listen(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self.settings.database_owner_url)
                try:
                    await conn.add_listener(scheduler.NOTIFY_CHANNEL, lambda *_: self.wake.set())
                    while not stop.is_set() and not conn.is_closed():
                        await asyncio.sleep(1)
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("scheduler listen failed", error=repr(exc))
                await asyncio.sleep(1)

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop))
        try:
            while not stop.is_set():
                self.wake.clear()
                try:
                    await self.run_once()
                    self.healthy = True
                except (OSError, asyncpg.PostgresError, aioredis.RedisError) as exc:
                    self.healthy = False
                    log.warning("scheduler pass failed", error=repr(exc))
                except Exception:  # a bug must not stop the loop: /readyz reports it
                    self.healthy = False
                    log.exception("scheduler pass crashed")
                waits = [asyncio.create_task(self.wake.wait()), asyncio.create_task(stop.wait())]
                await asyncio.wait(
                    waits, timeout=self.settings.scheduler_interval_s, return_when=asyncio.FIRST_COMPLETED
                )
                for task in waits:
                    task.cancel()
        finally:
            listener.cancel()


def run(settings: BillingSettings) -> None:
    import faulthandler

    from shared.web.ops import start_ops_server

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1` prints where the loop is

    async def main() -> None:
        owner_pool = await create_pool(  # its passes: set-based batches (charges, reminders, invoices)
            settings.database_owner_url, application_name="billing-scheduler", min_size=1, max_size=3, custom_plans=True
        )
        app_pool = await create_pool(
            settings.database_url, application_name="billing-scheduler", min_size=1, max_size=3
        )
        client = aioredis.from_url(settings.common.redis_url, socket_timeout=10, socket_connect_timeout=5)
        processors = ProcessorRegistry(settings.common)
        loop_ = BillingScheduler(settings, owner_pool, ChargeDeps(app_pool, processors, settings.common), client)

        async def ready() -> None:
            if not loop_.healthy:
                raise RuntimeError("scheduler pass failing")

        runner = await start_ops_server(settings.http_host, settings.scheduler_metrics_port, {"scheduler": ready})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR2, lambda: [t.print_stack() for t in asyncio.all_tasks()])
        log.info("billing scheduler started")
        try:
            await loop_.run(stop)
        finally:
            if runner is not None:
                await runner.cleanup()
            await processors.close()
            await client.aclose()
            await app_pool.close()
            await owner_pool.close()

    asyncio.run(main())
