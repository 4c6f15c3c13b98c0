"""Sending one webhook request, and resolving a target host safely.

Every connection resolves the host again through `VettedResolver`, which refuses the
whole name if any address it resolves to is not allowed for the account, and hands
aiohttp exactly the addresses it vetted: the connection goes to a checked address, so a
name that answered "public" at registration and "127.0.0.1" now (DNS rebinding) is
refused at send time. IP literals never reach a resolver in aiohttp; they are checked
by `ssrf.check_url` before each request.

Redirects are not followed (a 3xx is a failed attempt), cookies are never kept, no
proxy from the environment is used, connect and total timeouts apply, and at most
`MAX_RESPONSE_BYTES` of the answer are read. A 2xx answer means delivered.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from . import ssrf

#: Bytes of a receiver's answer kept for the delivery log.
MAX_RESPONSE_BYTES = 1024
USER_AGENT = "commerce-webhooks/1"


class AddressRefused(OSError):
    """The host resolves to an address the account may not reach."""


class VettedResolver(ThreadedResolver):
    """getaddrinfo, then every answer through the account's address policy."""

    def __init__(self, policy: ssrf.Policy) -> None:
        super().__init__()
        self.policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        try:
            ssrf.vet_addresses(host, [r["host"] for r in results], self.policy)
        except ssrf.UrlRefused as exc:
            raise AddressRefused(str(exc)) from None
        return results


async def resolve_host(host: str, port: int, *, timeout: float) -> list[str]:
    """The addresses ``host`` resolves to now (registration checks them all)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except (TimeoutError, OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


async def vet_target(text: str, policy: ssrf.Policy, *, resolve_timeout: float) -> ssrf.Target:
    """Registration: the URL rules, and every address its host resolves to now."""
    target = ssrf.check_url(text, policy)
    if target.ip is None:
        addresses = await resolve_host(target.host, target.port, timeout=resolve_timeout)
        if not addresses:
            raise ssrf.UrlRefused(f"has a host ({target.host}) that could not be resolved")
        ssrf.vet_addresses(target.host, addresses, policy)
    return target


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status: int | None = None
    body: str | None = None
    error: str | None = None
    duration_ms: int = 0


class Sender:
    """Sends deliveries; one HTTP client per address policy, opened on first use (on the
    event loop that uses it)."""

    def __init__(self, *, connect_timeout: float, total_timeout: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self._sessions: dict[ssrf.Policy, aiohttp.ClientSession] = {}

    def _session(self, policy: ssrf.Policy) -> aiohttp.ClientSession:
        session = self._sessions.get(policy)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                resolver=VettedResolver(policy),
                use_dns_cache=False,
                limit=100,
                limit_per_host=4,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
            )
            self._sessions[policy] = session
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def send(self, url: str, body: bytes, headers: dict[str, str], policy: ssrf.Policy) -> Outcome:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            target = ssrf.check_url(url, policy)
        except ssrf.UrlRefused as exc:
            return Outcome(False, error=f"refused: the URL {exc}")
        request_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
        try:
            async with self._session(policy).post(
                target.url, data=body, headers=request_headers, allow_redirects=False
            ) as response:
                snippet = await response.content.read(MAX_RESPONSE_BYTES)
                text = snippet.decode("utf-8", errors="replace").replace("\x00", "")
                delivered = 200 <= response.status < 300
                error = None if delivered else f"HTTP {response.status}"
                return Outcome(delivered, response.status, text, error, elapsed())
        except AddressRefused as exc:
            return Outcome(False, error=f"refused: {exc}", duration_ms=elapsed())
        except TimeoutError:
            return Outcome(False, error="timed out", duration_ms=elapsed())
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                return Outcome(False, error=f"refused: {exc.os_error}", duration_ms=elapsed())
            return Outcome(False, error=f"connection failed: {exc.os_error!r}"[:500], duration_ms=elapsed())
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Outcome(False, error=f"request failed: {exc!r}"[:500], duration_ms=elapsed())
