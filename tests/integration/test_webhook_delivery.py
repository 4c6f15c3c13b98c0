"""Outbound webhooks against real PostgreSQL, Redis and a real HTTP receiver (PRODUCT §1,
§11; decisions 60–66): events consumed through the inbox land once in the feed with a
delivery per subscribed endpoint; drains send them signed, in order, retry the head with
backoff while later ones are held, replay them in order when the receiver recovers, and
refuse addresses the account may not reach at send time too."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from services.notifications.events_feed import repository as feed_repo
from services.notifications.events_feed.schemas import event_out
from services.notifications.events_feed.service import record_event
from services.notifications.events_feed.tasks import feed_registry
from services.notifications.settings import NotificationsSettings
from services.notifications.webhooks import repository as repo
from services.notifications.webhooks import ssrf
from services.notifications.webhooks.delivery import DrainDeps, drain
from services.notifications.webhooks.policy import RETRY_SCHEDULE_S
from services.notifications.webhooks.schemas import EndpointCreate
from services.notifications.webhooks.sender import AddressRefused, Sender, VettedResolver, resolve_host, vet_target
from services.notifications.webhooks.service import create_endpoint
from services.notifications.webhooks.tasks import DRAIN_ACTOR, sweep_once
from shared import webhook_signing as signing
from shared.accounts import apply_account_snapshot
from shared.config import CommonSettings
from shared.db import create_pool, tenant_tx
from shared.events import EventEnvelope
from shared.events.models import AccountSnapshot
from shared.events.routing import FEED_ACTOR
from shared.inbox import HandlerContext, consume
from shared.secrets import encrypt
from tests.support.webhooks import Receiver

SCHEMA = "notifications"
FAST = (1, 1, 1, 1)  # retry schedule of most tests here: one second


@pytest.fixture(scope="module")
async def ctx(dsn, redis_url):
    namespace = f"commerce-it-{uuid.uuid4().hex[:8]}"
    settings = NotificationsSettings(
        database_url=dsn(SCHEMA),
        database_owner_url=dsn(SCHEMA, owner=True),
        common=CommonSettings(broker_namespace=namespace, redis_url=redis_url, environment="test"),
    )
    app = await create_pool(settings.database_url, application_name="it-webhooks", min_size=1, max_size=8)
    owner = await create_pool(settings.database_owner_url, application_name="it-webhooks-owner", max_size=2)
    client = aioredis.from_url(redis_url)
    sender = Sender(connect_timeout=2.0, total_timeout=2.0)
    yield HandlerContext("notifications", SCHEMA, settings, app, owner, client, {"webhook_sender": sender})
    await sender.close()
    keys = [k async for k in client.scan_iter(f"{namespace}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    await app.close()
    await owner.close()


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
def kicks():
    return []


def deps(ctx: HandlerContext, kicks: list, schedule=FAST) -> DrainDeps:
    async def kick(account_id: str, endpoint_id: str) -> None:
        kicks.append(endpoint_id)

    return DrainDeps(
        ctx.app_pool, ctx.extras["webhook_sender"], ctx.settings.common, kick, lease_s=60, schedule=schedule
    )


async def new_account(ctx: HandlerContext, *, test_mode: bool = True) -> str:
    account_id = f"acct_wh_{uuid.uuid4().hex[:12]}"
    snapshot = AccountSnapshot(
        id=account_id, version=1, name="Hooks", test_mode=test_mode, settings={}, clock_offset_us=0, api_keys=[]
    )
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        await apply_account_snapshot(conn, SCHEMA, snapshot)
    return account_id


async def new_endpoint(ctx: HandlerContext, account_id: str, url: str, events=("*",)) -> tuple[str, str]:
    """(endpoint id, secret) — as the API makes it, the URL vetted for the account first."""
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        test_mode = await conn.fetchval(f"SELECT test_mode FROM {SCHEMA}.accounts WHERE id = $1", account_id)
    await vet_target(url, ssrf.Policy.for_account(test_mode), resolve_timeout=3)
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        row, secret = await create_endpoint(
            conn,
            ctx.settings.common,
            account_id=account_id,
            body=EndpointCreate(url=url, events=list(events)),
            now=datetime.now(UTC),
        )
    return row["id"], secret


def envelope(account_id: str, event_type: str = "payment.succeeded", n: int = 0) -> dict:
    data = {
        "payment_id": f"pay_{n}",
        "amount": 1000 + n,
        "currency": "USD",
        "method_type": "card",
        "source": {"type": "payment_link", "id": "plink_x"},
        "succeeded_at": datetime.now(UTC).isoformat(),
    }
    if event_type == "contact.upserted":
        data = {"contact_id": f"contact_{n}", "email": f"c{n}@example.com"}
    return EventEnvelope(
        id=f"evt_{uuid.uuid4().hex}",
        type=event_type,
        version=1,
        account_id=account_id,
        producer="checkout",
        occurred_at=datetime.now(UTC),
        data=data,
    ).model_dump(mode="json")


async def publish(ctx: HandlerContext, account_id: str, count: int = 1, event_type="payment.succeeded") -> list[str]:
    """Events consumed as the worker consumes them: inbox, feed, fan-out, then the kick."""
    ids = []
    for n in range(count):
        env = envelope(account_id, event_type, n)
        await consume(ctx, feed_registry.handlers[FEED_ACTOR], env)
        ids.append(env["id"])
    return ids


async def deliveries(ctx: HandlerContext, account_id: str, endpoint_id: str) -> list:
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        return await conn.fetch(
            f"SELECT * FROM {SCHEMA}.webhook_deliveries WHERE account_id = $1 AND endpoint_id = $2 ORDER BY seq",
            account_id,
            endpoint_id,
        )


async def endpoint(ctx: HandlerContext, account_id: str, endpoint_id: str):
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        return await conn.fetchrow(f"SELECT * FROM {SCHEMA}.webhook_endpoints WHERE id = $1", endpoint_id)


async def make_due(ctx: HandlerContext, account_id: str, endpoint_id: str) -> None:
    """The head's retry time has come (instead of waiting for it)."""
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        await repo.retry_now(conn, account_id, endpoint_id)


# -- the feed and the fan-out -----------------------------------------------------------------
async def test_an_event_is_recorded_once_with_one_delivery_per_subscribed_endpoint(ctx, receiver):
    account_id = await new_account(ctx)
    every, payments, contacts = [
        (await new_endpoint(ctx, account_id, receiver.url, events))[0]
        for events in (("*",), ("payment.succeeded", "payment.failed"), ("contact.upserted",))
    ]
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        await conn.execute(f"UPDATE {SCHEMA}.webhook_endpoints SET status = 'disabled' WHERE id = $1", contacts)
    (paid,) = await publish(ctx, account_id)
    env = envelope(account_id, "contact.upserted")
    for _ in range(3):  # the relay may deliver an event several times: the inbox absorbs the copies
        await consume(ctx, feed_registry.handlers[FEED_ACTOR], env)
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        feed = await feed_repo.list_after(conn, account_id, None, 10)
        made = await conn.fetch(
            f"SELECT endpoint_id, event_id FROM {SCHEMA}.webhook_deliveries WHERE account_id = $1", account_id
        )
    assert [r["event_id"] for r in feed] == [paid, env["id"]]
    assert event_out(feed[1])["data"] == env["data"]
    assert sorted((r["endpoint_id"], r["event_id"]) for r in made) == sorted(
        [(every, paid), (payments, paid), (every, env["id"])]
    )  # the disabled endpoint gets none


async def test_an_event_before_the_account_is_known_is_retried_not_lost(ctx):
    account_id = f"acct_wh_{uuid.uuid4().hex[:12]}"
    env = EventEnvelope.model_validate(envelope(account_id))
    with pytest.raises(RuntimeError, match="not known here yet"):
        async with tenant_tx(ctx.app_pool, account_id) as conn:
            await record_event(conn, env)
    await new_account_with_id(ctx, account_id)
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        assert await record_event(conn, env) == []
        assert await feed_repo.seq_of(conn, account_id, env.id) is not None


async def new_account_with_id(ctx: HandlerContext, account_id: str) -> None:
    snapshot = AccountSnapshot(
        id=account_id, version=1, name="Late", test_mode=True, settings={}, clock_offset_us=0, api_keys=[]
    )
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        await apply_account_snapshot(conn, SCHEMA, snapshot)


async def test_a_feed_writer_waits_for_the_one_before_it_so_a_cursor_never_skips(ctx):
    """Without the account's feed lock, B (a higher seq) could commit while A is still open:
    a reader would take B as its cursor and never see A."""
    account_id = await new_account(ctx)
    first, second = (EventEnvelope.model_validate(envelope(account_id, n=n)) for n in (1, 2))
    async with ctx.app_pool.acquire() as a, a.transaction():
        await a.execute("SELECT set_config('app.account_id', $1, true)", account_id)
        await record_event(a, first)

        async def write_second() -> None:
            async with tenant_tx(ctx.app_pool, account_id) as b:
                await record_event(b, second)

        blocked = asyncio.create_task(write_second())
        await asyncio.sleep(0.5)
        assert not blocked.done(), "a second writer of the account's feed did not wait"
        async with tenant_tx(ctx.app_pool, account_id) as reader:
            assert await feed_repo.list_after(reader, account_id, None, 10) == []
    await asyncio.wait_for(blocked, 10)
    async with tenant_tx(ctx.app_pool, account_id) as reader:
        assert [r["event_id"] for r in await feed_repo.list_after(reader, account_id, None, 10)] == [
            first.id,
            second.id,
        ]


async def test_concurrent_writers_and_a_polling_reader_lose_nothing(ctx):
    account_id = await new_account(ctx)
    envelopes = [EventEnvelope.model_validate(envelope(account_id, n=n)) for n in range(40)]
    seen: list[str] = []
    done = asyncio.Event()

    async def write(env: EventEnvelope) -> None:
        async with tenant_tx(ctx.app_pool, account_id) as conn:
            await record_event(conn, env)

    async def read() -> None:
        cursor = None
        while True:
            finished = done.is_set()
            async with tenant_tx(ctx.app_pool, account_id) as conn:
                after = None if cursor is None else await feed_repo.seq_of(conn, account_id, cursor)
                rows = await feed_repo.list_after(conn, account_id, after, 7)
            seen.extend(r["event_id"] for r in rows)
            cursor = seen[-1] if seen else None
            if finished and not rows:
                return
            await asyncio.sleep(0.001)

    reader = asyncio.create_task(read())
    await asyncio.gather(*(write(e) for e in envelopes))
    done.set()
    await asyncio.wait_for(reader, 20)
    assert sorted(seen) == sorted(e.id for e in envelopes) and len(seen) == len(set(seen))


# -- sending: signature, retries, hold and replay ------------------------------------------------
async def test_a_delivery_is_signed_so_that_a_receiver_can_verify_it(ctx, receiver, kicks):
    account_id = await new_account(ctx)
    endpoint_id, secret = await new_endpoint(ctx, account_id, receiver.url)
    assert secret.startswith("whsec_") and len(secret) > 40
    (event_id,) = await publish(ctx, account_id)
    result = await drain(deps(ctx, kicks), account_id, endpoint_id)
    assert result.claimed and result.delivered == 1 and not result.failed
    (got,) = receiver.requests
    header = got.headers[signing.SIGNATURE_HEADER]
    # the helper, and the documented recipe by hand
    assert abs(signing.verify(got.body, header, secret) - datetime.now(UTC).timestamp()) < 30
    parts = dict(p.split("=", 1) for p in header.split(","))
    mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, parts["v1"])
    with pytest.raises(signing.SignatureError):
        signing.verify(got.body + b" ", header, secret)
    with pytest.raises(signing.SignatureError):
        signing.verify(got.body, header, "whsec_another")
    assert got.headers[signing.EVENT_ID_HEADER] == event_id
    assert got.headers[signing.EVENT_TYPE_HEADER] == "payment.succeeded"
    assert got.headers[signing.ATTEMPT_HEADER] == "1"
    assert got.headers["Content-Type"] == "application/json"
    # the body is the feed's item for the event
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        (row,) = await feed_repo.list_after(conn, account_id, None, 1)
    assert got.event == event_out(row) and got.event["id"] == event_id
    (delivery,) = await deliveries(ctx, account_id, endpoint_id)
    assert got.headers[signing.DELIVERY_ID_HEADER] == delivery["id"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 1
    assert delivery["last_response_status"] == 200 and delivery["last_response_body"] == "receiver says 200"
    assert (await endpoint(ctx, account_id, endpoint_id))["next_attempt_at"] is None


async def test_a_failed_delivery_is_retried_with_backoff_until_it_succeeds(ctx, receiver, kicks):
    account_id = await new_account(ctx)
    endpoint_id, _ = await new_endpoint(ctx, account_id, receiver.url)
    receiver.answer(500, 503, then=200)
    await publish(ctx, account_id)
    before = datetime.now(UTC)
    first = await drain(deps(ctx, kicks, schedule=RETRY_SCHEDULE_S), account_id, endpoint_id)
    assert first.failed == 1 and first.delivered == 0
    (d,) = await deliveries(ctx, account_id, endpoint_id)
    assert d["status"] == "pending" and d["attempts"] == 1
    assert d["last_response_status"] == 500 and d["last_error"] == "HTTP 500"
    # the documented schedule: the first retry 10 s later
    wait = d["next_attempt_at"] - before
    assert timedelta(seconds=9) <= wait <= timedelta(seconds=15), wait
    row = await endpoint(ctx, account_id, endpoint_id)
    assert row["consecutive_failures"] == 1 and row["next_attempt_at"] == d["next_attempt_at"]
    assert row["drain_token"] is None
    # not yet due: a drain now does nothing and the receiver hears nothing
    assert not (await drain(deps(ctx, kicks), account_id, endpoint_id)).claimed
    assert len(receiver.requests) == 1
    # one second per retry from here
    await make_due(ctx, account_id, endpoint_id)
    second = await drain(deps(ctx, kicks), account_id, endpoint_id)
    assert second.failed == 1
    (d,) = await deliveries(ctx, account_id, endpoint_id)
    assert d["attempts"] == 2 and d["last_response_status"] == 503
    await asyncio.sleep(1.1)  # FAST: the next attempt after 1 s
    third = await drain(deps(ctx, kicks), account_id, endpoint_id)
    assert third.delivered == 1
    (d,) = await deliveries(ctx, account_id, endpoint_id)
    assert d["status"] == "delivered" and d["attempts"] == 3 and d["next_attempt_at"] is None
    assert [r.headers[signing.ATTEMPT_HEADER] for r in receiver.requests] == ["1", "2", "3"]
    assert len({r.event_id for r in receiver.requests}) == 1
    row = await endpoint(ctx, account_id, endpoint_id)
    assert row["consecutive_failures"] == 0 and row["failing_since"] is None and row["next_attempt_at"] is None


async def test_a_failing_endpoints_deliveries_are_held_then_replayed_in_order(ctx, receiver, kicks):
    account_id = await new_account(ctx)
    endpoint_id, _ = await new_endpoint(ctx, account_id, receiver.url)
    receiver.status = 503
    early = await publish(ctx, account_id, 3)
    for _ in range(3):  # the head fails; nothing behind it is attempted
        await make_due(ctx, account_id, endpoint_id)
        result = await drain(deps(ctx, kicks), account_id, endpoint_id)
        assert result.failed == 1 and result.delivered == 0
    late = await publish(ctx, account_id, 2, "contact.upserted")  # arrive while it fails: held too
    assert not (await drain(deps(ctx, kicks), account_id, endpoint_id)).claimed  # in backoff
    assert receiver.event_ids == [early[0]] * 3
    rows = await deliveries(ctx, account_id, endpoint_id)
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 3)] + [("pending", 0)] * 4
    assert rows[0]["next_attempt_at"] is not None and all(r["next_attempt_at"] is None for r in rows[1:])
    row = await endpoint(ctx, account_id, endpoint_id)
    assert row["consecutive_failures"] == 3 and row["failing_since"] is not None
    # the receiver recovers: at the next attempt everything follows, in the feed's order
    receiver.status = 200
    await asyncio.sleep(1.1)
    result = await drain(deps(ctx, kicks), account_id, endpoint_id)
    assert result.delivered == 5 and not result.failed and not result.more
    order = early + late
    assert receiver.event_ids == [early[0]] * 4 + order[1:]
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        feed = [r["event_id"] for r in await feed_repo.list_after(conn, account_id, None, 10)]
    assert feed == order
    rows = await deliveries(ctx, account_id, endpoint_id)
    assert {r["status"] for r in rows} == {"delivered"} and [r["attempts"] for r in rows] == [4, 1, 1, 1, 1]
    row = await endpoint(ctx, account_id, endpoint_id)
    assert row["consecutive_failures"] == 0 and row["next_attempt_at"] is None


async def test_a_failure_in_the_middle_holds_the_rest_in_order(ctx, receiver, kicks):
    account_id = await new_account(ctx)
    endpoint_id, _ = await new_endpoint(ctx, account_id, receiver.url)
    receiver.answer(200, 200, 500, then=200)
    ids = await publish(ctx, account_id, 5)
    result = await drain(deps(ctx, kicks), account_id, endpoint_id)
    assert (result.delivered, result.failed) == (2, 1)
    assert receiver.event_ids == ids[:3]
    await asyncio.sleep(1.1)
    assert (await drain(deps(ctx, kicks), account_id, endpoint_id)).delivered == 3
    assert receiver.event_ids == ids[:3] + ids[2:]


async def test_concurrent_drains_send_each_delivery_once_in_order(ctx, receiver, kicks):
    account_id = await new_account(ctx)
    endpoint_id, _ = await new_endpoint(ctx, account_id, receiver.url)
    receiver.delay_s = 0.02
    ids = await publish(ctx, account_id, 12)
    results = await asyncio.gather(*(drain(deps(ctx, kicks), account_id, endpoint_id) for _ in range(6)))
    assert sum(r.claimed for r in results) == 1
    assert sum(r.delivered for r in results) == 12
    assert receiver.event_ids == ids


async def test_a_drain_that_lost_its_lease_records_nothing(ctx, receiver, kicks):
    """A worker frozen past its lease: another took the endpoint over; the frozen one's
    outcome is not written (fencing token), and it stops."""
    account_id = await new_account(ctx)
    endpoint_id, _ = await new_endpoint(ctx, account_id, receiver.url)
    await publish(ctx, account_id, 2)
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        assert await repo.claim(conn, account_id, endpoint_id, "frozen", 60)
        (head, *_rest) = await repo.head(conn, account_id, endpoint_id, 10)
    async with ctx.owner_pool.acquire() as conn:  # its lease runs out
        await conn.execute(
            f"UPDATE {SCHEMA}.webhook_endpoints SET drain_until = now() - interval '1 s' WHERE id = $1", endpoint_id
        )
    taken_over = await drain(deps(ctx, kicks), account_id, endpoint_id)
    assert taken_over.claimed and taken_over.delivered == 2
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        kept = await repo.record_failed(
            conn,
            account_id,
            endpoint_id,
            head["id"],
            "frozen",
            retry_in_s=10,
            attempted_at=datetime.now(UTC),
            status=500,
            body=None,
            error="late",
        )
        assert not kept
        assert not await repo.finish(conn, account_id, endpoint_id, "frozen")
    assert [(r["status"], r["last_error"]) for r in await deliveries(ctx, account_id, endpoint_id)] == [
        ("delivered", None),
        ("delivered", None),
    ]


async def test_a_drain_hands_over_when_its_time_budget_is_spent(ctx, receiver, kicks):
    account_id = await new_account(ctx)
    endpoint_id, _ = await new_endpoint(ctx, account_id, receiver.url)
    receiver.delay_s = 0.05
    ids = await publish(ctx, account_id, 10)
    short = DrainDeps(
        ctx.app_pool, ctx.extras["webhook_sender"], ctx.settings.common, deps(ctx, kicks).kick, budget_s=0.2
    )
    result = await drain(short, account_id, endpoint_id)
    assert 0 < result.delivered < 10 and result.more and kicks == [endpoint_id]
    row = await endpoint(ctx, account_id, endpoint_id)
    assert row["drain_token"] is None and row["next_attempt_at"] is not None
    while (await drain(short, account_id, endpoint_id)).more:
        pass
    assert receiver.event_ids == ids


async def test_redirects_are_not_followed_and_slow_endpoints_time_out(ctx, receiver, kicks):
    account_id = await new_account(ctx)
    redirecting, _ = await new_endpoint(ctx, account_id, receiver.url.replace("/hooks", "/redirect"))
    await publish(ctx, account_id)
    assert (await drain(deps(ctx, kicks), account_id, redirecting)).failed == 1
    assert [r.path for r in receiver.requests] == ["/redirect"]  # /hooks never requested
    (d,) = await deliveries(ctx, account_id, redirecting)
    assert d["last_response_status"] == 302 and d["last_error"] == "HTTP 302"

    other = await new_account(ctx)
    slow, _ = await new_endpoint(ctx, other, receiver.url)
    receiver.delay_s = 3.0  # the sender's total timeout is 2 s here
    await publish(ctx, other)
    assert (await drain(deps(ctx, kicks), other, slow)).failed == 1
    (d,) = await deliveries(ctx, other, slow)
    assert d["status"] == "pending" and d["last_error"] == "timed out" and d["last_response_status"] is None


async def test_an_unreachable_endpoint_is_retried_not_dropped(ctx, kicks):
    account_id = await new_account(ctx)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint_id, _ = await new_endpoint(ctx, account_id, f"http://127.0.0.1:{port}/hooks")
    await publish(ctx, account_id)
    assert (await drain(deps(ctx, kicks), account_id, endpoint_id)).failed == 1
    (d,) = await deliveries(ctx, account_id, endpoint_id)
    assert d["status"] == "pending" and d["last_error"].startswith("connection failed")


# -- where a live account may send -------------------------------------------------------------------
async def test_a_live_accounts_delivery_to_a_private_address_is_refused_at_send_time(ctx, receiver, kicks):
    """The URL passed registration (a public name then); now it points at loopback (DNS
    rebinding, or a row changed behind the API's back): nothing is sent, the delivery waits."""
    account_id = await new_account(ctx, test_mode=False)
    for url in (f"https://127.0.0.1:{receiver.port}/hooks", f"http://127.0.0.1:{receiver.port}/hooks"):
        async with tenant_tx(ctx.app_pool, account_id) as conn:
            await repo.insert_endpoint(
                conn,
                endpoint_id=f"we_{uuid.uuid4().hex}",
                account_id=account_id,
                url=url,
                events=["*"],
                description=None,
                secret_encrypted=encrypt(ctx.settings.common, "whsec_live"),
                created_at=datetime.now(UTC),
            )
    await publish(ctx, account_id)
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        ids = [r["id"] for r in await repo.list_endpoints(conn, account_id, limit=10, starting_after=None)]
    for endpoint_id in ids:
        assert (await drain(deps(ctx, kicks), account_id, endpoint_id)).failed == 1
        (d,) = await deliveries(ctx, account_id, endpoint_id)
        assert d["status"] == "pending" and d["last_error"].startswith("refused"), d["last_error"]
    assert receiver.requests == []


async def test_the_resolver_refuses_names_that_resolve_to_forbidden_addresses():
    """Every connection's name resolution goes through the account's policy."""
    live, test = VettedResolver(ssrf.LIVE), VettedResolver(ssrf.TEST)
    with pytest.raises(AddressRefused, match="loopback"):
        await live.resolve("localhost", 443)
    answers = await test.resolve("localhost", 80)
    assert answers and all(ssrf.classify(ssrf.parse_ip(a["host"])) is ssrf.Category.LOOPBACK for a in answers)


async def test_a_name_that_resolves_to_loopback_is_refused_for_a_live_account_when_sending(ctx, receiver):
    """DNS rebinding: a name (not 'localhost') whose answer is a loopback address."""
    name = socket.gethostname()
    addresses = await resolve_host(name, receiver.port, timeout=3)
    if not addresses or any(ssrf.classify(ssrf.parse_ip(a)) is ssrf.Category.PUBLIC for a in addresses):
        pytest.skip(f"{name} does not resolve to non-public addresses only here: {addresses}")
    sender: Sender = ctx.extras["webhook_sender"]
    outcome = await sender.send(f"https://{name}:{receiver.port}/hooks", b"{}", {}, ssrf.LIVE)
    assert not outcome.delivered and outcome.error.startswith("refused") and name in outcome.error
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("url", "test_mode", "refused"),
    [
        ("http://localhost:9/hooks", True, None),
        ("http://127.0.0.1:9/hooks", True, None),
        ("https://localhost/hooks", False, "localhost"),
        ("https://127.0.0.1/hooks", False, "loopback"),
        ("https://[::1]/hooks", False, "loopback"),
        ("https://169.254.169.254/latest", False, "link-local"),
        ("https://0x7f000001/hooks", False, "loopback"),  # a name the C resolver reads as 127.0.0.1
        ("https://0x7f.1/hooks", False, "loopback"),
        ("http://10.1.2.3/hooks", True, "private"),
        ("https://no-such-host.invalid/hooks", False, "could not be resolved"),
        ("http://no-such-host.invalid/hooks", True, "could not be resolved"),
    ],
)
async def test_registration_resolves_the_host_for_real(url, test_mode, refused):
    policy = ssrf.Policy.for_account(test_mode)
    if refused is None:
        assert (await vet_target(url, policy, resolve_timeout=3)).host
    else:
        with pytest.raises(ssrf.UrlRefused, match=refused):
            await vet_target(url, policy, resolve_timeout=3)


# -- the sweep ---------------------------------------------------------------------------------------
async def test_the_sweep_kicks_each_due_endpoint_once(ctx, receiver, kicks):
    account_id = await new_account(ctx)
    endpoint_id, _ = await new_endpoint(ctx, account_id, receiver.url)
    receiver.status = 500
    await publish(ctx, account_id)
    queue = f"{ctx.settings.common.broker_namespace}:notifications"

    async def kicked() -> list[str]:
        """Drain messages for this endpoint in the queue (then emptied)."""
        import json

        bodies = await ctx.redis.hgetall(f"{queue}.msgs")
        await ctx.redis.delete(queue, f"{queue}.msgs")
        found = []
        for raw in bodies.values():
            message = json.loads(raw)
            if message["actor_name"] == DRAIN_ACTOR and message["args"][1] == endpoint_id:
                found.append(message["args"][1])
        return found

    await kicked()  # whatever consume's own kick enqueued
    await sweep_once(ctx)
    assert await kicked() == [endpoint_id]  # due since the event arrived, not drained yet
    await sweep_once(ctx)
    assert await kicked() == []  # kicked already
    assert (await drain(deps(ctx, kicks), account_id, endpoint_id)).failed == 1
    await sweep_once(ctx)
    assert await kicked() == []  # in backoff (1 s)
    await asyncio.sleep(1.1)
    await asyncio.gather(sweep_once(ctx), sweep_once(ctx), sweep_once(ctx))  # any number of workers
    assert await kicked() == [endpoint_id]
    async with tenant_tx(ctx.app_pool, account_id) as conn:  # disabled: never kicked
        await conn.execute(f"UPDATE {SCHEMA}.webhook_endpoints SET status = 'disabled' WHERE id = $1", endpoint_id)
        await repo.retry_now(conn, account_id, endpoint_id)
    await sweep_once(ctx)
    assert await kicked() == []


async def test_after_a_secret_rotation_both_secrets_sign_until_the_overlap_ends(ctx, receiver, kicks):
    account_id = await new_account(ctx)
    endpoint_id, old = await new_endpoint(ctx, account_id, receiver.url)
    new = "whsec_rotated_" + uuid.uuid4().hex
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        row = await repo.rotate_secret(conn, account_id, endpoint_id, encrypt(ctx.settings.common, new), 3600)
    assert row["previous_secret_expires_at"] > datetime.now(UTC)
    await publish(ctx, account_id)
    assert (await drain(deps(ctx, kicks), account_id, endpoint_id)).delivered == 1
    header = receiver.requests[-1].headers[signing.SIGNATURE_HEADER]
    assert header.count("v1=") == 2
    for secret in (old, new):  # a receiver on either secret verifies
        signing.verify(receiver.requests[-1].body, header, secret)
    async with ctx.owner_pool.acquire() as conn:  # the overlap is over
        await conn.execute(
            f"UPDATE {SCHEMA}.webhook_endpoints SET previous_secret_expires_at = now() - interval '1 s' WHERE id = $1",
            endpoint_id,
        )
    await publish(ctx, account_id)
    assert (await drain(deps(ctx, kicks), account_id, endpoint_id)).delivered == 1
    last = receiver.requests[-1]
    assert last.headers[signing.SIGNATURE_HEADER].count("v1=") == 1
    signing.verify(last.body, last.headers[signing.SIGNATURE_HEADER], new)
    with pytest.raises(signing.SignatureError):
        signing.verify(last.body, last.headers[signing.SIGNATURE_HEADER], old)


async def test_a_previous_secret_under_an_old_key_is_skipped_not_fatal(ctx, receiver, kicks):
    """COMMERCE_SECRET_KEY changed, then the merchant rotated: the new secret signs alone."""
    from shared.secrets import generate_key

    account_id = await new_account(ctx)
    endpoint_id, _ = await new_endpoint(ctx, account_id, receiver.url)
    old_key = CommonSettings(secret_key=generate_key(), environment="test")
    new = "whsec_after_key_change_" + uuid.uuid4().hex
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        await conn.execute(
            f"UPDATE {SCHEMA}.webhook_endpoints SET secret_encrypted = $2 WHERE id = $1",
            endpoint_id,
            encrypt(old_key, "whsec_unreadable_now"),
        )
        await repo.rotate_secret(conn, account_id, endpoint_id, encrypt(ctx.settings.common, new), 3600)
    await publish(ctx, account_id)
    assert (await drain(deps(ctx, kicks), account_id, endpoint_id)).delivered == 1
    (got,) = receiver.requests
    assert got.headers[signing.SIGNATURE_HEADER].count("v1=") == 1
    signing.verify(got.body, got.headers[signing.SIGNATURE_HEADER], new)
