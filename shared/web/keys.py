"""Typed application and request keys (aiohttp ``web.AppKey``)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from ..config import ServiceSettings

SETTINGS = web.AppKey("settings", ServiceSettings)
SERVICE = web.AppKey("service", str)
SCHEMA = web.AppKey("schema", str)
APP_POOL = web.AppKey("app_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", Any)
EXTRAS = web.AppKey("extras", dict)

#: Request keys: typed `web.RequestKey` where aiohttp has it (3.13+; it warns about plain
#: strings), plain strings on older releases.
_RequestKey = getattr(web, "RequestKey", None)
AUTH: Any = _RequestKey("auth", Any) if _RequestKey else "commerce.auth"
IDEMPOTENT_CONN: Any = _RequestKey("idempotent_conn", Any) if _RequestKey else "commerce.idempotent_conn"
COMMIT_HOOKS: Any = _RequestKey("commit_hooks", Any) if _RequestKey else "commerce.commit_hooks"
