"""The webhook and event-feed API of the notifications app (in process, real PostgreSQL):
/v1/webhook_endpoints (+ deliveries, retry) and /v1/events — fields, the secret shown
once, SSRF refusals naming ``url`` for live accounts, scopes, cursors, other accounts."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from services.notifications.app import create_app
from services.notifications.events_feed.tasks import feed_registry
from services.notifications.settings import NotificationsSettings
from services.notifications.webhooks.schemas import MAX_ENDPOINTS
from shared.accounts import apply_account_snapshot
from shared.config import CommonSettings
from shared.db import create_pool, tenant_tx
from shared.events import EventEnvelope
from shared.events.models import AccountSnapshot, ApiKeySnapshot
from shared.events.routing import FEED_ACTOR
from shared.inbox import HandlerContext, consume
from tests.support.client import Response

SCHEMA = "notifications"


@pytest.fixture(scope="module")
def settings(dsn, redis_url) -> NotificationsSettings:
    return NotificationsSettings(
        database_url=dsn(SCHEMA),
        database_owner_url=dsn(SCHEMA, owner=True),
        common=CommonSettings(
            broker_namespace=f"commerce-it-{uuid.uuid4().hex[:8]}", redis_url=redis_url, environment="test"
        ),
    )


@pytest.fixture(scope="module")
async def client(settings):
    async with TestClient(TestServer(create_app(settings))) as c:
        yield c


@pytest.fixture(scope="module")
async def ctx(settings):
    app = await create_pool(settings.database_url, application_name="it-webhook-api", max_size=4)
    owner = await create_pool(settings.database_owner_url, application_name="it-webhook-api-owner", max_size=2)
    redis = aioredis.from_url(settings.common.redis_url)
    yield HandlerContext("notifications", SCHEMA, settings, app, owner, redis, {})
    keys = [k async for k in redis.scan_iter(f"{settings.common.broker_namespace}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
    await app.close()
    await owner.close()


class Account:
    def __init__(self, client: TestClient, account_id: str, keys: dict[str, str]):
        self.client, self.id, self.keys = client, account_id, keys

    async def call(self, method: str, path: str, body=None, *, scope: str = "*") -> Response:
        headers = {"Authorization": f"Bearer {self.keys[scope]}"}
        async with self.client.request(method, path, json=body, headers=headers) as r:
            payload = await r.json(content_type=None)
            return Response(r.status, payload, r.headers)


SCOPES = ("*", "webhooks:read", "webhooks:write", "events:read", "emails:read")


async def account(ctx: HandlerContext, client: TestClient, *, test_mode: bool = True) -> Account:
    account_id = f"acct_api_{uuid.uuid4().hex[:12]}"
    keys = {scope: f"ck_test_{uuid.uuid4().hex}" for scope in SCOPES}
    snapshot = AccountSnapshot(
        id=account_id,
        version=1,
        name="Hooks API",
        test_mode=test_mode,
        settings={},
        clock_offset_us=0,
        api_keys=[
            ApiKeySnapshot(
                id=f"key_{uuid.uuid4().hex[:10]}",
                prefix=key[:12],
                key_hash=hashlib.sha256(key.encode()).hexdigest(),
                scopes=[scope],
            )
            for scope, key in keys.items()
        ],
    )
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        await apply_account_snapshot(conn, SCHEMA, snapshot)
    return Account(client, account_id, keys)


async def publish(ctx: HandlerContext, account_id: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        env = EventEnvelope(
            id=f"evt_{uuid.uuid4().hex}",
            type="contact.upserted",
            version=1,
            account_id=account_id,
            producer="crm_sync",
            occurred_at=datetime.now(UTC),
            data={"contact_id": f"contact_{n}", "email": f"c{n}@example.com"},
        ).model_dump(mode="json")
        await consume(ctx, feed_registry.handlers[FEED_ACTOR], env)
        ids.append(env["id"])
    return ids


def problem(response: Response, status: int, field: str | None = None) -> dict:
    assert response.status == status, response.body
    assert response.headers["Content-Type"].startswith("application/problem+json")
    if field is not None:
        assert field in [e["field"] for e in response.body["errors"]], response.body
    return response.body


HOOK = "http://127.0.0.1:9/hooks"


# -- endpoints -------------------------------------------------------------------------------------
async def test_create_shows_the_secret_once(ctx, client):
    a = await account(ctx, client)
    made = await a.call("POST", "/v1/webhook_endpoints", {"url": HOOK, "events": ["payment.succeeded"]})
    assert made.status == 201, made.body
    body = made.body
    assert body["id"].startswith("we_") and body["object"] == "webhook_endpoint"
    assert body["url"] == HOOK and body["events"] == ["payment.succeeded"] and body["status"] == "enabled"
    assert body["secret"].startswith("whsec_") and len(body["secret"]) >= 40
    assert body["failing"] is False and body["pending_deliveries"] == 0 and body["next_attempt_at"] is None
    read = await a.call("GET", f"/v1/webhook_endpoints/{body['id']}")
    assert read.status == 200 and read.body["secret"] is None
    assert {k: v for k, v in read.body.items() if k != "secret"} == {k: v for k, v in body.items() if k != "secret"}
    listed = await a.call("GET", "/v1/webhook_endpoints")
    assert [e["secret"] for e in listed.body["data"]] == [None]
    async with ctx.owner_pool.acquire() as conn:  # stored encrypted, not in clear
        stored = await conn.fetchval(
            f"SELECT secret_encrypted FROM {SCHEMA}.webhook_endpoints WHERE id = $1", body["id"]
        )
    assert body["secret"] not in stored


async def test_a_merchant_may_bring_its_own_secret(ctx, client):
    a = await account(ctx, client)
    secret = "my-own-secret-that-is-long-enough"
    made = await a.call("POST", "/v1/webhook_endpoints", {"url": HOOK, "events": ["*"], "secret": secret})
    assert made.status == 201 and made.body["secret"] == secret
    for bad in ("short", "has spaces in it but long enough", "é" * 30):
        problem(
            await a.call("POST", "/v1/webhook_endpoints", {"url": HOOK, "events": ["*"], "secret": bad}), 422, "secret"
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["*"]}, "url"),
        ({"url": HOOK}, "events"),
        ({"url": HOOK, "events": []}, "events"),
        ({"url": HOOK, "events": ["payment.succeded"]}, "events[0]"),
        ({"url": HOOK, "events": ["account.updated"]}, "events[0]"),  # internal: never sent
        ({"url": HOOK, "events": ["*"], "status": "enabled"}, "status"),
        ({"url": HOOK, "events": ["*"], "account_id": "acct_x"}, "account_id"),
        ({"url": "ftp://127.0.0.1/", "events": ["*"]}, "url"),
        ({"url": "http://10.0.0.1/hooks", "events": ["*"]}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data", "events": ["*"]}, "url"),
        ({"url": "http://[::ffff:192.168.0.1]/", "events": ["*"]}, "url"),
        ({"url": "http://no-such-host.invalid/", "events": ["*"]}, "url"),
        ({"url": HOOK, "events": ["*"], "description": " "}, "description"),
    ],
)
async def test_bad_endpoints_are_refused_naming_the_field(ctx, client, body, field):
    a = await account(ctx, client)
    problem(await a.call("POST", "/v1/webhook_endpoints", body), 422, field)
    assert (await a.call("GET", "/v1/webhook_endpoints")).body["data"] == []


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://8.8.8.8/hooks", "https://"),
        ("https://127.0.0.1/hooks", "loopback"),
        ("https://localhost:8443/hooks", "localhost"),
        ("https://[::1]/hooks", "loopback"),
        ("https://10.0.0.1/hooks", "private"),
        ("https://192.168.1.20/hooks", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://100.64.0.1/hooks", "carrier-grade NAT"),
        ("https://0.0.0.0/hooks", "unspecified"),
        ("https://[fd00::1]/hooks", "unique local"),
        ("https://[::ffff:127.0.0.1]/hooks", "loopback"),
        ("https://2130706433/hooks", "canonical"),
    ],
)
async def test_a_live_account_may_only_target_public_https(ctx, client, url, words):
    live = await account(ctx, client, test_mode=False)
    body = problem(await live.call("POST", "/v1/webhook_endpoints", {"url": url, "events": ["*"]}), 422, "url")
    assert words in " ".join(e["message"] for e in body["errors"]), body
    assert (await live.call("GET", "/v1/webhook_endpoints")).body["data"] == []


async def test_a_live_account_may_register_a_public_https_address(ctx, client):
    live = await account(ctx, client, test_mode=False)
    made = await live.call("POST", "/v1/webhook_endpoints", {"url": "https://8.8.8.8/hooks", "events": ["*"]})
    assert made.status == 201, made.body
    moved = await live.call("PATCH", f"/v1/webhook_endpoints/{made.body['id']}", {"url": "https://127.0.0.1/x"})
    problem(moved, 422, "url")
    assert (await live.call("GET", f"/v1/webhook_endpoints/{made.body['id']}")).body["url"] == "https://8.8.8.8/hooks"


async def test_patch_delete_and_the_endpoint_limit(ctx, client):
    a = await account(ctx, client)
    made = (await a.call("POST", "/v1/webhook_endpoints", {"url": HOOK, "events": ["*"], "description": "x"})).body
    path = f"/v1/webhook_endpoints/{made['id']}"
    changed = await a.call("PATCH", path, {"events": ["payment.failed", "payment.failed"], "description": None})
    assert changed.status == 200 and changed.body["events"] == ["payment.failed"]
    assert changed.body["description"] is None and changed.body["secret"] is None
    assert (await a.call("PATCH", path, {"status": "disabled"})).body["status"] == "disabled"
    problem(await a.call("PATCH", path, {"url": None}), 422, "url")
    problem(await a.call("PATCH", path, {"url": "http://192.168.0.1/"}), 422, "url")
    problem(await a.call("PATCH", path, {"secret": "whsec_xxxxxxxxxxxxxxxxxxxxxxxxxxxx"}), 422, "secret")
    deleted = await a.call("DELETE", path)
    assert deleted.status == 200 and deleted.body == {"id": made["id"], "object": "webhook_endpoint", "deleted": True}
    problem(await a.call("GET", path), 404)
    problem(await a.call("DELETE", path), 404)
    for _ in range(MAX_ENDPOINTS):
        assert (await a.call("POST", "/v1/webhook_endpoints", {"url": HOOK, "events": ["*"]})).status == 201
    problem(await a.call("POST", "/v1/webhook_endpoints", {"url": HOOK, "events": ["*"]}), 409)
    listed = await a.call("GET", "/v1/webhook_endpoints?limit=10")
    assert len(listed.body["data"]) == 10 and listed.body["has_more"] is True
    rest = await a.call("GET", f"/v1/webhook_endpoints?limit=10&starting_after={listed.body['data'][-1]['id']}")
    ids = [e["id"] for e in listed.body["data"] + rest.body["data"]]
    assert len(ids) == MAX_ENDPOINTS == len(set(ids)) and ids == sorted(ids, reverse=True)


async def test_rotating_the_secret_shows_the_new_one_once(ctx, client):
    a, b = await account(ctx, client), await account(ctx, client)
    made = (await a.call("POST", "/v1/webhook_endpoints", {"url": HOOK, "events": ["*"]})).body
    assert made["previous_secret_expires_at"] is None
    rotated = await a.call("POST", f"/v1/webhook_endpoints/{made['id']}/rotate_secret")
    assert rotated.status == 200, rotated.body
    assert rotated.body["secret"].startswith("whsec_") and rotated.body["secret"] != made["secret"]
    read = (await a.call("GET", f"/v1/webhook_endpoints/{made['id']}")).body
    assert read["secret"] is None and read["previous_secret_expires_at"] == rotated.body["previous_secret_expires_at"]
    expires = datetime.fromisoformat(read["previous_secret_expires_at"].replace("Z", "+00:00"))
    assert 23 * 3600 < (expires - datetime.now(UTC)).total_seconds() <= 24 * 3600
    problem(await b.call("POST", f"/v1/webhook_endpoints/{made['id']}/rotate_secret"), 404)
    problem(await a.call("POST", f"/v1/webhook_endpoints/{made['id']}/rotate_secret", scope="webhooks:read"), 403)


# -- the delivery log and the feed --------------------------------------------------------------------
async def test_the_delivery_log(ctx, client):
    a = await account(ctx, client)
    made = (await a.call("POST", "/v1/webhook_endpoints", {"url": HOOK, "events": ["contact.upserted"]})).body
    ids = await publish(ctx, a.id, 3)
    path = f"/v1/webhook_endpoints/{made['id']}/deliveries"
    log = await a.call("GET", path)
    assert log.status == 200 and log.body["has_more"] is False
    assert [d["event_id"] for d in log.body["data"]] == ids[::-1]  # newest first
    first = log.body["data"][-1]
    assert first["object"] == "webhook_delivery" and first["endpoint_id"] == made["id"]
    assert first["status"] == "pending" and first["attempts"] == 0 and first["event_type"] == "contact.upserted"
    page = await a.call("GET", f"{path}?limit=1&starting_after={log.body['data'][0]['id']}")
    assert [d["event_id"] for d in page.body["data"]] == [ids[1]] and page.body["has_more"] is True
    assert [d["event_id"] for d in (await a.call("GET", f"{path}?event_id={ids[0]}")).body["data"]] == [ids[0]]
    assert (await a.call("GET", f"{path}?status=delivered")).body["data"] == []
    problem(await a.call("GET", f"{path}?starting_after=whdel_nope"), 422, "starting_after")
    problem(await a.call("GET", f"{path}?status=lost"), 422, "status")
    endpoint = (await a.call("GET", f"/v1/webhook_endpoints/{made['id']}")).body
    assert endpoint["pending_deliveries"] == 3 and endpoint["next_attempt_at"] is not None
    retried = await a.call("POST", f"/v1/webhook_endpoints/{made['id']}/retry")
    assert retried.status == 200 and retried.body["pending_deliveries"] == 3
    problem(await a.call("GET", "/v1/webhook_endpoints/we_nope/deliveries"), 404)
    problem(await a.call("POST", "/v1/webhook_endpoints/we_nope/retry"), 404)


async def test_the_event_feed_is_a_cursor_oldest_first(ctx, client):
    a = await account(ctx, client)
    ids = await publish(ctx, a.id, 5)
    feed = await a.call("GET", "/v1/events", scope="events:read")
    assert feed.status == 200 and [e["id"] for e in feed.body["data"]] == ids and feed.body["has_more"] is False
    event = feed.body["data"][0]
    assert set(event) == {"id", "object", "type", "version", "created_at", "data"}
    assert event["type"] == "contact.upserted" and event["data"]["contact_id"] == "contact_0"
    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&starting_after={cursor}" if cursor else "")
        page = (await a.call("GET", "/v1/events" + query, scope="events:read")).body
        seen += [e["id"] for e in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert seen == ids
    tail = await a.call("GET", f"/v1/events?starting_after={ids[-1]}", scope="events:read")
    assert tail.body == {"object": "list", "data": [], "has_more": False}
    later = await publish(ctx, a.id, 1)
    assert [e["id"] for e in (await a.call("GET", f"/v1/events?starting_after={ids[-1]}")).body["data"]] == later


async def test_another_accounts_cursor_is_unknown_and_its_objects_are_404(ctx, client):
    a, b = await account(ctx, client), await account(ctx, client)
    a_events = await publish(ctx, a.id, 2)
    b_events = await publish(ctx, b.id, 1)
    made = (await a.call("POST", "/v1/webhook_endpoints", {"url": HOOK, "events": ["*"]})).body
    foreign = await b.call("GET", f"/v1/events?starting_after={a_events[0]}")
    missing = await b.call("GET", "/v1/events?starting_after=evt_00000000000000000000000000")
    assert problem(foreign, 422, "starting_after") == problem(missing, 422, "starting_after")
    assert [e["id"] for e in (await b.call("GET", "/v1/events")).body["data"]] == b_events
    for method, path in (
        ("GET", f"/v1/webhook_endpoints/{made['id']}"),
        ("PATCH", f"/v1/webhook_endpoints/{made['id']}"),
        ("DELETE", f"/v1/webhook_endpoints/{made['id']}"),
        ("POST", f"/v1/webhook_endpoints/{made['id']}/retry"),
        ("GET", f"/v1/webhook_endpoints/{made['id']}/deliveries"),
    ):
        body = {"events": ["payment.failed"]} if method == "PATCH" else None
        problem(await b.call(method, path, body), 404)
    assert (await b.call("GET", "/v1/webhook_endpoints")).body["data"] == []
    mine = await a.call("GET", f"/v1/webhook_endpoints/{made['id']}")
    assert mine.status == 200 and mine.body["events"] == ["*"]


@pytest.mark.parametrize(
    ("scope", "allowed", "refused"),
    [
        (
            "webhooks:read",
            [("GET", "/v1/webhook_endpoints")],
            [("POST", "/v1/webhook_endpoints"), ("GET", "/v1/events")],
        ),
        (
            "webhooks:write",
            [("GET", "/v1/webhook_endpoints"), ("POST", "/v1/webhook_endpoints")],
            [("GET", "/v1/events")],
        ),
        ("events:read", [("GET", "/v1/events")], [("GET", "/v1/webhook_endpoints"), ("POST", "/v1/webhook_endpoints")]),
        ("emails:read", [], [("GET", "/v1/events"), ("GET", "/v1/webhook_endpoints")]),
    ],
)
async def test_scopes(ctx, client, scope, allowed, refused):
    a = await account(ctx, client)
    body = {"url": HOOK, "events": ["*"]}
    for method, path in allowed:
        r = await a.call(method, path, body if method == "POST" else None, scope=scope)
        assert r.status in (200, 201), (scope, method, path, r.body)
    for method, path in refused:
        problem(await a.call(method, path, body if method == "POST" else None, scope=scope), 403)
    async with client.get("/v1/events") as r:
        assert r.status == 401
