"""TARGETS R14 for the endpoints that exist: bad input everywhere gets a clear 4xx
problem+json naming the field, nothing is stored, text is rendered escaped, and nothing
ever answers 5xx (every request here goes through `CheckedApi`, which fails on any 5xx).

Authentication and scopes (401/403), body handling (size, media type, UTF-8, JSON shape),
field validation (types, amounts, currencies, lengths, mass assignment, NUL, card numbers)
on the admin API and on the buyer's checkout JSON endpoints (CSRF, contact e-mail).
"""

from __future__ import annotations

import copy
import gzip
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from tests.support.client import Buyer
from tests.support.problems import CheckedApi, assert_problem, error_message

pytestmark = pytest.mark.e2e

LINK = {
    "name": "Bad input shop link",
    "currency": "USD",
    "line_items": [{"name": "Coffee beans, 1 kg", "quantity": 2, "unit_amount": 1250}],
    # every contact property is collected (optional), so each can be probed with bad input
    "contact_fields": [
        {"property": p}
        for p in (
            "email",
            "firstname",
            "lastname",
            "phone",
            "company",
            "jobtitle",
            "website",
            "address",
            "city",
            "state",
            "zip",
            "country",
        )
    ],
}
CARD = "4242 4242 4242 4242"
#: Every admin endpoint that reads a JSON body.
JSON_ENDPOINTS = [
    ("POST", "/v1/payment_links"),
    ("POST", "/v1/products"),
    ("POST", "/v1/tax_rates"),
    ("POST", "/v1/discount_codes"),
    ("PATCH", "/v1/account"),
    ("POST", "/v1/api_keys"),
    ("POST", "/v1/test_clock/advance"),
    ("POST", "/v1/account/processor"),
]
#: (endpoint, raw-body case) pairs where the body is in fact valid.
VALID_RAW = {("/v1/api_keys", "empty")}  # no body: a key with the default scopes
#: An admin GET of every service, for the authentication checks.
SERVICE_GETS = ["/v1/payment_links", "/v1/payments", "/v1/account", "/v1/ledger_entries", "/v1/emails", "/v1/contacts"]


# -- fixtures: one shop for the module; every test checks that it is left unchanged --------------
@pytest.fixture(scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(scope="module")
def shop(stack) -> dict:
    return stack.create_account("Bad input shop", "USD", True)


@pytest.fixture(scope="module")
def admin(session, stack, shop) -> CheckedApi:
    return CheckedApi(session, stack.config.base_url, shop["api_key"])


@pytest.fixture(scope="module")
async def shop_link(admin) -> dict:
    created = await admin.post("/v1/payment_links", LINK)
    assert created.status == 201, created.body
    return created.body


@pytest.fixture
def checkout(session, stack) -> Buyer:
    buyer = Buyer(session, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")
    buyer.api = CheckedApi(session, stack.config.base_url)
    return buyer


async def snapshot(api: CheckedApi) -> dict[str, Any]:
    """What a refused request must not change: every list and the account."""
    state: dict[str, Any] = {}
    for path in (
        "/v1/payment_links?limit=100",
        "/v1/payments?limit=100",
        "/v1/api_keys",
        "/v1/contacts?limit=100",
        "/v1/emails?limit=100",
        "/v1/ledger_entries?limit=100",
        "/v1/products?limit=100",
        "/v1/tax_rates?limit=100",
        "/v1/discount_codes?limit=100",
    ):
        r = await api.get(path)
        assert r.status == 200, (path, r.body)
        state[path] = r.body["data"]
    account = await api.get("/v1/account")
    processor = await api.get("/v1/account/processor")
    state["account"], state["processor"] = account.body, processor.body
    return state


@asynccontextmanager
async def nothing_stored(api: CheckedApi) -> AsyncIterator[None]:
    before = await snapshot(api)
    yield
    after = await snapshot(api)
    for key in before:
        assert after[key] == before[key], f"{key} changed by a refused request"


def with_change(base: dict, path: str, value: Any) -> dict:
    """A deep copy of ``base`` with ``path`` (``a.b[0].c``) set to ``value`` (or removed
    when ``value`` is `REMOVE`)."""
    body = copy.deepcopy(base)
    parts: list[Any] = []
    for token in path.replace("[", ".[").split("."):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    target = body
    for part in parts[:-1]:
        target = target[part]
    if value is REMOVE:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return body


REMOVE = object()


# -- authentication and scopes --------------------------------------------------------------
async def test_no_key_is_401_on_every_service(session, stack, admin):
    anonymous = CheckedApi(session, stack.config.base_url)
    async with nothing_stored(admin):
        for path in SERVICE_GETS:
            body = assert_problem(await anonymous.get(path), 401)
            assert "key" in body["detail"].lower()
        r = await anonymous.post("/v1/payment_links", LINK)
        assert_problem(r, 401)
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer ck_test_unknownkeyunknownkeyunknownkey0000",
        "Bearer ck_live_unknownkeyunknownkeyunknownkey0000",
        "Bearer " + "k" * 300,
        "Bearer ck_test_kéy",
        "Basic dXNlcjpwYXNz",
        "Token ck_test_x",
        "ck_test_no_scheme",
        "Bearer ' OR '1'='1",
        "Bearer %00",
    ],
)
async def test_malformed_or_unknown_keys_are_401(session, stack, admin, authorization):
    api = CheckedApi(session, stack.config.base_url)
    async with nothing_stored(admin):
        for path in SERVICE_GETS:
            assert_problem(await api.get(path, headers={"Authorization": authorization}), 401)
        assert_problem(await api.post("/v1/payment_links", LINK, headers={"Authorization": authorization}), 401)


async def test_the_bearer_scheme_is_case_insensitive(session, stack, shop):
    api = CheckedApi(session, stack.config.base_url)
    r = await api.get("/v1/payment_links", headers={"Authorization": f"bearer {shop['api_key']}"})
    assert r.status == 200


async def test_a_revoked_key_is_401(session, stack, admin):
    created = await admin.post("/v1/api_keys", {"scopes": ["*"]})
    assert created.status == 201
    revoked = await admin.post(f"/v1/api_keys/{created.body['id']}/revoke")
    assert revoked.status == 200
    api = CheckedApi(session, stack.config.base_url, created.body["key"])
    async with nothing_stored(admin):
        for path in SERVICE_GETS:
            assert_problem(await api.get(path), 401)
        assert_problem(await api.post("/v1/payment_links", LINK), 401)


#: scope -> (requests it may make, requests refused with 403)
SCOPED = {
    "crm:read": (
        [("GET", "/v1/contacts")],
        [
            ("POST", "/v1/payment_links"),
            ("GET", "/v1/payment_links"),
            ("GET", "/v1/payments"),
            ("GET", "/v1/ledger_entries"),
            ("GET", "/v1/emails"),
            ("GET", "/v1/account"),
            ("PATCH", "/v1/account"),
            ("GET", "/v1/api_keys"),
            ("POST", "/v1/api_keys"),
            ("POST", "/v1/test_clock/advance"),
            ("POST", "/v1/account/processor"),
        ],
    ),
    "payments:read": (
        [("GET", "/v1/payments"), ("GET", "/v1/ledger_entries")],
        [
            ("POST", "/v1/payment_links"),
            ("GET", "/v1/payment_links"),
            ("GET", "/v1/contacts"),
            ("PATCH", "/v1/account"),
        ],
    ),
    "links:read": (
        [("GET", "/v1/payment_links")],
        [("POST", "/v1/payment_links"), ("GET", "/v1/payments")],
    ),
    "links:write": (  # a write scope implies its read scope
        [("GET", "/v1/payment_links")],
        [("GET", "/v1/payments"), ("GET", "/v1/account"), ("GET", "/v1/contacts")],
    ),
    "settings:read": (
        [("GET", "/v1/account"), ("GET", "/v1/account/processor"), ("GET", "/v1/test_clock")],
        [
            ("PATCH", "/v1/account"),
            ("POST", "/v1/test_clock/advance"),
            ("POST", "/v1/account/processor"),
            ("GET", "/v1/api_keys"),
        ],
    ),
    "emails:read": (
        [("GET", "/v1/emails")],
        [("GET", "/v1/contacts"), ("POST", "/v1/payment_links")],
    ),
}
BODIES = {
    "/v1/payment_links": LINK,
    "/v1/account": {"name": "Scoped"},
    "/v1/api_keys": {"scopes": ["*"]},
    "/v1/test_clock/advance": {"to": "2999-01-01T00:00:00Z"},
    "/v1/account/processor": {"type": "test"},
}
#: The catalogue (products, tax rates, discount codes) is under the links scopes.
_CATALOGUE_GETS = [("GET", "/v1/products"), ("GET", "/v1/tax_rates"), ("GET", "/v1/discount_codes")]
_CATALOGUE_POSTS = [("POST", "/v1/products"), ("POST", "/v1/tax_rates"), ("POST", "/v1/discount_codes")]
SCOPED["links:read"][0].extend(_CATALOGUE_GETS)
SCOPED["links:read"][1].extend(_CATALOGUE_POSTS)
SCOPED["links:write"][0].extend(_CATALOGUE_GETS)
SCOPED["payments:read"][1].extend(_CATALOGUE_GETS + _CATALOGUE_POSTS)
BODIES.update(
    {
        "/v1/products": {"name": "Scoped", "unit_amount": 500, "currency": "USD"},
        "/v1/tax_rates": {"name": "Scoped", "percentage": "10"},
        "/v1/discount_codes": {"code": "SCOPED", "percent_off": "10"},
    }
)


@pytest.mark.parametrize("scope", list(SCOPED))
async def test_a_key_without_the_scope_is_403(session, stack, admin, scope):
    created = await admin.post("/v1/api_keys", {"scopes": [scope]})
    assert created.status == 201, created.body
    api = CheckedApi(session, stack.config.base_url, created.body["key"])
    allowed, refused = SCOPED[scope]
    async with nothing_stored(admin):
        for method, path in allowed:
            r = await api.request(method, path)
            assert r.status == 200, (scope, method, path, r.body)
        for method, path in refused:
            body = BODIES.get(path) if method in ("POST", "PATCH") else None
            problem = assert_problem(await api.request(method, path, json_body=body), 403)
            assert "scope" in problem["detail"], problem


# -- the body: size, media type, encoding, JSON shape --------------------------------------------
RAW_BODIES = [
    ("over_1mb", json.dumps({"name": "x" * (1024 * 1024 + 1)}).encode(), "application/json", 413, None),
    ("invalid_utf8", b'{"name": "\xff\xfe\xfa"}', "application/json", 400, "body"),
    ("latin1", '{"name": "Café"}'.encode("latin-1"), "application/json", 400, "body"),
    ("truncated_json", b'{"name": "x", ', "application/json", 400, "body"),
    ("single_quotes", b"{'name': 'x'}", "application/json", 400, "body"),
    ("trailing_garbage", b'{"name": "x"} extra', "application/json", 400, "body"),
    ("array", b"[1, 2, 3]", "application/json", 422, "body"),
    ("string", b'"a string"', "application/json", 422, "body"),
    ("number", b"42", "application/json", 422, "body"),
    ("null", b"null", "application/json", 422, "body"),
    ("empty", b"", "application/json", 422, "body"),
    ("text_plain", json.dumps(LINK).encode(), "text/plain", 415, None),
    ("form", b"name=x&currency=USD", "application/x-www-form-urlencoded", 415, None),
    ("xml", b"<link/>", "application/xml", 415, None),
    ("no_content_type", json.dumps(LINK).encode(), None, 415, None),
    ("huge_integer", b'{"quantity": ' + b"9" * 5000 + b"}", "application/json", 400, "body"),
    ("deep_nesting", b'{"name": ' + b"[" * 3000 + b"]" * 3000 + b"}", "application/json", 400, "body"),
    ("nested_50", b'{"name": ' + b"[" * 50 + b"]" * 50 + b"}", "application/json", 422, None),
]


@pytest.mark.parametrize(
    ("method", "path", "case", "data", "content_type", "status", "field"),
    [(m, p, *raw) for m, p in JSON_ENDPOINTS for raw in RAW_BODIES if (p, raw[0]) not in VALID_RAW],
    ids=[f"{m}{p}-{raw[0]}" for m, p in JSON_ENDPOINTS for raw in RAW_BODIES if (p, raw[0]) not in VALID_RAW],
)
async def test_malformed_bodies_are_refused(admin, method, path, case, data, content_type, status, field):
    headers = {"Content-Type": content_type} if content_type else {}
    async with nothing_stored(admin):
        r = await admin.request(method, path, data=data, headers=headers)
        assert_problem(r, status, field)


async def test_a_body_over_1mb_is_refused_without_content_length(admin):
    async def chunks():
        for _ in range(20):
            yield b" " * 65536
        yield json.dumps(LINK).encode()

    async with nothing_stored(admin):
        async with admin.session.post(
            admin.base_url + "/v1/payment_links",
            data=chunks(),
            headers={"Authorization": f"Bearer {admin.key}", "Content-Type": "application/json"},
        ) as r:
            assert r.status == 413
            assert r.headers["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decode_is_400(admin, encoding):
    async with nothing_stored(admin):
        r = await admin.request(
            "POST",
            "/v1/payment_links",
            data=json.dumps(LINK).encode(),  # not actually compressed
            headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        )
        assert_problem(r, 400)


async def test_a_compressed_body_is_read_and_bounded_after_decoding(admin):
    packed = gzip.compress(json.dumps(LINK).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    created = await admin.request("POST", "/v1/payment_links", data=packed, headers=headers)
    assert created.status == 201, created.body
    bomb = gzip.compress(b'{"name": "' + b"x" * (3 * 1024 * 1024) + b'"}')
    assert len(bomb) < 10_000
    async with nothing_stored(admin):
        assert_problem(await admin.request("POST", "/v1/payment_links", data=bomb, headers=headers), 413)


# -- payment link fields ----------------------------------------------------------------------
#: (case, field path to change, value, field named in the error, words the message contains)
LINK_REFUSALS: list[tuple[str, str, Any, str, str | None]] = [
    # wrong types
    ("name_number", "name", 5, "name", None),
    ("name_object", "name", {"x": 1}, "name", None),
    ("currency_number", "currency", 840, "currency", None),
    ("line_items_string", "line_items", "coffee", "line_items", None),
    ("line_items_object", "line_items", {"name": "x"}, "line_items", None),
    ("item_string", "line_items[0]", "coffee", "line_items[0]", None),
    ("quantity_string", "line_items[0].quantity", "2", "line_items[0].quantity", None),
    ("quantity_float", "line_items[0].quantity", 1.5, "line_items[0].quantity", None),
    ("quantity_bool", "line_items[0].quantity", True, "line_items[0].quantity", None),
    ("quantity_null", "line_items[0].quantity", None, "line_items[0].quantity", None),
    ("amount_string", "line_items[0].unit_amount", "1250", "line_items[0].unit_amount", None),
    ("amount_decimal_string", "line_items[0].unit_amount", "12.50", "line_items[0].unit_amount", None),
    ("amount_float", "line_items[0].unit_amount", 12.5, "line_items[0].unit_amount", None),
    ("amount_whole_float", "line_items[0].unit_amount", 1250.0, "line_items[0].unit_amount", None),
    ("amount_bool", "line_items[0].unit_amount", True, "line_items[0].unit_amount", None),
    ("amount_list", "line_items[0].unit_amount", [1250], "line_items[0].unit_amount", None),
    ("active_number", "active", 7, "active", None),
    ("after_completion_string", "after_completion", "message", "after_completion", None),
    # missing
    ("no_currency", "currency", REMOVE, "currency", None),
    ("no_line_items", "line_items", REMOVE, "line_items", None),
    ("no_item_name", "line_items[0].name", REMOVE, "line_items[0].name", None),
    ("no_unit_amount", "line_items[0].unit_amount", REMOVE, "line_items[0].unit_amount", None),
    # zero and negative
    ("amount_zero", "line_items[0].unit_amount", 0, "line_items[0].unit_amount", None),
    ("amount_negative", "line_items[0].unit_amount", -1250, "line_items[0].unit_amount", None),
    ("quantity_zero", "line_items[0].quantity", 0, "line_items[0].quantity", None),
    ("quantity_negative", "line_items[0].quantity", -2, "line_items[0].quantity", None),
    ("empty_line_items", "line_items", [], "line_items", None),
    ("below_minimum", "line_items", [{"name": "Sticker", "quantity": 1, "unit_amount": 49}], "line_items", "$0.50"),
    # huge
    ("amount_huge", "line_items[0].unit_amount", 10**12, "line_items[0].unit_amount", None),
    ("amount_beyond_bigint", "line_items[0].unit_amount", 10**30, "line_items[0].unit_amount", None),
    ("quantity_huge", "line_items[0].quantity", 10**9, "line_items[0].quantity", None),
    ("quantity_beyond_bigint", "line_items[0].quantity", 10**30, "line_items[0].quantity", None),
    (
        "total_too_large",
        "line_items",
        [{"name": "Gold", "quantity": 10_000, "unit_amount": 99_999_999}],
        "line_items",
        "exceeds",
    ),
    (
        "items_sum_too_large",
        "line_items",
        [{"name": f"Bar {i}", "unit_amount": 99_999_999} for i in range(3)],
        "line_items",
        "exceeds",
    ),
    (
        "too_many_items",
        "line_items",
        [{"name": f"Item {i}", "unit_amount": 100} for i in range(101)],
        "line_items",
        None,
    ),
    # currencies
    ("currency_unknown", "currency", "ZZZ", "currency", "ZZZ"),
    ("currency_word", "currency", "dollars", "currency", None),
    ("currency_empty", "currency", "", "currency", None),
    ("currency_not_enabled", "currency", "EUR", "currency", "EUR"),
    ("currency_huf", "currency", "HUF", "currency", "minor unit"),
    ("currency_isk", "currency", "isk", "currency", "minor unit"),
    ("currency_kwd", "currency", "KWD", "currency", "does not offer"),
    ("currency_bhd", "currency", "bhd", "currency", "does not offer"),
    ("currency_metal", "currency", "XAU", "currency", "XAU"),
    # text lengths
    ("name_empty", "name", "", "name", None),
    ("name_too_long", "name", "n" * 201, "name", None),
    ("item_name_empty", "line_items[0].name", "", "line_items[0].name", None),
    ("item_name_too_long", "line_items[0].name", "n" * 251, "line_items[0].name", None),
    ("description_too_long", "line_items[0].description", "d" * 2001, "line_items[0].description", None),
    # unknown fields: no mass assignment
    ("set_id", "id", "plink_chosen", "id", "not a known field"),
    ("set_account", "account_id", "acct_other", "account_id", "not a known field"),
    ("set_url", "url", "https://evil.example/pay", "url", None),
    ("set_slug", "slug", "chosen", "slug", None),
    ("set_created_at", "created_at", "2000-01-01T00:00:00Z", "created_at", None),
    ("set_object", "object", "payment", "object", None),
    ("set_amount", "amount", 1, "amount", None),
    ("set_item_id", "line_items[0].id", "li_chosen", "line_items[0].id", None),
    ("set_item_amount", "line_items[0].amount", 1, "line_items[0].amount", None),
    ("set_item_currency", "line_items[0].currency", "JPY", "line_items[0].currency", None),
    ("set_item_account", "line_items[0].account_id", "acct_other", "line_items[0].account_id", None),
    (
        "set_after_completion_extra",
        "after_completion",
        {"type": "message", "script": "x"},
        "after_completion.script",
        None,
    ),
    # text PostgreSQL cannot store
    ("name_nul", "name", "Coffee\x00", "name", "NUL"),
    ("item_name_nul", "line_items[0].name", "\x00", "line_items[0].name", "NUL"),
    ("name_surrogate", "name", "\ud800", "name", "Unicode"),
    # card numbers typed into any text field
    ("card_in_name", "name", f"Pay with {CARD}", "name", "card number"),
    ("card_in_item_name", "line_items[0].name", "4242424242424242", "line_items[0].name", "card number"),
    ("card_dashes_in_item_name", "line_items[0].name", "5555-5555-5555-4444", "line_items[0].name", "card number"),
    (
        "card_in_description",
        "line_items[0].description",
        "amex 378282246310005",
        "line_items[0].description",
        "card number",
    ),
    ("card_in_unknown_field", "note", CARD, "note", None),
    # after completion
    ("redirect_without_url", "after_completion", {"type": "redirect"}, "after_completion.url", None),
    (
        "redirect_javascript",
        "after_completion",
        {"type": "redirect", "url": "javascript:alert(1)"},
        "after_completion.url",
        None,
    ),
    ("after_completion_type", "after_completion", {"type": "explode"}, "after_completion.type", None),
]


@pytest.mark.parametrize(("case", "path", "value", "field", "words"), LINK_REFUSALS, ids=[c[0] for c in LINK_REFUSALS])
async def test_payment_link_refusals_name_the_field(admin, case, path, value, field, words):
    body = with_change(LINK, path, value)
    async with nothing_stored(admin):
        r = await admin.post("/v1/payment_links", body)
        problem = assert_problem(r, 422, field, contains=words)
        assert problem["type"] == "/problems/validation-error"


async def test_refused_currencies_name_the_currency_and_the_reason(admin):
    for code, reason in (("HUF", "minor unit"), ("KWD", "does not offer")):
        problem = assert_problem(await admin.post("/v1/payment_links", {**LINK, "currency": code}), 422, "currency")
        message = error_message(problem, "currency")
        assert code in message and reason in message, message


async def test_every_error_of_a_request_is_listed(admin):
    body = {"name": "", "currency": "ZZ", "line_items": [{"name": CARD, "quantity": 0, "unit_amount": -1}], "id": "x"}
    async with nothing_stored(admin):
        problem = assert_problem(await admin.post("/v1/payment_links", body), 422, "line_items[0].name")
    # the card number is refused before the model is validated; fix it and see the rest
    body["line_items"][0]["name"] = "Coffee"
    async with nothing_stored(admin):
        problem = assert_problem(await admin.post("/v1/payment_links", body), 422, "name")
    fields = {e["field"] for e in problem["errors"]}
    assert fields >= {"name", "currency", "line_items[0].quantity", "line_items[0].unit_amount", "id"}
    for name in ("name", "currency"):
        assert name in problem["detail"]


async def test_a_phone_number_is_not_mistaken_for_a_card(admin):
    created = await admin.post(
        "/v1/payment_links",
        with_change(LINK, "line_items[0].description", "Call +46 70 123 45 67 or +1 (555) 010-9999, order 2024-0001"),
    )
    assert created.status == 201, created.body


async def test_accepted_input_is_normalized_not_trusted(admin):
    created = await admin.post("/v1/payment_links", {**LINK, "currency": "usd"})
    assert created.status == 201, created.body
    assert created.body["currency"] == "USD"
    assert created.body["id"].startswith("plink_") and created.body["active"] is True
    (item,) = created.body["line_items"]
    assert item["id"].startswith("li_") and item["unit_amount"] == 1250 and item["quantity"] == 2


# -- other admin bodies -----------------------------------------------------------------------
ACCOUNT_REFUSALS = [
    ({"name": CARD}, "name", "card number"),
    ({"name": "Shop\x00"}, "name", "NUL"),
    ({"name": 5}, "name", None),
    ({"name": "n" * 201}, "name", None),
    ({"payment_link_defaults": {"footer": {"text": CARD}}}, "payment_link_defaults.footer.text", "card number"),
    ({"notification_recipients": ["ok@example.com", "4242424242424242"]}, "notification_recipients[1]", "card number"),
    ({"shipping_enabled": "sometimes"}, "shipping_enabled", None),
    ({"currencies": ["USD", 978]}, "currencies[1]", None),
    ({"subscription_settings": {"reminder_days": -1}}, "subscription_settings.reminder_days", None),
    ({"subscription_settings": {"reminder_days": 10**30}}, "subscription_settings.reminder_days", None),
    ({"subscription_settings": {"retry_schedule_days": [1, 400]}}, "subscription_settings.retry_schedule_days", None),
    ({"account_id": "acct_other"}, "account_id", "not a known field"),
    ({"version": 99}, "version", None),
    ({"clock_offset_us": 10**12}, "clock_offset_us", None),
    ({"processor": {"type": "test"}}, "processor", None),
]


@pytest.mark.parametrize(("change", "field", "words"), ACCOUNT_REFUSALS)
async def test_account_refusals_name_the_field(admin, change, field, words):
    async with nothing_stored(admin):
        assert_problem(await admin.patch("/v1/account", change), 422, field, contains=words)


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/api_keys", {"scopes": ["*"], "name": CARD}, "name"),
        ("POST", "/v1/api_keys", {"scopes": ["*", "superuser"]}, "scopes"),
        ("POST", "/v1/api_keys", {"scopes": [1]}, "scopes[0]"),
        ("POST", "/v1/api_keys", {"scopes": ["*"], "id": "key_chosen"}, "id"),
        ("POST", "/v1/test_clock/advance", {"to": "next week"}, "to"),
        ("POST", "/v1/test_clock/advance", {"to": "2031-02-30T00:00:00Z"}, "to"),
        ("POST", "/v1/test_clock/advance", {"to": "2031-01-01T00:00:00Z", "offset_us": 1}, "offset_us"),
        ("POST", "/v1/test_clock/advance", {"to": "99999-01-01T00:00:00Z"}, "to"),
        ("POST", "/v1/test_clock/advance", {"to": "9999-12-31T23:59:59Z"}, "to"),
        ("POST", "/v1/test_clock/advance", {"to": 10**20}, "to"),
        ("POST", "/v1/account/processor", {"type": "test", "api_base": "http://evil.example"}, "api_base"),
        ("POST", "/v1/account/processor", {"type": "stripe", "secret_key": CARD}, "secret_key"),
    ],
)
async def test_other_admin_refusals_name_the_field(admin, method, path, body, field):
    async with nothing_stored(admin):
        assert_problem(await admin.request(method, path, json_body=body), 422, field)


# -- the URL: paths and query strings -----------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/v1/payment_links/%00",
        "/v1/payment_links/plink_%00x",
        "/v1/payments/%00",
        "/v1/contacts/%00",
        "/v1/contacts/%00/associations",
        "/v1/payment_links/%ff%fe",
        "/v1/payments/%ed%a0%80",
        "/v1/payment_links/" + "x" * 3000,
        "/v1/payments/..%2f..%2fetc%2fpasswd",
        "/v1/payment_links/' OR '1'='1",
        "/v1/contacts/%25",
        "/v1/products/%00",
        "/v1/products/prod_%00x",
        "/v1/products/' OR '1'='1",
        "/v1/products/" + "p" * 3000,
        "/v1/tax_rates/%00",
        "/v1/tax_rates/%ed%a0%80",
        "/v1/discount_codes/%00",
        "/v1/discount_codes/..%2f..%2fetc%2fpasswd",
    ],
)
async def test_odd_ids_are_404_not_500(admin, path):
    async with nothing_stored(admin):
        assert_problem(await admin.get(path), 404)


@pytest.mark.parametrize(
    "path",
    ["/v1/api_keys/%00/revoke", "/v1/api_keys/key_%00/revoke", "/v1/api_keys/" + "k" * 3000 + "/revoke"],
)
async def test_odd_ids_in_posts_are_404(admin, path):
    async with nothing_stored(admin):
        assert_problem(await admin.post(path, {}), 404)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/payment_links?limit=0", "limit"),
        ("/v1/payment_links?limit=101", "limit"),
        ("/v1/payment_links?limit=-1", "limit"),
        ("/v1/payment_links?limit=ten", "limit"),
        ("/v1/payment_links?limit=" + "9" * 5000, "limit"),
        ("/v1/payment_links?limit=1.5", "limit"),
        ("/v1/payment_links?starting_after=%00", "starting_after"),
        ("/v1/payment_links?starting_after=" + "x" * 101, "starting_after"),
        ("/v1/payment_links?bogus=1", "bogus"),
        ("/v1/payment_links?account_id=acct_other", "account_id"),
        ("/v1/payments?status=stolen", "status"),
        ("/v1/payments?contact_id=%00", "contact_id"),
        ("/v1/payments?payment_link_id=4242424242424242", "payment_link_id"),
        ("/v1/contacts?email=%00", "email"),
        ("/v1/contacts?email=" + "e" * 400, "email"),
        ("/v1/emails?status=lost", "status"),
        ("/v1/emails?to=4242%204242%204242%204242", "to"),
        ("/v1/ledger_entries?payment_id=%00", "payment_id"),
        ("/v1/ledger_entries?limit=1000", "limit"),
        ("/v1/products?active=maybe", "active"),
        ("/v1/products?limit=0", "limit"),
        ("/v1/products?starting_after=%00", "starting_after"),
        ("/v1/products?account_id=acct_other", "account_id"),
        ("/v1/tax_rates?limit=101", "limit"),
        ("/v1/tax_rates?active=2", "active"),
        ("/v1/discount_codes?starting_after=" + "x" * 101, "starting_after"),
        ("/v1/discount_codes?code=SUMMER", "code"),
    ],
)
async def test_bad_query_parameters_name_the_parameter(admin, path, field):
    assert_problem(await admin.get(path), 422, field)


async def test_unknown_paths_and_methods(admin):
    for path in ("/v1/nothing", "/v2/payment_links", "/v1/payment_linksx"):
        assert_problem(await admin.get(path), 404)
    for method, path in (("DELETE", "/v1/account"), ("PUT", "/v1/payment_links"), ("DELETE", "/v1/api_keys")):
        assert_problem(await admin.request(method, path), 405)


# -- the buyer's page: stored as typed, rendered escaped ------------------------------------------
SCRIPT = "<script>alert('x')</script>"
IMG = '<img src=x onerror="alert(1)">'


async def test_html_is_stored_verbatim_and_rendered_escaped(admin, checkout):
    created = await admin.post(
        "/v1/payment_links",
        {
            "name": f"Link {SCRIPT}",
            "currency": "USD",
            "line_items": [{"name": f"Mug {IMG}", "description": f"</li>{SCRIPT}", "unit_amount": 900}],
        },
    )
    assert created.status == 201, created.body
    assert created.body["name"] == f"Link {SCRIPT}"
    assert created.body["line_items"][0]["name"] == f"Mug {IMG}"
    fetched = await admin.get(f"/v1/payment_links/{created.body['id']}")
    assert fetched.body["line_items"][0]["description"] == f"</li>{SCRIPT}"

    account = (await admin.get("/v1/account")).body
    renamed = await admin.patch("/v1/account", {"name": f"Shop {SCRIPT}"})
    assert renamed.status == 200 and renamed.body["name"] == f"Shop {SCRIPT}"
    try:
        await checkout.open(created.body["url"])
        page = await checkout.api.get(f"/checkout/{checkout.token}")
        assert page.status == 200
        assert page.headers["Content-Type"].startswith("text/html")
        html = page.body
        assert isinstance(html, str)
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(" in html
        assert "Mug &lt;img src=x onerror=" in html
        csp = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        view = await checkout.view()
        assert view.body["line_items"][0]["name"] == f"Mug {IMG}"  # JSON carries the text as typed
        assert view.body["merchant"]["name"] == f"Shop {SCRIPT}"
    finally:
        restored = await admin.patch("/v1/account", {"name": account["name"]})
        assert restored.status == 200


# -- the buyer's JSON endpoints ------------------------------------------------------------------
async def test_checkout_posts_need_the_csrf_token(admin, shop_link, checkout):
    await checkout.open(shop_link["url"])
    token = checkout.token
    contact = {"contact": {"email": "buyer@example.com"}}
    async with nothing_stored(admin):
        for headers in (
            {},
            {"X-CSRF-Token": ""},
            {"X-CSRF-Token": "wrong"},
            {"X-CSRF-Token": checkout.csrf + "x"},
            {"X-CSRF-Token": checkout.csrf, "Sec-Fetch-Site": "cross-site"},
            {"X-CSRF-Token": checkout.csrf, "Sec-Fetch-Site": "same-site"},
        ):
            assert_problem(await checkout.api.post(f"/api/checkout/{token}", contact, headers=headers), 403)
            assert_problem(await checkout.api.post(f"/api/checkout/{token}/complete", {}, headers=headers), 403)
        # another session's token does not open this one
        other = Buyer(checkout.session, checkout.api.base_url, checkout.processor_url)
        other.api = CheckedApi(checkout.session, checkout.api.base_url)
        await other.open(shop_link["url"])
        assert_problem(
            await checkout.api.post(f"/api/checkout/{token}", contact, headers={"X-CSRF-Token": other.csrf}), 403
        )
    assert (await checkout.view()).body["status"] == "open"


#: (case, body, field)
CHECKOUT_REFUSALS: list[tuple[str, Any, str]] = [
    ("no_contact", {}, "contact"),
    ("contact_string", {"contact": "buyer@example.com"}, "contact"),
    ("no_email", {"contact": {"firstname": "Ada"}}, "contact.email"),
    ("email_empty", {"contact": {"email": ""}}, "contact.email"),
    ("email_no_at", {"contact": {"email": "buyer.example.com"}}, "contact.email"),
    ("email_no_tld", {"contact": {"email": "buyer@example"}}, "contact.email"),
    ("email_spaces", {"contact": {"email": "bu yer@example.com"}}, "contact.email"),
    ("email_two_at", {"contact": {"email": "a@b@example.com"}}, "contact.email"),
    ("email_number", {"contact": {"email": 42}}, "contact.email"),
    ("email_too_long", {"contact": {"email": "a" * 310 + "@example.com"}}, "contact.email"),
    ("email_nul", {"contact": {"email": "buyer@example.com\x00"}}, "contact.email"),
    ("card_in_firstname", {"contact": {"email": "a@example.com", "firstname": CARD}}, "contact.firstname"),
    ("card_in_lastname", {"contact": {"email": "a@example.com", "lastname": "4000056655665556"}}, "contact.lastname"),
    ("card_in_company", {"contact": {"email": "a@example.com", "company": "378282246310005"}}, "contact.company"),
    (
        "card_in_address",
        {"contact": {"email": "a@example.com"}, "billing_address": {"line1": CARD}},
        "billing_address.line1",
    ),
    (
        "card_in_discount_code",
        {"contact": {"email": "a@example.com"}, "discount_code": "4242424242424242"},
        "discount_code",
    ),
    ("firstname_too_long", {"contact": {"email": "a@example.com", "firstname": "f" * 201}}, "contact.firstname"),
    ("contact_unknown_field", {"contact": {"email": "a@example.com", "is_admin": True}}, "contact.is_admin"),
    ("set_amount", {"contact": {"email": "a@example.com"}, "amount": 1}, "amount"),
    ("set_total", {"contact": {"email": "a@example.com"}, "summary": {"total_due_now": 1}}, "summary"),
    ("set_currency", {"contact": {"email": "a@example.com"}, "currency": "JPY"}, "currency"),
    ("set_account", {"contact": {"email": "a@example.com"}, "account_id": "acct_other"}, "account_id"),
    ("items_string", {"contact": {"email": "a@example.com"}, "items": "all"}, "items"),
    ("unknown_item", {"contact": {"email": "a@example.com"}, "items": [{"line_item_id": "li_other"}]}, "items"),
    (
        "item_price_fixed",
        {"contact": {"email": "a@example.com"}, "items": [{"line_item_id": "{item}", "amount": 1}]},
        "items[0].amount",
    ),
    (
        "item_quantity_fixed",
        {"contact": {"email": "a@example.com"}, "items": [{"line_item_id": "{item}", "quantity": 7}]},
        "items[0].quantity",
    ),
    (
        "item_quantity_string",
        {"contact": {"email": "a@example.com"}, "items": [{"line_item_id": "{item}", "quantity": "2"}]},
        "items[0].quantity",
    ),
    (
        "item_quantity_huge",
        {"contact": {"email": "a@example.com"}, "items": [{"line_item_id": "{item}", "quantity": 10**20}]},
        "items[0].quantity",
    ),
    (
        "item_amount_negative",
        {"contact": {"email": "a@example.com"}, "items": [{"line_item_id": "{item}", "amount": -100}]},
        "items[0].amount",
    ),
    (
        "item_not_optional",
        {"contact": {"email": "a@example.com"}, "items": [{"line_item_id": "{item}", "selected": False}]},
        "items[0].selected",
    ),
    (
        "item_extra_field",
        {"contact": {"email": "a@example.com"}, "items": [{"line_item_id": "{item}", "unit_amount": 1}]},
        "items[0].unit_amount",
    ),
    (
        "country_three_letters",
        {"contact": {"email": "a@example.com"}, "billing_address": {"country": "SWE"}},
        "billing_address.country",
    ),
    (
        "address_extra_field",
        {"contact": {"email": "a@example.com"}, "shipping_address": {"planet": "Mars"}},
        "shipping_address.planet",
    ),
]


@pytest.mark.parametrize(("case", "body", "field"), CHECKOUT_REFUSALS, ids=[c[0] for c in CHECKOUT_REFUSALS])
async def test_checkout_submit_refusals_name_the_field(admin, shop_link, checkout, case, body, field):
    await checkout.open(shop_link["url"])
    item_id = (await checkout.view()).body["line_items"][0]["id"]
    body = json.loads(json.dumps(body).replace("{item}", item_id))
    summary_before = (await checkout.view()).body["summary"]
    async with nothing_stored(admin):
        r = await checkout.api.post(f"/api/checkout/{checkout.token}", body, headers={"X-CSRF-Token": checkout.csrf})
        assert_problem(r, 422, field)
        completed = await checkout.api.post(
            f"/api/checkout/{checkout.token}/complete", {}, headers={"X-CSRF-Token": checkout.csrf}
        )
        assert_problem(completed, 409)  # nothing was submitted, so nothing can be charged
    view = (await checkout.view()).body
    assert view["status"] == "open" and view["summary"] == summary_before and view["payment_id"] is None


@pytest.mark.parametrize(
    ("case", "data", "content_type", "status", "field"), RAW_BODIES, ids=[c[0] for c in RAW_BODIES]
)
async def test_checkout_malformed_bodies_are_refused(
    admin, shop_link, checkout, case, data, content_type, status, field
):
    await checkout.open(shop_link["url"])
    headers = {"X-CSRF-Token": checkout.csrf}
    if content_type:
        headers["Content-Type"] = content_type
    async with nothing_stored(admin):
        r = await checkout.api.request("POST", f"/api/checkout/{checkout.token}", data=data, headers=headers)
        assert_problem(r, status, field)


async def test_a_valid_submission_with_a_phone_number_is_accepted(shop_link, checkout):
    await checkout.open(shop_link["url"])
    r = await checkout.submit({"email": "  Phone.Buyer@Example.com ", "phone": "+46 70 123 45 67", "firstname": " "})
    assert r.status == 200, r.body
    assert r.body["summary"]["total_due_now"] == 2500
    assert r.body["payment"]["intent_type"] == "setup_intent"


@pytest.mark.parametrize(
    "path",
    [
        "/pay/%00",
        "/pay/" + "s" * 3000,
        "/pay/%ff",
        "/checkout/%00",
        "/checkout/nope",
        "/api/checkout/%00",
        "/api/checkout/" + "t" * 3000,
        "/pay/' OR '1'='1",
    ],
)
async def test_odd_public_tokens_are_404(checkout, path):
    r = await checkout.api.get(path)
    assert r.status == 404


async def test_checkout_posts_to_unknown_sessions_are_404(checkout):
    for path in ("/api/checkout/nope", "/api/checkout/%00", "/api/checkout/nope/complete"):
        r = await checkout.api.post(path, {"contact": {"email": "a@example.com"}}, headers={"X-CSRF-Token": "x"})
        assert_problem(r, 404)


async def test_a_fresh_idempotency_key_does_not_store_a_refusal_as_a_link(admin):
    key = f"bad-{uuid.uuid4()}"
    async with nothing_stored(admin):
        for _ in range(2):
            r = await admin.post("/v1/payment_links", {**LINK, "currency": "KWD"}, headers={"Idempotency-Key": key})
            assert_problem(r, 422, "currency")
