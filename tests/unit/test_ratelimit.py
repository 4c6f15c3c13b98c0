"""The rate limiter (shared/web/ratelimit.py) against a real Redis, and client addresses."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from shared.web.problem import TooManyRequests
from shared.web.ratelimit import (
    Decision,
    Limit,
    Rate,
    RateLimiter,
    client_address,
    ip_subject,
    parse_networks,
)

LOOPBACK = parse_networks("127.0.0.0/8, ::1")


@pytest.fixture
async def redis_client(redis_url):
    client = aioredis.from_url(redis_url, socket_timeout=5)
    yield client
    await client.aclose()


@pytest.fixture(params=["own-connection", "redis-py"])
async def limiter(request, redis_client, redis_url):
    """The limiter on its own pipelined connection (what the services use), and on a
    redis-py client."""
    namespace = f"commerce-unit-{uuid.uuid4().hex[:8]}"
    # A generous timeout: these tests count admissions, and a check that fails open on a
    # loaded machine (a redis-py pool opening 50 connections at once) would be counted as
    # admitted. Failing open has its own tests below.
    client = redis_url if request.param == "own-connection" else redis_client
    limiter = RateLimiter(client, namespace, timeout_s=10.0)
    yield limiter
    await limiter.close()
    keys = [k async for k in redis_client.scan_iter(match=f"{namespace}:*")]
    if keys:
        await redis_client.delete(*keys)


async def test_a_burst_of_the_limit_passes_then_429_with_retry_after(limiter):
    rate = Rate(5, 60)  # 5 at once, then one every 12 s
    decisions = [await limiter.check(Limit("open-ip", "192.0.2.1", rate)) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[5]
    assert refused.limit == "open-ip"
    assert 11.0 < refused.retry_after_s <= 12.0
    assert refused.retry_after_header == "12"


async def test_the_budget_refills_evenly_over_the_period(limiter):
    rate = Rate(4, 0.4)  # one every 100 ms
    limit = Limit("submit-session", "s1", rate)
    assert all([(await limiter.check(limit)).allowed for _ in range(4)])
    refused = await limiter.check(limit)
    assert not refused.allowed and 0 < refused.retry_after_s <= 0.1
    await asyncio.sleep(refused.retry_after_s + 0.02)
    assert (await limiter.check(limit)).allowed
    assert not (await limiter.check(limit)).allowed


async def test_subjects_and_limits_are_independent(limiter):
    rate = Rate(2, 60)
    for _ in range(2):
        assert (await limiter.check(Limit("open-link", "link-a", rate))).allowed
    assert not (await limiter.check(Limit("open-link", "link-a", rate))).allowed
    assert (await limiter.check(Limit("open-link", "link-b", rate))).allowed
    assert (await limiter.check(Limit("open-ip", "link-a", rate))).allowed


async def test_a_refused_request_consumes_no_budget_of_its_other_limits(limiter):
    per_ip, per_link = Rate(2, 60), Rate(5, 60)
    for _ in range(2):
        assert (await limiter.check(Limit("ip", "flooder", per_ip), Limit("link", "L", per_link))).allowed
    for _ in range(20):  # the flood is refused by its IP limit ...
        decision = await limiter.check(Limit("ip", "flooder", per_ip), Limit("link", "L", per_link))
        assert not decision.allowed and decision.limit == "ip"
    # ... and has used only 2 of the link's 5: three other buyers still get in
    for buyer in ("b1", "b2", "b3"):
        assert (await limiter.check(Limit("ip", buyer, per_ip), Limit("link", "L", per_link))).allowed
    decision = await limiter.check(Limit("ip", "b4", per_ip), Limit("link", "L", per_link))
    assert not decision.allowed and decision.limit == "link"


async def test_the_longest_wait_is_reported_when_several_limits_refuse(limiter):
    short, long = Rate(1, 1), Rate(1, 100)
    assert (await limiter.check(Limit("a", "x", short), Limit("b", "x", long))).allowed
    decision = await limiter.check(Limit("a", "x", short), Limit("b", "x", long))
    assert not decision.allowed and decision.limit == "b" and decision.retry_after_s > 90


async def test_concurrent_checks_admit_exactly_the_limit(limiter):
    limit = Limit("open-link", "hot", Rate(10, 3600))  # no token comes back during the burst, however slow
    decisions = await asyncio.gather(*(limiter.check(limit) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10


async def test_keys_are_namespaced_and_expire(limiter, redis_client):
    await limiter.check(Limit("open-ip", "198.51.100.7", Rate(10, 2)))
    key = limiter.key(Limit("open-ip", "198.51.100.7", Rate(10, 2)))
    assert key == f"{limiter.prefix}:open-ip:198.51.100.7"
    assert key.startswith("commerce-unit-")
    ttl = await redis_client.pttl(key)
    assert 0 < ttl <= 2 * 1000 // 10 + 2  # until the one request no longer counts


async def test_odd_subjects_are_hashed(limiter):
    slug = "a" * 500 + "/ünïcode \n"
    key = limiter.key(Limit("open-link", slug, Rate(1, 1)))
    assert len(key) < len(limiter.prefix) + 60 and "\n" not in key
    assert (await limiter.check(Limit("open-link", slug, Rate(1, 60)))).allowed
    assert not (await limiter.check(Limit("open-link", slug, Rate(1, 60)))).allowed


async def test_a_zero_limit_is_off_and_does_not_touch_redis():
    broken = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    limiter = RateLimiter(broken, "x")
    decision = await limiter.check(Limit("open-ip", "1.2.3.4", Rate(0, 60)))
    assert decision == Decision(True)
    await broken.aclose()


async def test_enforce_raises_a_429_problem_with_retry_after(limiter):
    limit = Limit("submit-ip", "203.0.113.9", Rate(1, 30))
    await limiter.enforce(limit)
    with pytest.raises(TooManyRequests) as raised:
        await limiter.enforce(limit)
    response = raised.value.to_response()
    assert response.status == 429
    assert response.content_type == "application/problem+json"
    assert 1 <= int(response.headers["Retry-After"]) <= 30
    assert raised.value.body()["limit"] == "submit-ip"


@pytest.mark.parametrize("backend", ["own-connection", "redis-py"])
async def test_fails_open_when_redis_is_unreachable_and_backs_off(backend):
    from devtools.infra import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    client = aioredis.from_url(url, socket_connect_timeout=0.5)
    limiter = RateLimiter(url if backend == "own-connection" else client, "x", failure_backoff_s=30)
    limit = Limit("open-ip", "1.2.3.4", Rate(1, 60))
    first = await limiter.check(limit)
    assert first.allowed and first.degraded
    began = time.monotonic()
    for _ in range(100):  # inside the back-off: not even tried
        assert (await limiter.check(limit)).degraded
    assert time.monotonic() - began < 0.1
    await client.aclose()


@pytest.mark.parametrize("backend", ["own-connection", "redis-py"])
async def test_fails_open_quickly_when_redis_hangs(backend):
    async def silent(reader, writer):  # accepts, reads, never answers
        await reader.read(1 << 16)
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.from_url(url, socket_timeout=5)
    limiter = RateLimiter(url if backend == "own-connection" else client, "x", timeout_s=0.2)
    began = time.monotonic()
    decision = await limiter.check(Limit("open-ip", "1.2.3.4", Rate(1, 60)))
    assert decision.allowed and decision.degraded
    assert time.monotonic() - began < 1.5
    server.close()
    await client.aclose()
    await limiter.close()


async def test_the_connection_is_reopened_after_redis_comes_back(redis_client, redis_url):
    namespace = f"commerce-unit-{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(redis_url, namespace, failure_backoff_s=0.05)
    limit = Limit("open-ip", "1.2.3.4", Rate(3, 60))
    assert (await limiter.check(limit)) == Decision(True, remaining=2)
    limiter._channel.transport.abort()  # as when Redis restarts
    await asyncio.sleep(0.01)
    assert (await limiter.check(limit)) == Decision(True, remaining=1)  # a new connection, same state
    await limiter.close()
    await redis_client.delete(limiter.key(limit))


async def test_a_script_flushed_from_redis_is_loaded_again(redis_client, redis_url):
    namespace = f"commerce-unit-{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(redis_url, namespace)
    limit = Limit("open-ip", "1.2.3.4", Rate(3, 60))
    await limiter.check(limit)
    await redis_client.script_flush()  # (as after a Redis restart)
    assert (await limiter.check(limit)) == Decision(True, remaining=1)
    await limiter.close()
    await redis_client.delete(limiter.key(limit))


async def test_the_database_of_the_url_is_used(redis_url):
    base = redis_url.rsplit("/", 1)[0]
    namespace = f"commerce-unit-{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(f"{base}/3", namespace)
    limit = Limit("open-ip", "1.2.3.4", Rate(3, 60))
    await limiter.check(limit)
    db3 = aioredis.from_url(f"{base}/3")
    assert await db3.exists(limiter.key(limit))
    await db3.delete(limiter.key(limit))
    await db3.aclose()
    await limiter.close()


async def test_checks_again_after_the_backoff(redis_client, redis_url):
    namespace = f"commerce-unit-{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(redis_client, namespace, failure_backoff_s=0.05)
    limiter._skip_until = time.monotonic() + 0.05  # as after a failure
    limit = Limit("open-ip", "1.2.3.4", Rate(1, 60))
    assert (await limiter.check(limit)).degraded
    await asyncio.sleep(0.06)
    assert (await limiter.check(limit)) == Decision(True, remaining=0)
    assert not (await limiter.check(limit)).allowed
    await redis_client.delete(limiter.key(limit))


# -- client addresses ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "xff", "expected", "trusted"),
    [
        # a direct client: its forged header is ignored
        ("203.0.113.5", ["1.2.3.4"], "203.0.113.5", False),
        # through a trusted proxy: the hop the proxy appended
        ("127.0.0.1", ["198.51.100.20"], "198.51.100.20", False),
        # a forged entry left of the real client is never reached
        ("127.0.0.1", ["6.6.6.6, 198.51.100.20"], "198.51.100.20", False),
        ("127.0.0.1", ["6.6.6.6", "198.51.100.20"], "198.51.100.20", False),
        # two trusted proxies in a row
        ("127.0.0.1", ["198.51.100.20, 127.0.0.1"], "198.51.100.20", False),
        # a trusted proxy that did not say for whom: the proxy itself (trusted)
        ("127.0.0.1", [], "127.0.0.1", True),
        # the client is on a trusted address itself: it may write anything left of it,
        # so garbage stops the walk at the last hop we can vouch for
        ("127.0.0.1", ["not-an-ip, 127.0.0.1"], "127.0.0.1", True),
        ("127.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1", False),
        ("127.0.0.1", ["192.0.2.9:8080"], "192.0.2.9", False),
        ("::ffff:127.0.0.1", ["192.0.2.9"], "192.0.2.9", False),
        ("::1", ["2001:db8::7"], "2001:db8::7", False),
        (None, ["192.0.2.9"], "unknown", False),
    ],
)
def test_client_address(peer, xff, expected, trusted):
    found = client_address(peer, xff, LOOPBACK)
    assert (found.address, found.trusted) == (expected, trusted)


def test_only_the_configured_proxies_are_trusted():
    only_gateway = parse_networks("127.0.0.1")
    assert client_address("127.0.0.1", ["127.0.0.3"], only_gateway).address == "127.0.0.3"
    assert client_address("127.0.0.2", ["9.9.9.9"], only_gateway).address == "127.0.0.2"
    assert client_address("10.0.0.5", ["192.0.2.1"], parse_networks(["10.0.0.0/8"])).address == "192.0.2.1"


def test_parse_networks_refuses_garbage():
    assert parse_networks("") == ()
    with pytest.raises(ValueError):
        parse_networks("127.0.0.1, localhost")


def test_ipv6_clients_are_limited_per_64():
    assert ip_subject("2001:db8:1:2:aaaa::1") == ip_subject("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert ip_subject("2001:db8:1:3::1") != ip_subject("2001:db8:1:2::1")
    assert ip_subject("192.0.2.1") == "192.0.2.1"


def test_client_ip_of_a_request():
    from types import SimpleNamespace

    from multidict import CIMultiDict

    from shared.web.ratelimit import client_ip

    def request(remote, *xff):
        return SimpleNamespace(remote=remote, headers=CIMultiDict(("X-Forwarded-For", v) for v in xff))

    only_gateway = parse_networks("127.0.0.1")
    for _ in range(2):  # (the answer for a peer without the header is memoised)
        assert client_ip(request("127.0.0.1"), only_gateway) == client_address("127.0.0.1", [], only_gateway)
        assert client_ip(request("127.0.0.9"), only_gateway).address == "127.0.0.9"
    assert client_ip(request("127.0.0.1", "1.1.1.1", "127.0.0.9"), only_gateway).address == "127.0.0.9"
    assert client_ip(request("127.0.0.9", "1.1.1.1"), only_gateway).address == "127.0.0.9"
