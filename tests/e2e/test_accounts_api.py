"""The account endpoints (API.md "Accounts and keys"): settings, the processor connection,
API keys and their revocation across every service, the test clock, and Idempotency-Key
on an admin POST."""

from __future__ import annotations

import asyncio
import secrets
import string
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.e2e.conftest import ONE_ITEM_LINK
from tests.support.client import Api
from tests.support.problems import CheckedApi, assert_problem

pytestmark = pytest.mark.e2e

#: One admin list endpoint per service (all four behind the one base URL).
SERVICE_PROBES = {
    "checkout": "/v1/payment_links",
    "billing": "/v1/ledger_entries",
    "notifications": "/v1/emails",
    "crm_sync": "/v1/contacts",
}


def parse_instant(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def api(http, stack, account) -> CheckedApi:  # the conftest's api, failing on any 5xx
    return CheckedApi(http, stack.config.base_url, account["api_key"])


@pytest.fixture
def processor_url(stack) -> str:
    return f"http://127.0.0.1:{stack.config.ports.test_processor}"


def stripe_keys(mode: str = "test") -> dict:
    # base62, like Stripe's keys (a hex token is 62 % digits: one in a few hundred holds a
    # Luhn-valid 15-digit run, which the card-number scan rightly refuses)
    token = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    return {
        "secret_key": f"sk_{mode}_{token}",
        "publishable_key": f"pk_{mode}_{token}",
        "webhook_secret": f"whsec_{token}",
    }


# -- GET / PATCH /v1/account ----------------------------------------------------------------
async def test_get_account(api, account):
    r = await api.get("/v1/account")
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    body = r.body
    assert body["id"] == account["account_id"] and body["test_mode"] is True
    for field in (
        "name",
        "logo_url",
        "time_zone",
        "default_currency",
        "currencies",
        "language",
        "notification_recipients",
        "payment_link_defaults",
        "subscription_settings",
        "shipping_enabled",
        "notifications",
    ):
        assert field in body, field
    assert body["default_currency"] == "USD" and body["currencies"] == ["USD"]
    assert set(body["subscription_settings"]) >= {
        "reminders_enabled",
        "reminder_days",
        "retry_schedule_days",
        "after_final_failure",
    }
    assert body["subscription_settings"]["retry_schedule_days"] == [1, 3, 7, 14]
    assert body["subscription_settings"]["after_final_failure"] == "canceled"
    assert parse_instant(body["created_at"])


async def test_patch_account_changes_are_reflected(api):
    change = {
        "name": "Kafferosteriet AB",
        "logo_url": "https://example.com/logo.png",
        "time_zone": "Europe/Stockholm",
        "currencies": ["usd", "EUR", "SEK"],
        "default_currency": "sek",
        "language": "sv",
        "notification_recipients": ["owner@example.com", "Books@Example.com"],
        "payment_link_defaults": {"collect_billing_address": True},
        "subscription_settings": {
            "reminders_enabled": True,
            "reminder_days": 7,
            "retry_schedule_days": [2, 5],
            "after_final_failure": "unpaid",
        },
        "shipping_enabled": True,
        "notifications": {"receipt": False},
    }
    patched = await api.patch("/v1/account", change)
    assert patched.status == 200, patched.body
    got = (await api.get("/v1/account")).body
    assert got == patched.body
    assert got["name"] == "Kafferosteriet AB" and got["logo_url"] == "https://example.com/logo.png"
    assert got["time_zone"] == "Europe/Stockholm" and got["language"] == "sv"
    assert got["currencies"] == ["USD", "EUR", "SEK"] and got["default_currency"] == "SEK"
    assert got["notification_recipients"] == ["owner@example.com", "Books@Example.com"]
    assert got["payment_link_defaults"]["collect_billing_address"] is True
    assert got["payment_link_defaults"]["payment_methods"] == ["card"]  # the rest keeps its defaults
    assert got["subscription_settings"]["reminders_enabled"] is True
    assert got["subscription_settings"]["retry_schedule_days"] == [2, 5]
    assert got["subscription_settings"]["after_final_failure"] == "unpaid"
    assert got["shipping_enabled"] is True
    assert got["notifications"]["receipt"] is False and got["notifications"]["invoice_paid"] is True
    # an enabled currency can now be sold in; a partial PATCH keeps everything else
    eur = await api.post("/v1/payment_links", {**ONE_ITEM_LINK, "currency": "eur"})
    assert eur.status == 201 and eur.body["currency"] == "EUR"
    again = await api.patch("/v1/account", {"name": "Renamed"})
    assert again.status == 200
    assert {**got, "name": "Renamed"} == again.body


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"time_zone": "utc+2"}, "time_zone"),
        ({"time_zone": ""}, "time_zone"),
        ({"currencies": ["ZZZ"]}, "currencies"),
        ({"currencies": ["US"]}, "currencies"),
        ({"currencies": []}, "currencies"),
        ({"currencies": ["USD", "usd"]}, "currencies"),
        ({"currencies": "USD"}, "currencies"),
        ({"default_currency": "XYZ"}, "default_currency"),
        ({"default_currency": "EUR"}, "default_currency"),  # not among the account's currencies
        ({"currencies": ["EUR"]}, "default_currency"),  # would drop the default currency
        ({"notification_recipients": ["not-an-email"]}, "notification_recipients"),
        ({"notification_recipients": ["a@b"]}, "notification_recipients"),
        ({"notification_recipients": [5]}, "notification_recipients[0]"),
        ({"language": "xx"}, "language"),
        ({"logo_url": "javascript:alert(1)"}, "logo_url"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"time_zone": None}, "time_zone"),
        ({"subscription_settings": {"retry_schedule_days": [7, 3]}}, "subscription_settings.retry_schedule_days"),
        # billing's retry policy limits (at most 8 retries, the last within 60 days)
        (
            {"subscription_settings": {"retry_schedule_days": list(range(1, 10))}},
            "subscription_settings.retry_schedule_days",
        ),
        ({"subscription_settings": {"retry_schedule_days": [1, 61]}}, "subscription_settings.retry_schedule_days"),
        (
            {"subscription_settings": {"retry_schedule_by_method": {"cheque": [1, 2]}}},
            "subscription_settings.retry_schedule_by_method",
        ),
        (
            {"subscription_settings": {"retry_schedule_by_method": {"sepa_debit": [3, 2]}}},
            "subscription_settings.retry_schedule_by_method",
        ),
        ({"subscription_settings": {"after_final_failure": "explode"}}, "subscription_settings.after_final_failure"),
        ({"notifications": {"no_such_kind": True}}, "notifications"),
        ({"id": "acct_other"}, "id"),
        ({"test_mode": False}, "test_mode"),
        ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
    ],
)
async def test_patch_account_refusals_name_the_field_and_change_nothing(api, change, field):
    before = (await api.get("/v1/account")).body
    assert_problem(await api.patch("/v1/account", change), 422, field)
    assert (await api.get("/v1/account")).body == before


async def test_default_currency_must_be_among_the_currencies_together(api):
    ok = await api.patch("/v1/account", {"currencies": ["EUR", "USD"], "default_currency": "EUR"})
    assert ok.status == 200 and ok.body["default_currency"] == "EUR"
    assert_problem(await api.patch("/v1/account", {"currencies": ["USD"]}), 422, "default_currency")
    ok = await api.patch("/v1/account", {"currencies": ["USD"], "default_currency": "USD"})
    assert ok.status == 200 and ok.body["currencies"] == ["USD"]


# -- the processor --------------------------------------------------------------------------
async def test_a_test_mode_account_starts_on_the_test_processor(api, account, processor_url):
    r = await api.get("/v1/account/processor")
    assert r.status == 200, r.body
    body = r.body
    assert body["type"] == "test"
    assert body["publishable_key"]
    assert body["api_base"] == processor_url
    assert body["webhook_url"].endswith(f"/webhooks/stripe/{account['account_id']}")
    assert body["webhook_secret"].startswith("whsec_")
    assert "secret_key" not in body


async def test_reconnecting_the_test_processor(api):
    before = (await api.get("/v1/account/processor")).body
    r = await api.post("/v1/account/processor", {"type": "test"})
    assert r.status == 200, r.body
    assert r.body["type"] == "test" and r.body["webhook_secret"].startswith("whsec_")
    assert r.body["webhook_url"] == before["webhook_url"]
    assert (await api.get("/v1/account/processor")).body == r.body
    assert_problem(await api.post("/v1/account/processor", {"type": "test", "secret_key": "x"}), 422, "secret_key")
    assert_problem(await api.post("/v1/account/processor", {"type": "paypal"}), 422, "type")


async def test_connecting_stripe_keys_against_the_test_processor(http, stack, new_account, processor_url):
    first = new_account("Stripe shop")
    api = CheckedApi(http, stack.config.base_url, first["api_key"])
    keys = stripe_keys()
    r = await api.post("/v1/account/processor", {**keys, "api_base": processor_url})
    assert r.status == 200, r.body
    assert r.body["type"] == "stripe"
    assert r.body["publishable_key"] == keys["publishable_key"]
    assert r.body["api_base"] == processor_url
    assert r.body["webhook_secret"] == keys["webhook_secret"]  # test mode: shown so tests can sign
    assert keys["secret_key"] not in str(r.body)
    got = await api.get("/v1/account/processor")
    assert got.body == r.body
    assert keys["secret_key"] not in str(got.body)

    # the same Stripe account (same secret key -> same acct id) cannot serve a second account
    second = new_account("Copycat")
    other = CheckedApi(http, stack.config.base_url, second["api_key"])
    before = (await other.get("/v1/account/processor")).body
    assert_problem(await other.post("/v1/account/processor", {**keys, "api_base": processor_url}), 409)
    assert (await other.get("/v1/account/processor")).body == before
    # ... while the first account may reconnect its own keys
    again = await api.post("/v1/account/processor", {**keys, "api_base": processor_url})
    assert again.status == 200, again.body


async def test_keys_of_the_wrong_mode_or_shape_are_refused(api, processor_url):
    before = (await api.get("/v1/account/processor")).body
    cases = [
        ({**stripe_keys("live"), "api_base": processor_url}, "secret_key"),  # live keys on a test account
        (
            {**stripe_keys("test"), "publishable_key": "pk_live_" + "x" * 20, "api_base": processor_url},
            "publishable_key",
        ),
        ({**stripe_keys("test"), "secret_key": "pk_test_" + "x" * 20}, "secret_key"),
        ({**stripe_keys("test"), "webhook_secret": "secret" * 4}, "webhook_secret"),
        ({**stripe_keys("test"), "api_base": "not a url"}, "api_base"),
        ({**stripe_keys("test"), "api_base": "file:///etc/passwd"}, "api_base"),
        ({**stripe_keys("test"), "api_base": "http://[::1"}, "api_base"),
        ({**stripe_keys("test"), "api_base": "http://127.0.0.1:notaport"}, "api_base"),
        ({"secret_key": "sk_test_" + "x" * 20}, "publishable_key"),
        ({**stripe_keys("test"), "account_id": "acct_other"}, "account_id"),
    ]
    for body, field in cases:
        assert_problem(await api.post("/v1/account/processor", body), 422, field)
    assert (await api.get("/v1/account/processor")).body == before


async def test_a_live_account_cannot_use_the_test_processor_or_an_api_base(http, stack, new_account):
    live = new_account("Live shop", test_mode=False)
    api = CheckedApi(http, stack.config.base_url, live["api_key"])
    assert live["api_key"].startswith("ck_live_")
    assert_problem(await api.post("/v1/account/processor", {"type": "test"}), 409)
    assert_problem(await api.post("/v1/account/processor", stripe_keys("test")), 422, "secret_key")
    assert_problem(
        await api.post("/v1/account/processor", {**stripe_keys("live"), "api_base": "http://127.0.0.1:1"}),
        422,
        "api_base",
    )
    processor = await api.get("/v1/account/processor")
    assert processor.status == 200 and processor.body["type"] is None
    assert "webhook_secret" not in processor.body


# -- API keys ---------------------------------------------------------------------------------
async def every_service_status(http, stack, key: str) -> dict[str, int]:
    probe = Api(http, stack.config.base_url, key)
    results = await asyncio.gather(*(probe.get(path) for path in SERVICE_PROBES.values()))
    return {service: r.status for service, r in zip(SERVICE_PROBES, results, strict=True)}


async def test_a_new_key_works_on_every_service_at_once(api, http, stack):
    created = await api.post("/v1/api_keys", {"scopes": ["*"]})
    assert created.status == 201, created.body
    key = created.body["key"]
    assert key.startswith("ck_test_") and len(key) >= 40
    assert created.body["prefix"] == key[:12] and created.body["revoked_at"] is None
    assert created.body["id"].startswith("key_")
    assert await every_service_status(http, stack, key) == dict.fromkeys(SERVICE_PROBES, 200)
    listed = (await api.get("/v1/api_keys")).body["data"]
    mine = [k for k in listed if k["id"] == created.body["id"]]
    assert len(mine) == 1 and "key" not in mine[0] and key not in str(listed)
    assert all("hash" not in field for k in listed for field in k)


async def test_a_revoked_key_is_refused_by_every_service_right_away(api, http, stack):
    created = await api.post("/v1/api_keys", {"scopes": ["*"]})
    key, key_id = created.body["key"], created.body["id"]
    assert await every_service_status(http, stack, key) == dict.fromkeys(SERVICE_PROBES, 200)
    revoked = await api.post(f"/v1/api_keys/{key_id}/revoke")
    assert revoked.status == 200, revoked.body
    assert revoked.body["id"] == key_id and parse_instant(revoked.body["revoked_at"])
    assert await every_service_status(http, stack, key) == dict.fromkeys(SERVICE_PROBES, 401)
    probe = Api(http, stack.config.base_url, key)
    for path in SERVICE_PROBES.values():
        assert_problem(await probe.get(path), 401)
    again = await api.post(f"/v1/api_keys/{key_id}/revoke")
    assert again.status == 200 and again.body["revoked_at"] == revoked.body["revoked_at"]
    listed = {k["id"]: k for k in (await api.get("/v1/api_keys")).body["data"]}
    assert listed[key_id]["revoked_at"] == revoked.body["revoked_at"]
    # the key that revoked it still works everywhere
    assert await every_service_status(http, stack, api.key) == dict.fromkeys(SERVICE_PROBES, 200)


async def test_key_management_needs_the_admin_scope(api, http, stack):
    scoped = await api.post("/v1/api_keys", {"scopes": ["settings:write", "links:write"]})
    assert scoped.status == 201 and scoped.body["scopes"] == ["links:write", "settings:write"]
    limited = CheckedApi(http, stack.config.base_url, scoped.body["key"])
    assert_problem(await limited.get("/v1/api_keys"), 403)
    assert_problem(await limited.post("/v1/api_keys", {"scopes": ["*"]}), 403)
    assert_problem(await limited.post(f"/v1/api_keys/{scoped.body['id']}/revoke"), 403)
    assert (await limited.get("/v1/account")).status == 200  # settings:write implies settings:read
    assert (await limited.get("/v1/payment_links")).status == 200  # links:write implies links:read
    assert_problem(await limited.get("/v1/payments"), 403)
    ids = [k["id"] for k in (await api.get("/v1/api_keys")).body["data"]]
    assert len(ids) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["root"]}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"scopes": "*"}, "scopes"),
        ({"scopes": ["*"], "key": "ck_test_chosen"}, "key"),
        ({"scopes": ["*"], "account_id": "acct_x"}, "account_id"),
    ],
)
async def test_bad_key_requests_create_nothing(api, body, field):
    before = (await api.get("/v1/api_keys")).body["data"]
    assert_problem(await api.post("/v1/api_keys", body), 422, field)
    assert (await api.get("/v1/api_keys")).body["data"] == before


async def test_revoking_an_unknown_key_is_404(api):
    assert_problem(await api.post("/v1/api_keys/key_00000000000000000000000000/revoke"), 404)


# -- the test clock ----------------------------------------------------------------------------
async def test_the_test_clock_moves_forward_only(api):
    start = parse_instant((await api.get("/v1/test_clock")).body["now"])
    assert abs(start - datetime.now(UTC)) < timedelta(minutes=5)
    target = start + timedelta(days=45, hours=3)
    moved = await api.post("/v1/test_clock/advance", {"to": target.isoformat()})
    assert moved.status == 200, moved.body
    assert parse_instant(moved.body["now"]) >= target
    now = parse_instant((await api.get("/v1/test_clock")).body["now"])
    assert target <= now < target + timedelta(minutes=5)
    for earlier in (target - timedelta(days=1), start):
        body = assert_problem(await api.post("/v1/test_clock/advance", {"to": earlier.isoformat()}), 422, "to")
        assert "earlier" in body["errors"][0]["message"]
    assert parse_instant((await api.get("/v1/test_clock")).body["now"]) >= now
    # offsets in any zone are instants; a naive time or a non-time is not
    east = (now + timedelta(days=1)).astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert (await api.post("/v1/test_clock/advance", {"to": east.isoformat()})).status == 200
    for bad in ("2040-01-01T00:00:00", "tomorrow", 12, None, ""):
        assert_problem(await api.post("/v1/test_clock/advance", {"to": bad}), 422, "to")
    assert_problem(await api.post("/v1/test_clock/advance", {}), 422, "to")


async def test_the_clock_cannot_be_moved_beyond_computable_dates(api):
    before = (await api.get("/v1/test_clock")).body["now"]
    assert_problem(await api.post("/v1/test_clock/advance", {"to": "9999-12-31T23:59:59Z"}), 422, "to")
    assert parse_instant((await api.get("/v1/test_clock")).body["now"]) < parse_instant(before) + timedelta(hours=1)
    assert (await api.post("/v1/payment_links", ONE_ITEM_LINK)).status == 201  # the account still works


async def test_live_accounts_have_no_test_clock(http, stack, new_account):
    live = new_account("Live clock", test_mode=False)
    api = CheckedApi(http, stack.config.base_url, live["api_key"])
    assert_problem(await api.get("/v1/test_clock"), 409)
    target = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert_problem(await api.post("/v1/test_clock/advance", {"to": target}), 409)


async def test_records_made_after_an_advance_carry_the_clock_time(api, buyer):
    target = datetime.now(UTC) + timedelta(days=40)
    assert (await api.post("/v1/test_clock/advance", {"to": target.isoformat()})).status == 200
    link = await api.post("/v1/payment_links", ONE_ITEM_LINK)
    assert target <= parse_instant(link.body["created_at"]) < target + timedelta(hours=1)
    done = await buyer.pay(link.body["url"], "clock@example.com")
    assert done.status == 200, done.body
    payment = (await api.get(f"/v1/payments/{done.body['payment_id']}")).body
    assert target <= parse_instant(payment["created_at"]) < target + timedelta(hours=1)
    session = (await buyer.view()).body
    assert parse_instant(session["expires_at"]) > target


# -- Idempotency-Key ----------------------------------------------------------------------------
async def test_idempotency_key_replays_the_first_response(api):
    headers = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    first = await api.post("/v1/payment_links", ONE_ITEM_LINK, headers=headers)
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    again = await api.post("/v1/payment_links", ONE_ITEM_LINK, headers=headers)
    assert again.status == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.body == first.body
    other = await api.post("/v1/payment_links", {**ONE_ITEM_LINK, "name": "Other"}, headers=headers)
    body = assert_problem(other, 422, "Idempotency-Key")
    assert "different" in body["detail"]
    fresh = await api.post("/v1/payment_links", ONE_ITEM_LINK, headers={"Idempotency-Key": f"x-{uuid.uuid4()}"})
    assert fresh.status == 201 and fresh.body["id"] != first.body["id"]
    ids = [link["id"] for link in (await api.get("/v1/payment_links")).body["data"]]
    assert sorted(ids) == sorted([first.body["id"], fresh.body["id"]])


async def test_a_refused_request_is_replayed_as_refused(api):
    headers = {"Idempotency-Key": f"bad-{uuid.uuid4()}"}
    bad = {**ONE_ITEM_LINK, "currency": "HUF"}
    first = await api.post("/v1/payment_links", bad, headers=headers)
    assert_problem(first, 422, "currency")
    again = await api.post("/v1/payment_links", bad, headers=headers)
    assert again.status == 422 and again.body == first.body
    assert (await api.get("/v1/payment_links")).body["data"] == []


async def test_concurrent_requests_with_one_key_create_one_link(api):
    headers = {"Idempotency-Key": f"race-{uuid.uuid4()}"}
    responses = await asyncio.gather(*(api.post("/v1/payment_links", ONE_ITEM_LINK, headers=headers) for _ in range(6)))
    assert all(r.status == 201 for r in responses), [r.body for r in responses]
    assert len({r.body["id"] for r in responses}) == 1
    assert sum(1 for r in responses if r.headers.get("Idempotent-Replayed") == "true") == 5
    listed = (await api.get("/v1/payment_links")).body["data"]
    assert [link["id"] for link in listed] == [responses[0].body["id"]]


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve-key", "tab\tkey"])
async def test_malformed_idempotency_keys_are_refused(api, key):
    r = await api.post("/v1/payment_links", ONE_ITEM_LINK, headers={"Idempotency-Key": key})
    assert_problem(r, 422, "Idempotency-Key")
    assert (await api.get("/v1/payment_links")).body["data"] == []
