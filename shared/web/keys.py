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

#: request keys (plain strings: aiohttp requests are mutable mappings)
AUTH = "commerce.auth"
IDEMPOTENT_CONN = "commerce.idempotent_conn"
COMMIT_HOOKS = "commerce.commit_hooks"
