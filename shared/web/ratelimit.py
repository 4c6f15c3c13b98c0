"""Abuse limits (TARGETS R11): GCRA rate limits in Redis, one round trip per check.

Algorithm: GCRA (the generic cell rate algorithm, as in redis-cell or nginx's
``limit_req``), which is a sliding window without per-request bookkeeping. A limit of
``N per P seconds`` lets a client send N requests at once, then one every ``P/N`` seconds;
its state is one timestamp per key (the "theoretical arrival time"), which expires when
it no longer matters. The time is Redis's own (``TIME``), so app processes on machines
with skewed clocks agree.

One check = one ``EVALSHA`` of `_GCRA_LUA` (on the limiter's own pipelined connection,
`_RedisChannel`) carrying every limit that applies to the request (e.g. per client IP
and per payment link). It is all-or-nothing: a refused request consumes no budget of any
of its limits, so a flood refused by its IP limit does not eat into the link's budget,
and other links and accounts (other keys) are untouched.

Keys: ``<COMMERCE_BROKER_NAMESPACE>:ratelimit:<limit name>:<subject>``; subjects that are
long or not plain (a slug is whatever the URL carries) are hashed.

Failing open: when Redis is unreachable or slow (> `RateLimiter.timeout_s`), the request
is let through and a warning is logged (at most once per `failure_backoff_s`, during
which the limiter does not even try, so an outage costs no latency). A Redis outage must
never take checkout down with it.

Client addresses: `client_ip` believes ``X-Forwarded-For`` only when the peer is a
trusted proxy, and then takes the right-most address that is not itself a trusted proxy
(everything left of it was written by the client and may be forged). IPv6 clients are
limited per /64 (`ip_subject`), the block one subscriber usually holds.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import ipaddress
import math
import re
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import Counter

from ..logging import get_logger
from .problem import TooManyRequests

log = get_logger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LIMITED = Counter("commerce_rate_limited_total", "Requests refused by a rate limit (429).", ["limit"])
DEGRADED = Counter(
    "commerce_rate_limit_unavailable_total", "Rate-limit checks skipped because Redis was unreachable (failed open)."
)

#: KEYS: one per limit. ARGV: per limit, its emission interval (µs) and burst (requests).
#: Returns {allowed 0|1, retry after (µs), 1-based index of the refusing limit or 0,
#: requests left before the tightest limit refuses}.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new_tats = {}
local retry, refused, left = 0, 0, -1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - burst * interval
  if now < allow_at then
    if allow_at - now > retry then
      retry = allow_at - now
      refused = i
    end
  else
    new_tats[i] = new_tat
    local n = math.floor((now - allow_at) / interval)
    if left < 0 or n < left then left = n end
  end
end
if refused > 0 then
  return {0, math.ceil(retry), refused, 0}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]), 'PX', math.ceil((new_tats[i] - now) / 1000) + 1)
end
return {1, 0, 0, left}
"""


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``period_s`` seconds (all of them at once, at most);
    a limit of 0 means no limit."""

    limit: int
    period_s: float

    @property
    def enabled(self) -> bool:
        return self.limit > 0 and self.period_s > 0

    @property
    def interval_us(self) -> int:
        return max(1, round(self.period_s * 1_000_000 / self.limit))


@dataclass(frozen=True, slots=True)
class Limit:
    name: str  # e.g. "open-ip": the key space, and the label of the 429 metric
    subject: str  # e.g. the client's address
    rate: Rate


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: Seconds until the refusing limit admits one request (0 when allowed).
    retry_after_s: float = 0.0
    #: Name of the limit that refused.
    limit: str | None = None
    #: Requests left before the tightest limit refuses (None when not known).
    remaining: int | None = None
    #: True when Redis could not be asked and the request was let through.
    degraded: bool = False

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after_s)))


_PLAIN = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")


def _subject(value: str) -> str:
    if _PLAIN.match(value):
        return value
    return "h-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class RedisReplyError(Exception):
    """An error reply of Redis (``-ERR …``, ``-NOSCRIPT …``)."""


class _Incomplete(Exception):
    pass


def _parse(buf: bytearray, pos: int) -> tuple[object, int]:
    """One RESP2 reply from ``buf`` at ``pos``: (value, next position); _Incomplete if
    the buffer does not hold all of it yet."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, pos = buf[pos], bytes(buf[pos + 1 : end]), end + 2
    if kind == 0x3A:  # ":" integer
        return int(line), pos
    if kind == 0x2A:  # "*" array
        items = []
        for _ in range(int(line)):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == 0x2B:  # "+" simple string
        return line.decode(), pos
    if kind == 0x2D:  # "-" error
        return RedisReplyError(line.decode(errors="replace")), pos
    if kind == 0x24:  # "$" bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return bytes(buf[pos : pos + size]), pos + size + 2
    raise ConnectionError(f"unexpected Redis reply {bytes(buf[pos - len(line) - 3 : end])!r}")


def _command(*parts: str | bytes | int) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _RedisChannel(asyncio.Protocol):
    """One pipelined connection: commands are written as they come, replies matched to
    them in order. A few µs per command, where redis-py's client costs ~0.1 ms of CPU —
    the limiter runs on every buyer request, so that is worth its fifty lines."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.buffer = bytearray()
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        while self.waiters:
            try:
                value, pos = _parse(self.buffer, pos)
            except _Incomplete:
                break
            except (ValueError, ConnectionError) as exc:
                self.close(ConnectionError(f"bad reply from Redis: {exc}"))
                return
            waiter = self.waiters.popleft()
            if not waiter.done():  # (a caller that timed out has gone)
                waiter.set_result(value)
        if pos:
            del self.buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(ConnectionError(f"Redis connection lost: {exc!r}"))

    def close(self, error: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def call(self, payload: bytes) -> asyncio.Future:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionError("Redis connection closed")
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.transport.write(payload)
        return waiter


async def _open_channel(url: str) -> _RedisChannel:
    """Connect to ``redis://[user:password@]host[:port][/db]`` (or ``rediss://`` for TLS,
    ``unix:///path?db=N``), authenticate and select the database."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    loop = asyncio.get_running_loop()
    if parts.scheme == "unix":
        _, channel = await loop.create_unix_connection(_RedisChannel, parts.path)
        db = int(query.get("db", ["0"])[0])
    elif parts.scheme in ("redis", "rediss"):
        _, channel = await loop.create_connection(
            _RedisChannel, parts.hostname or "localhost", parts.port or 6379, ssl=parts.scheme == "rediss"
        )
        db = int((parts.path or "/").lstrip("/") or query.get("db", ["0"])[0])
    else:
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
    replies = []
    if parts.password is not None:
        user = [urllib.parse.unquote(parts.username)] if parts.username else []
        replies.append(channel.call(_command("AUTH", *user, urllib.parse.unquote(parts.password))))
    if db:
        replies.append(channel.call(_command("SELECT", db)))
    for reply in replies:
        if isinstance(await reply, RedisReplyError):
            channel.close(ConnectionError("Redis refused AUTH/SELECT"))
            raise ConnectionError(f"Redis refused the connection set-up: {reply.result()}")
    return channel


class RateLimiter:
    """Checks limits in Redis; fails open. One instance per process (it keeps its Redis
    connection, the script's digest and the "Redis is down, don't try until …" state).

    ``backend``: a Redis URL (the limiter's own pipelined connection, `_RedisChannel`)
    or a redis-py asyncio client (its script helper; slower)."""

    def __init__(
        self,
        backend: str | aioredis.Redis,
        namespace: str,
        *,
        timeout_s: float = 0.25,
        failure_backoff_s: float = 1.0,
    ) -> None:
        self.url = backend if isinstance(backend, str) else None
        self.client = None if isinstance(backend, str) else backend
        self.prefix = f"{namespace}:ratelimit"
        self.timeout_s = timeout_s
        self.failure_backoff_s = failure_backoff_s
        self._script = self.client.register_script(_GCRA_LUA) if self.client is not None else None
        self._sha = hashlib.sha1(_GCRA_LUA.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        self._channel: _RedisChannel | None = None
        self._connecting = asyncio.Lock()
        self._skip_until = 0.0

    def key(self, limit: Limit) -> str:
        return f"{self.prefix}:{limit.name}:{_subject(limit.subject)}"

    async def _eval(self, keys: list[str], args: list[int]) -> list:
        if self._script is not None:
            return await self._script(keys=keys, args=args)
        channel = self._channel
        if channel is None or channel.closed:
            async with self._connecting:
                channel = self._channel
                if channel is None or channel.closed:
                    channel = self._channel = await _open_channel(self.url)
        reply = await channel.call(_command("EVALSHA", self._sha, len(keys), *keys, *args))
        if isinstance(reply, RedisReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await channel.call(_command("EVAL", _GCRA_LUA, len(keys), *keys, *args))
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def check(self, *limits: Limit) -> Decision:
        """Consume one request from every enabled limit, or from none if any refuses."""
        active = [limit for limit in limits if limit.rate.enabled]
        if not active:
            return Decision(True)
        if time.monotonic() < self._skip_until:
            DEGRADED.inc()
            return Decision(True, degraded=True)
        args: list[int] = []
        for limit in active:
            args += [limit.rate.interval_us, limit.rate.limit]
        try:
            async with asyncio.timeout(self.timeout_s):  # (wait_for would cost a task per check)
                allowed, retry_us, refused, left = await self._eval([self.key(limit) for limit in active], args)
        except (redis.exceptions.RedisError, RedisReplyError, OSError, TimeoutError, ValueError) as exc:
            self._skip_until = time.monotonic() + self.failure_backoff_s
            if self._channel is not None:  # a hung or broken connection: start afresh
                self._channel.close(ConnectionError("abandoned"))
                self._channel = None
            DEGRADED.inc()
            log.warning(
                "rate limits unavailable: letting requests through",
                error=repr(exc),
                retry_in_s=self.failure_backoff_s,
            )
            return Decision(True, degraded=True)
        if allowed:
            return Decision(True, remaining=int(left))
        name = active[int(refused) - 1].name
        LIMITED.labels(name).inc()
        return Decision(False, retry_after_s=int(retry_us) / 1_000_000, limit=name, remaining=0)

    async def enforce(self, *limits: Limit, detail: str = "Too many requests; retry later.") -> Decision:
        """`check`, raising a 429 `TooManyRequests` (with ``Retry-After``) when refused."""
        decision = await self.check(*limits)
        if not decision.allowed:
            raise TooManyRequests(
                math.ceil(decision.retry_after_s),
                detail,
                headers={"Retry-After": decision.retry_after_header},
                extra={"limit": decision.limit, "retry_after": max(1, math.ceil(decision.retry_after_s))},
            )
        return decision

    async def close(self) -> None:
        if self._channel is not None:
            self._channel.close(ConnectionError("closed"))
            self._channel = None


# -- client addresses ------------------------------------------------------------------------------
def parse_networks(spec: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1, 10.1.2.3"`` (or a list of such) -> networks; a bare address
    is a /32 (or /128). Raises ValueError on anything else."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> IPAddress | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # "[2001:db8::1]:443"
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # "192.0.2.1:8080"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, trusted: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


_PEERS: dict[tuple[str, tuple[IPNetwork, ...]], bool] = {}


def _untrusted_peer(peer: str, trusted: tuple[IPNetwork, ...]) -> bool:
    """Whether ``peer`` is a plain client address (memoised: peers are few and repeat)."""
    key = (peer, trusted)
    known = _PEERS.get(key)
    if known is None:
        address = _address(peer)
        known = address is not None and str(address) == peer and not _trusted(address, trusted)
        if len(_PEERS) > 4096:
            _PEERS.clear()
        _PEERS[key] = known
    return known


@dataclass(frozen=True, slots=True)
class ClientAddress:
    address: str
    #: True when the address is itself a trusted proxy: the request came from our own
    #: infrastructure, or through a proxy that did not say for whom.
    trusted: bool


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: tuple[IPNetwork, ...]) -> ClientAddress:
    """The client of a request whose TCP peer is ``peer`` and whose X-Forwarded-For
    header lines are ``forwarded_for``.

    Starting from the peer, walk X-Forwarded-For from the right while the hop is a trusted
    proxy; the first hop that is not is the client. A forged entry (left of the real
    client) is never reached, because the trusted proxy appended the real one after it.
    """
    if peer and _untrusted_peer(peer, trusted):
        return ClientAddress(peer, False)
    current = _address(peer or "")
    if current is None:
        return ClientAddress(peer or "unknown", False)
    if not _trusted(current, trusted):
        return ClientAddress(str(current), False)
    hops = [hop for line in forwarded_for for hop in line.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # garbage: stop at the last hop we can vouch for
            break
        current = address
        if not _trusted(current, trusted):
            return ClientAddress(str(current), False)
    return ClientAddress(str(current), True)


_DIRECT: dict[tuple[str | None, tuple[IPNetwork, ...]], ClientAddress] = {}


def client_ip(request, trusted: tuple[IPNetwork, ...]) -> ClientAddress:
    """`client_address` of an aiohttp request."""
    forwarded = request.headers.getall("X-Forwarded-For", [])
    if forwarded:
        return client_address(request.remote, forwarded, trusted)
    key = (request.remote, trusted)  # no header: the answer depends on the peer only
    found = _DIRECT.get(key)
    if found is None:
        if len(_DIRECT) > 4096:
            _DIRECT.clear()
        found = _DIRECT[key] = client_address(request.remote, (), trusted)
    return found


def ip_subject(address: str) -> str:
    """The rate-limit subject of a client address: IPv4 as is, IPv6 by its /64."""
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed) if parsed is not None else address
