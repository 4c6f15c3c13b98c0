"""Process runners: a dramatiq worker, and an outbox relay, for any service.

A worker process = one dramatiq ``Worker`` (threads, tuned ``worker_timeout``) with the
service's actors, plus an asyncpg pool and a Redis client created on the worker's event
loop (AsyncIO middleware), plus a small ops server. Scale by starting more processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import redis.asyncio as aioredis
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware, MiddlewareError

from .config import ServiceSettings
from .db import create_pool
from .inbox import HandlerContext, HandlerRegistry, declare_actors
from .logging import get_logger

log = get_logger(__name__)


def prepare_metrics_dir(service: str, role: str) -> None:
    """Per-process Prometheus multi-process directory; call before importing dramatiq's
    Prometheus middleware or creating any metric."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        directory = tempfile.mkdtemp(prefix=f"commerce-{service}-{role}-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        os.environ["dramatiq_prom_db"] = directory


ExtrasFactory = Callable[[ServiceSettings], Awaitable[dict[str, Any]]]
#: How long a stopping worker waits for its background loops to finish what they do.
BACKGROUND_STOP_TIMEOUT_S = 20.0


class WorkerResourcesUnavailable(MiddlewareError):
    pass


class _Resources(Middleware):
    """Opens the pools on the worker's event loop before consumers start."""

    def __init__(self, service: str, schema: str, settings: ServiceSettings, make_extras: ExtrasFactory | None):
        self.service, self.schema, self.settings = service, schema, settings
        self.make_extras = make_extras
        self.context: HandlerContext | None = None
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task] = []

    async def _open(self) -> HandlerContext:
        s = self.settings
        app_pool = await create_pool(
            s.database_url,
            application_name=f"{self.service}-worker",
            min_size=s.db_pool_min,
            max_size=s.db_pool_max,
            statement_timeout_ms=s.db_statement_timeout_ms,
        )
        owner_pool = await create_pool(
            s.database_owner_url,
            application_name=f"{self.service}-worker-owner",
            min_size=0,
            max_size=2,
            statement_timeout_ms=s.db_statement_timeout_ms,
        )
        client = aioredis.from_url(s.common.redis_url, socket_timeout=10, socket_connect_timeout=5)
        extras = await self.make_extras(s) if self.make_extras else {}
        ctx = HandlerContext(self.service, self.schema, s, app_pool, owner_pool, client, extras)
        # Background loops of the worker process (extras["_background"]: ``fn(ctx, stop)``
        # coroutines, e.g. notifications' send sweep), on the worker's event loop.
        self._background = [asyncio.create_task(start(ctx, self._stop)) for start in extras.get("_background", [])]
        return ctx

    async def _close(self, ctx: HandlerContext) -> None:
        self._stop.set()
        if self._background:
            _, pending = await asyncio.wait(self._background, timeout=BACKGROUND_STOP_TIMEOUT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
        for closer in ctx.extras.get("_closers", []):
            await closer()
        await ctx.app_pool.close()
        await ctx.owner_pool.close()
        await ctx.redis.aclose()

    def before_worker_boot(self, broker, worker):
        try:
            self.context = get_event_loop_thread().run_coroutine(self._open())
        except Exception as exc:
            # Fail fast: a worker without its database is useless; the supervisor restarts it.
            raise WorkerResourcesUnavailable(f"cannot open worker resources: {exc!r}") from exc

    def after_worker_shutdown(self, broker, worker):
        # "after" hooks run in reverse order: this one runs before AsyncIO stops the loop.
        if self.context is not None:
            get_event_loop_thread().run_coroutine(self._close(self.context))
            self.context = None


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_worker(
    settings: ServiceSettings,
    *,
    service: str,
    schema: str,
    registries: list[HandlerRegistry],
    declare_extra_actors: Callable[[dramatiq.Broker, Callable[[], HandlerContext]], None] | None = None,
    make_extras: ExtrasFactory | None = None,
) -> None:
    from .broker import build_broker
    from .web.ops import start_ops_server

    resources = _Resources(service, schema, settings, make_extras)
    broker = build_broker(settings, extra_middleware=[resources])

    def get_context() -> HandlerContext:
        if resources.context is None:
            raise RuntimeError("worker resources are not open yet")
        return resources.context

    for registry in registries:
        declare_actors(broker, registry, settings, get_context)
    if declare_extra_actors is not None:
        declare_extra_actors(broker, get_context)
    broker.emit_after("process_boot")

    worker = dramatiq.Worker(broker, worker_threads=settings.worker_threads, worker_timeout=settings.worker_timeout_ms)
    worker.start()
    from prometheus_client import Gauge

    Gauge(
        "commerce_worker_threads",
        "Worker threads of a running worker process.",
        ["service"],
        multiprocess_mode="liveall",
    ).labels(service).set(settings.worker_threads)
    log.info("worker started", queues=sorted(broker.get_declared_queues()), threads=settings.worker_threads)

    async def main() -> None:
        async def check_on_worker_loop() -> None:
            ctx = get_context()
            await ctx.app_pool.fetchval("SELECT 1")
            await ctx.redis.ping()

        async def ready() -> None:
            # The pool lives on the worker's event loop thread: check it there.
            loop = get_event_loop_thread().loop
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(check_on_worker_loop(), loop))

        runner = await start_ops_server(settings.http_host, settings.worker_metrics_port, {"worker": ready})
        try:
            await _wait_for_signal()
        finally:
            if runner is not None:
                await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        log.info("worker stopping")
        worker.stop(timeout=30_000)
        broker.close()


def run_relay(settings: ServiceSettings, *, service: str, schema: str) -> None:
    from .outbox import OutboxRelay
    from .web.ops import start_ops_server

    async def main() -> None:
        pool = await create_pool(
            settings.database_owner_url, application_name=f"{service}-relay", min_size=1, max_size=3
        )
        client = aioredis.from_url(settings.common.redis_url, socket_timeout=10, socket_connect_timeout=5)
        relay = OutboxRelay(
            schema=schema,
            producer=service,
            owner_pool=pool,
            listen_dsn=settings.database_owner_url,
            redis=client,
            namespace=settings.common.broker_namespace,
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval_s,
            redeliver_after=settings.relay_redeliver_after_s,
        )

        async def ready() -> None:
            if not relay.healthy:
                raise RuntimeError("relay cycle failing")

        runner = await start_ops_server(settings.http_host, settings.relay_metrics_port, {"relay": ready})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("relay started", schema=schema)
        try:
            await relay.run(stop)
        finally:
            if runner is not None:
                await runner.cleanup()
            await client.aclose()
            await pool.close()

    asyncio.run(main())
