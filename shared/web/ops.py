"""Operations endpoints of every process: ``/healthz``, ``/readyz``, ``/metrics``.

Also the correlation-id and HTTP-metrics middlewares of the service apps, and a small
standalone ops server for worker and relay processes (which have no other HTTP).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram, generate_latest
from structlog.contextvars import bind_contextvars, reset_contextvars

from ..logging import new_correlation_id

Check = Callable[[], Awaitable[object]]

HTTP_LATENCY = Histogram(
    "commerce_http_request_duration_seconds",
    "HTTP request latency by route and status.",
    ["service", "method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def metrics_registry() -> CollectorRegistry:
    """The registry to expose: multi-process files in workers, the default elsewhere."""
    import os

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


def add_ops_routes(app: web.Application, checks: dict[str, Check]) -> None:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        results: dict[str, str] = {}
        ok = True
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout=2.0)
                results[name] = "ok"
            except Exception as exc:
                ok = False
                results[name] = f"unavailable: {type(exc).__name__}"
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "checks": results}, status=200 if ok else 503
        )

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(metrics_registry())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


def correlation_middleware():
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-Id", "")
        correlation_id = (
            incoming
            if 8 <= len(incoming) <= 64 and incoming.isascii() and incoming.replace("-", "").isalnum()
            else new_correlation_id()
        )
        # bind/reset directly (what ``bound`` does) without a generator context manager
        tokens = bind_contextvars(correlation_id=correlation_id)
        try:
            response = await handler(request)
        finally:
            reset_contextvars(**tokens)
        response.headers["X-Request-Id"] = correlation_id
        return response

    return middleware


def metrics_middleware(service: str):
    #: (method, route, status) -> the histogram's child: ``labels()`` takes a lock and
    #: builds its key on every call. Bounded: routes are the app's (or "unmatched"),
    #: methods and statuses few; cleared if it ever grows past that.
    children: dict[tuple[str, str, int], Histogram] = {}

    def child(method: str, name: str, status: int):
        key = (method, name, status)
        found = children.get(key)
        if found is None:
            if len(children) >= 10_000:
                children.clear()
            found = children[key] = HTTP_LATENCY.labels(service, method, name, str(status))
        return found

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = request.match_info.route.resource
            name = route.canonical if route is not None else "unmatched"
            child(request.method, name, status).observe(time.perf_counter() - started)

    return middleware


async def start_ops_server(host: str, port: int, checks: dict[str, Check]) -> web.AppRunner | None:
    """Serve /healthz, /readyz and /metrics for a worker or relay process (port 0 = off)."""
    if not port:
        return None
    app = web.Application()
    add_ops_routes(app, checks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
