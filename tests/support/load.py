"""Concurrent buyers for the fault suite: each pays once, retrying what fails.

A buyer that gets an error (connection refused, 5xx, timeout) while a server is down
retries the same step after a short back-off — what a real buyer's browser does when
they press the button again. ``/complete`` is retried on the *same* checkout session, so
the server must reuse the charge's stored idempotency key. Every failed request is kept
(`RequestError`, with its start and end times) so a test can check *when* errors happened.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .client import Buyer
from .effects import EffectsLedger


@dataclass(frozen=True)
class RequestError:
    step: str
    started: float  # time.monotonic() when the failed request was sent
    ended: float
    detail: str
    token: str | None = None  # the checkout session's token, once opened
    sent_at: float = 0.0  # time.time() when it was sent (to compare with database times)


class GaveUp(Exception):
    pass


@dataclass
class Shoppers:
    """``count`` purchases of one link by ``concurrency`` buyers at a time."""

    base_url: str
    processor_url: str
    link_url: str
    ledger: EffectsLedger
    #: How long one step may keep failing before the buyer gives up.
    patience: float = 180.0
    errors: list[RequestError] = field(default_factory=list)
    paid: int = 0
    gave_up: int = 0
    requests: int = 0

    async def _step(
        self, name: str, buyer: Buyer, call: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool]
    ) -> Any:
        deadline = time.monotonic() + self.patience
        delay = 0.1
        while True:
            started, sent_at = time.monotonic(), time.time()
            self.requests += 1
            try:
                result = await call()
            except (aiohttp.ClientError, TimeoutError, AssertionError, ValueError, KeyError, TypeError) as exc:
                detail = repr(exc)[:300]
            else:
                if ok(result):
                    return result
                detail = repr(getattr(result, "body", result))[:300]
                status = getattr(result, "status", None)
                if status is not None:
                    detail = f"{status} {detail}"
            self.errors.append(RequestError(name, started, time.monotonic(), detail, buyer.token, sent_at))
            if time.monotonic() > deadline:
                raise GaveUp(f"{name}: {detail}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def buy(self, http: aiohttp.ClientSession, index: int) -> str | None:
        buyer = Buyer(http, self.base_url, self.processor_url)
        email = f"buyer{index:05d}@example.com"
        try:
            await self._step("open", buyer, lambda: buyer.open(self.link_url), lambda token: bool(token))
            self.ledger.attempt(buyer.token)
            contact = {"email": email, "firstname": f"B{index}"}
            submitted = await self._step("submit", buyer, lambda: buyer.submit(contact), lambda r: r.status == 200)
            secret = submitted.body["payment"]["client_secret"]
            await self._step("confirm", buyer, lambda: buyer.confirm_card(secret), lambda r: r["http_status"] == 200)
            done = await self._step(
                "complete", buyer, buyer.complete, lambda r: r.status == 200 and r.body.get("status") == "complete"
            )
        except GaveUp:
            self.gave_up += 1
            return None
        self.ledger.accept(buyer.token, done.body["payment_id"])
        self.paid += 1
        return done.body["payment_id"]

    async def run(self, count: int, concurrency: int = 6, *, start: int = 0) -> list[str | None]:
        gate = asyncio.Semaphore(concurrency)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:

            async def one(i: int) -> str | None:
                async with gate:
                    return await self.buy(http, i)

            return await asyncio.gather(*(one(i) for i in range(start, start + count)))

    async def wait_paid(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.paid < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.paid} of {n} purchases paid within {timeout}s")
            await asyncio.sleep(0.05)

    def retried(self) -> str:
        """Failed requests per step, e.g. ``complete×12 open×3`` (``none`` if none failed)."""
        counts = Counter(e.step for e in self.errors)
        return " ".join(f"{step}×{n}" for step, n in counts.most_common()) or "none"


async def cancel(task: asyncio.Task) -> None:
    """Stop a background load (used in ``finally:`` so a failing test does not leave it)."""
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
