"""A real HTTP receiver for outbound webhooks (an aiohttp server on a free loopback port)
that records every request and answers as the test tells it: a status per request, a
delay, a redirect. It verifies nothing itself: tests check signatures with the secret."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.event["id"]


@dataclass
class Receiver:
    #: Status of each next request (then `status`).
    script: deque[int] = field(default_factory=deque)
    status: int = 200
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def answer(self, *statuses: int, then: int | None = None) -> None:
        self.script.extend(statuses)
        if then is not None:
            self.status = then

    @property
    def event_ids(self) -> list[str]:
        return [r.event_id for r in self.requests if r.path == "/hooks"]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Received(request.path, dict(request.headers), await request.read()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if request.path == "/redirect":
            raise web.HTTPFound("/hooks")
        status = self.script.popleft() if self.script else self.status
        return web.Response(status=status, text=f"receiver says {status}")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
