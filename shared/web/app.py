"""The app factory every service uses: ``create_app(settings)`` does no I/O.

Pools and clients are opened by ``cleanup_ctx`` when the app starts and closed when it
stops; handlers reach them through typed app keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis
from aiohttp import web

from ..config import ServiceSettings
from ..db import create_pool
from .auth import auth_middleware
from .keys import APP_POOL, EXTRAS, REDIS, SCHEMA, SERVICE, SETTINGS
from .ops import add_ops_routes, correlation_middleware, metrics_middleware
from .problem import problem_middleware
from .request import MAX_BODY_BYTES, path_middleware
from .tx import idempotency_middleware


def service_app(
    settings: ServiceSettings,
    *,
    service: str,
    schema: str,
    setup_routes: Callable[[web.Application], None],
    middlewares: tuple = (),
) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            correlation_middleware(),
            metrics_middleware(service),
            problem_middleware,
            *middlewares,
            auth_middleware,
            path_middleware,
            idempotency_middleware,
        ],
    )
    app[SETTINGS] = settings
    app[SERVICE] = service
    app[SCHEMA] = schema
    app[EXTRAS] = {}
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_redis)

    async def check_db() -> None:
        await app[APP_POOL].fetchval("SELECT 1")

    async def check_redis() -> None:
        await app[REDIS].ping()

    add_ops_routes(app, {"postgres": check_db, "redis": check_redis})
    setup_routes(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[APP_POOL] = await create_pool(
        settings.database_url,
        application_name=f"{app[SERVICE]}-http",
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )
    yield
    await app[APP_POOL].close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    client = aioredis.from_url(app[SETTINGS].common.redis_url, socket_timeout=5, socket_connect_timeout=5)
    app[REDIS] = client
    yield
    await client.aclose()
