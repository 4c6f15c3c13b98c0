"""TARGETS R11: card-testing floods on session creation and checkout submission.

A stack of its own with low thresholds (StackConfig.extra_env), so the floods are short.
Clients are told apart by their source address: Linux routes all of 127.0.0.0/8 to the
loopback interface, so each client binds its own 127.x.y.z. Only the router (which
connects from 127.0.0.1) is a trusted proxy here; every other address is a buyer (or an
attacker) whose X-Forwarded-For must not be believed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest

from devtools.stack import Ports, Stack, StackConfig
from tests.support.client import Api
from tests.support.processor import CheckoutTables, fake_event, sign
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

OPEN_PER_IP = 5
OPEN_PER_LINK = 30
SUBMIT_PER_IP = 8
SUBMIT_PER_SESSION = 4
WINDOW_S = 60
LINK = {
    "name": "R11 link",
    "currency": "USD",
    "line_items": [{"name": "Gift card", "quantity": 1, "unit_amount": 500}],
}


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory, infrastructure):
    from commerce_cli.database import drop_database

    pg, redis = infrastructure
    suffix = uuid.uuid4().hex[:8]
    config = StackConfig(
        run_dir=tmp_path_factory.mktemp("r11-stack"),
        database=f"commerce_r11_{suffix}",
        pg_admin_url=pg.admin_url(),
        redis_url=redis.url,
        namespace=f"commerce-test-r11-{suffix}",
        ports=Ports.free(),
        environment="test",
        extra_env={
            "CHECKOUT_RATE_LIMIT_OPEN_PER_IP": str(OPEN_PER_IP),
            "CHECKOUT_RATE_LIMIT_OPEN_PER_LINK": str(OPEN_PER_LINK),
            "CHECKOUT_RATE_LIMIT_SUBMIT_PER_IP": str(SUBMIT_PER_IP),
            "CHECKOUT_RATE_LIMIT_SUBMIT_PER_SESSION": str(SUBMIT_PER_SESSION),
            "CHECKOUT_RATE_LIMIT_WINDOW_S": str(WINDOW_S),
            "CHECKOUT_TRUSTED_PROXIES": "127.0.0.1/32",
            # small pools: this stack runs beside the session's, on a shared PostgreSQL
            **{f"{prefix}_DB_POOL_MAX": "4" for prefix in ("CHECKOUT", "BILLING", "NOTIFICATIONS", "CRM_SYNC")},
        },
    )
    stack = Stack(config)
    stack.prepare()
    try:
        stack.start(timeout=120)
        yield stack
    finally:
        stack.stop()
        asyncio.run(drop_database(pg.admin_url(), config.database))


@pytest.fixture(scope="module")
def shops(limited_stack):
    """Two accounts: the attacked one, and another one that must not notice."""
    return {"attacked": limited_stack.create_account("Attacked shop"), "other": limited_stack.create_account("Other")}


class Client:
    """A buyer (or an attacker) at its own source address."""

    def __init__(self, stack: Stack, address: str, *, direct: bool = False) -> None:
        self.stack, self.address = stack, address
        port = stack.config.ports.checkout if direct else stack.config.ports.gateway
        self.base = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=50),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    async def open(self, slug: str, headers: dict | None = None) -> tuple[int, dict, str, float]:
        began = time.monotonic()
        async with self.session.get(f"{self.base}/pay/{slug}", headers=headers, allow_redirects=False) as r:
            text = await r.text()
            return r.status, dict(r.headers), text, time.monotonic() - began

    async def page(self, location: str) -> int:
        async with self.session.get(self.base + location) as r:
            await r.read()
            return r.status

    async def post(self, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict, object]:
        async with self.session.post(self.base + path, json=body, headers=headers) as r:
            raw = await r.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            return r.status, dict(r.headers), parsed

    async def close(self) -> None:
        await self.session.close()


def _slug(link: dict) -> str:
    return link["url"].rsplit("/pay/", 1)[1]


async def _new_link(stack: Stack, account: dict) -> dict:
    async with aiohttp.ClientSession() as http:
        created = await Api(http, stack.config.base_url, account["api_key"]).post("/v1/payment_links", LINK)
    assert created.status == 201, created.body
    return created.body


def _assert_429(status: int, headers: dict, *, page: bool) -> None:
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= WINDOW_S
    expected = "text/html" if page else "application/problem+json"
    assert headers["Content-Type"].startswith(expected), headers["Content-Type"]


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@pytest.mark.timeout(600)
async def test_card_testing_flood_on_one_link_spares_other_accounts_and_webhooks(limited_stack, shops):
    stack = limited_stack
    attacked = _slug(await _new_link(stack, shops["attacked"]))
    other = _slug(await _new_link(stack, shops["other"]))

    attacker = Client(stack, "127.0.0.2")
    # a distributed part of the flood: many addresses, the same link
    botnet = [Client(stack, f"127.0.3.{i}") for i in range(1, 41)]
    # real buyers of another account, each at its own address
    buyers = [Client(stack, f"127.0.1.{i}") for i in range(1, 13)]
    processor = Client(stack, "127.0.0.4")
    results: dict[str, list] = {"single": [], "distributed": [], "other": [], "webhooks": []}
    flooding = asyncio.Event()

    async def flood_from_one_ip() -> None:
        gate = asyncio.Semaphore(20)
        began = time.monotonic()

        async def one() -> None:
            async with gate:
                results["single"].append(await attacker.open(attacked))

        flooding.set()
        await asyncio.gather(*(one() for _ in range(200)))
        results["flood_seconds"] = [time.monotonic() - began]

    async def flood_from_many_ips() -> None:
        await flooding.wait()
        for _ in range(2):
            outcomes = await asyncio.gather(*(bot.open(attacked) for bot in botnet))
            results["distributed"].extend(outcomes)

    async def other_account_buyers() -> None:
        await flooding.wait()
        for _ in range(2):  # each buyer opens the other account's link and loads the page
            for buyer in buyers:
                status, headers, _, seconds = await buyer.open(other)
                page = await buyer.page(headers["Location"]) if status == 303 else status
                results["other"].append((status, page, seconds))

    attacked_account = shops["attacked"]["account_id"]
    async with aiohttp.ClientSession() as http:
        settings = await Api(http, stack.config.base_url, shops["attacked"]["api_key"]).get("/v1/account/processor")
    secret = settings.body["webhook_secret"]
    webhook_url = f"{processor.base}/webhooks/stripe/{attacked_account}"

    async def webhooks() -> None:
        """The attacked account's processor keeps posting signed events during the flood."""
        await flooding.wait()
        for _ in range(30):
            body = fake_event(attacked_account)
            headers = {"Stripe-Signature": sign(body, secret), "Content-Type": "application/json"}
            async with processor.session.post(webhook_url, data=body, headers=headers) as r:
                await r.read()
                results["webhooks"].append(r.status)

    began = time.monotonic()
    try:
        await asyncio.gather(flood_from_one_ip(), flood_from_many_ips(), other_account_buyers(), webhooks())
        elapsed = time.monotonic() - began
        # the attacker's own address may still reach the webhook endpoint (never limited, but
        # unsigned: refused by its signature, 400)
        status, _, _ = await attacker.post(f"/webhooks/stripe/{attacked_account}", {"id": "evt_x"})
        assert status == 400
    finally:
        for client in (attacker, processor, *botnet, *buyers):
            await client.close()

    single = results["single"]
    opened = [r for r in single if r[0] == 303]
    limited = [r for r in single if r[0] == 429]
    # the threshold got through (plus what the budget refilled while the flood lasted)
    refill = int(results["flood_seconds"][0] * OPEN_PER_IP / WINDOW_S)
    assert OPEN_PER_IP <= len(opened) <= OPEN_PER_IP + refill, [r[0] for r in single]
    assert len(limited) == 200 - len(opened)
    for status, headers, text, _ in limited:
        _assert_429(status, headers, page=True)
        assert "Too many" in text

    distributed = results["distributed"]
    link_refill = int(elapsed * OPEN_PER_LINK / WINDOW_S) + 1
    assert len(opened) + sum(r[0] == 303 for r in distributed) <= OPEN_PER_LINK + link_refill  # the link's budget held
    assert any(r[0] == 429 for r in distributed)
    for status, headers, _, _ in distributed:
        assert status in (303, 429)
        if status == 429:
            _assert_429(status, headers, page=True)

    other_ok = [r for r in results["other"] if r[0] == 303 and r[1] == 200]
    latencies = [r[2] * 1000 for r in results["other"]]
    webhook_limited = sum(status == 429 for status in results["webhooks"])
    flood_total = len(single) + len(distributed)
    flood_limited = len(limited) + sum(r[0] == 429 for r in distributed)
    print(
        f"\nR11: flood requests={flood_total} limited={flood_limited} "
        f"other-account successes={len(other_ok)}/{len(results['other'])} "
        f"(p50 {_p(latencies, 0.5):.0f} ms, p99 {_p(latencies, 0.99):.0f} ms) "
        f"webhooks limited={webhook_limited} (of {len(results['webhooks'])}; "
        f"statuses {sorted(set(results['webhooks']))})"
    )
    assert len(other_ok) == len(results["other"]), results["other"]
    assert _p(latencies, 0.99) < 10_000  # generous: a shared, loaded machine
    assert webhook_limited == 0 and results["webhooks"] == [200] * 30, results["webhooks"]
    # ...and every signed event was stored and then processed by the worker
    async with CheckoutTables(stack.env["CHECKOUT_DATABASE_OWNER_URL"]) as tables:
        assert (await tables.counts(attacked_account))["processor_events"] == 30

        async def all_processed() -> bool:
            return await tables.unprocessed(attacked_account) == 0

        await eventually(all_processed, timeout=60)


@pytest.mark.timeout(300)
async def test_submissions_are_limited_per_session_and_per_ip(limited_stack, shops):
    stack = limited_stack
    slug = _slug(await _new_link(stack, shops["other"]))
    buyer = Client(stack, "127.0.0.5")
    neighbour = Client(stack, "127.0.0.6")
    try:
        sessions = []
        for _ in range(3):
            status, headers, _, _ = await buyer.open(slug)
            assert status == 303
            token = headers["Location"].rsplit("/", 1)[1]
            status, _, _ = await buyer.post(f"/api/checkout/{token}", {})  # no CSRF token: refused, counted
            assert status == 403
            async with buyer.session.get(f"{buyer.base}/api/checkout/{token}") as r:
                csrf = (await r.json())["csrf_token"]
            sessions.append((token, {"X-CSRF-Token": csrf}))
        token, csrf = sessions[0]
        invalid = {"contact": {}}  # refused by validation (422): cheap, and still an attempt
        statuses = [(await buyer.post(f"/api/checkout/{token}", invalid, csrf))[0] for _ in range(3)]
        assert statuses == [422, 422, 422]  # with the 403 above: the session's 4 attempts
        status, headers, body = await buyer.post(f"/api/checkout/{token}", invalid, csrf)
        _assert_429(status, headers, page=False)
        assert body["limit"] == "submit-session" and body["status"] == 429
        status, headers, body = await buyer.post(f"/api/checkout/{token}/complete", {}, csrf)
        _assert_429(status, headers, page=False)  # complete shares the session's budget

        # a second session from the same address: its own budget, until the IP's runs out
        token2, csrf2 = sessions[1]
        statuses = [(await buyer.post(f"/api/checkout/{token2}", invalid, csrf2))[0] for _ in range(3)]
        # attempts from this IP: 3 (403) + 3 (422) + 2 (422) = 8, so the third is refused by the IP limit
        assert statuses[:2] == [422, 422] and statuses[2] == 429, statuses
        status, headers, body = await buyer.post(f"/api/checkout/{sessions[2][0]}", invalid, sessions[2][1])
        _assert_429(status, headers, page=False)
        assert body["limit"] == "submit-ip"

        # another buyer at another address is not affected
        status, headers, _, _ = await neighbour.open(slug)
        assert status == 303
        token3 = headers["Location"].rsplit("/", 1)[1]
        async with neighbour.session.get(f"{neighbour.base}/api/checkout/{token3}") as r:
            csrf3 = {"X-CSRF-Token": (await r.json())["csrf_token"]}
        assert (await neighbour.post(f"/api/checkout/{token3}", invalid, csrf3))[0] == 422
    finally:
        await buyer.close()
        await neighbour.close()


@pytest.mark.timeout(300)
async def test_a_spoofed_x_forwarded_for_does_not_bypass_the_limit(limited_stack, shops):
    stack = limited_stack
    slug = _slug(await _new_link(stack, shops["other"]))
    direct = Client(stack, "127.0.0.7", direct=True)  # straight to the service port
    via_router = Client(stack, "127.0.0.8")  # through the router, which appends the real address
    try:
        for client in (direct, via_router):
            statuses = []
            for i in range(OPEN_PER_IP + 3):
                spoofed = {"X-Forwarded-For": f"203.0.113.{i + 1}, 127.0.0.1"}
                status, headers, _, _ = await client.open(slug, spoofed)
                statuses.append(status)
                if status == 429:
                    _assert_429(status, headers, page=True)
            assert statuses == [303] * OPEN_PER_IP + [429] * 3, (client.address, statuses)
    finally:
        await direct.close()
        await via_router.close()


@pytest.mark.timeout(300)
async def test_live_price_updates_have_their_own_budget(limited_stack, shops):
    """The page's live summary (``…/summary``) does not use up the budget of paying, and is
    itself limited (PRICING_FACTOR × the submission limits), so guessing discount codes
    through it stays bounded."""
    stack = limited_stack
    slug = _slug(await _new_link(stack, shops["other"]))
    buyer = Client(stack, "127.0.0.9")
    try:
        status, headers, _, _ = await buyer.open(slug)
        assert status == 303
        token = headers["Location"].rsplit("/", 1)[1]
        async with buyer.session.get(f"{buyer.base}/api/checkout/{token}") as r:
            csrf = {"X-CSRF-Token": (await r.json())["csrf_token"]}
        priced = [(await buyer.post(f"/api/checkout/{token}/summary", {"items": []}, csrf))[0] for _ in range(6)]
        assert priced == [200] * 6, priced  # more than the session's 4 submissions
        submitted = await buyer.post(f"/api/checkout/{token}", {"contact": {}}, csrf)
        assert submitted[0] == 422, submitted  # paying is still possible
        statuses = []
        for _ in range(SUBMIT_PER_SESSION * 5):
            status, headers, body = await buyer.post(f"/api/checkout/{token}/summary", {"items": []}, csrf)
            statuses.append(status)
            if status == 429:
                _assert_429(status, headers, page=False)
                assert body["limit"] in ("price-session", "price-ip"), body
        assert statuses.count(200) == SUBMIT_PER_SESSION * 5 - 6 and statuses.count(429) == 6, statuses
    finally:
        await buyer.close()
