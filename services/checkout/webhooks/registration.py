"""Test-mode accounts' webhook endpoints at the test processor.

The test processor (localstripe) posts an account's events only to the endpoint
registered under that account's id (``devtools/test_processor.py``). Checkout's worker
keeps those registrations current: a loop reads the test-mode accounts and registers
``COMMERCE_PUBLIC_BASE_URL/webhooks/stripe/{account_id}`` with the account's webhook secret
whenever an account is new or its version changed (a reconnected processor has a new
secret), and re-registers everything now and then (the test processor keeps its state in
memory, so a restarted one has forgotten them). When the test processor is down, the loop
logs it once and tries again later; nothing else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import asyncpg

from shared.config import CommonSettings
from shared.db import create_pool
from shared.logging import get_logger
from shared.processor.webhooks import register_test_webhook
from shared.secrets import decrypt

log = get_logger(__name__)
S = "checkout"


def webhook_url(settings: CommonSettings, account_id: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/webhooks/stripe/{account_id}"


class EndpointRegistrar:
    def __init__(
        self,
        owner_dsn: str,
        settings: CommonSettings,
        *,
        interval: float = 0.5,
        refresh_after: float = 60.0,
        max_backoff: float = 15.0,
    ) -> None:
        self.owner_dsn, self.settings = owner_dsn, settings
        self.interval, self.refresh_after, self.max_backoff = interval, refresh_after, max_backoff
        #: account id -> (version registered, when)
        self.registered: dict[str, tuple[int, float]] = {}
        self._pool: asyncpg.Pool | None = None
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None
        self._down_logged = False

    async def start(self) -> None:
        self._pool = await create_pool(
            self.owner_dsn, application_name="checkout-webhook-registrar", min_size=0, max_size=1
        )
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="test-webhook-registrar")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._http is not None:
            await self._http.close()
        if self._pool is not None:
            await self._pool.close()

    async def _run(self) -> None:
        delay = self.interval
        while True:
            try:
                await self.sync_once()
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or the test processor is down: later
                self.registered.clear()  # a test processor that restarted has forgotten them all
                if not self._down_logged:
                    log.warning("test processor webhook registration failed; will retry", error=repr(exc))
                    self._down_logged = True
                delay = min(max(delay * 2, 1.0), self.max_backoff)
            await asyncio.sleep(delay)

    async def sync_once(self) -> int:
        """Register what is new, changed or due for a refresh; returns how many."""
        assert self._pool is not None and self._http is not None
        rows: list[Any] = await self._pool.fetch(
            f"""SELECT id, version, processor->>'webhook_secret_encrypted' AS secret FROM {S}.accounts
                WHERE test_mode AND processor->>'type' = 'test'
                  AND processor->>'webhook_secret_encrypted' IS NOT NULL"""
        )
        now = time.monotonic()
        done = 0
        for row in rows:
            known = self.registered.get(row["id"])
            if known is not None and known[0] == row["version"] and now - known[1] < self.refresh_after:
                continue
            await register_test_webhook(
                self._http,
                self.settings.test_processor_url,
                row["id"],
                webhook_url(self.settings, row["id"]),
                decrypt(self.settings, row["secret"]),
            )
            self.registered[row["id"]] = (row["version"], now)
            done += 1
        if done and self._down_logged:
            log.info("test processor webhook registration works again")
        self._down_logged = False
        return done
