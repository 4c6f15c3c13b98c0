"""shared.web.request: card-number detection, field paths, the string scan and strict body
parsing (a tiny in-process aiohttp app with the real problem middleware; no database)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from shared.web.problem import ValidationProblem, problem_middleware
from shared.web.request import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    field_path,
    json_body,
    looks_like_card_number,
    luhn_valid,
    parse_body,
    parse_query,
    scan_strings,
    validate,
)

# -- card numbers ---------------------------------------------------------------------------
CARDS = [
    "4242424242424242",  # Visa
    "4000056655665556",  # Visa debit
    "5555555555554444",  # Mastercard
    "2223003122003222",  # Mastercard 2-series
    "378282246310005",  # American Express (15)
    "6011111111111117",  # Discover
    "3056930009020004",  # Diners (16)
    "3566002020360505",  # JCB
    "6200000000000005",  # UnionPay
    "6205500000000000004",  # UnionPay (19)
]


@pytest.mark.parametrize("number", CARDS)
def test_card_numbers_are_detected(number):
    assert luhn_valid(number)
    assert looks_like_card_number(number)


@pytest.mark.parametrize(
    "text",
    [
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "3782 822463 10005",
        "card: 4242424242424242 exp 12/34",
        "my number is 5555 5555 5555 4444, thanks",
        "Coffee4242424242424242",
        "4242424242424242\n",
    ],
)
def test_card_numbers_in_text_are_detected(text):
    assert looks_like_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Coffee beans, 1 kg",
        "4242424242424241",  # Luhn fails
        "1234567812345670",  # Luhn passes, no card-network prefix
        "4242 4242 4242",  # too short
        "42424242424242424242",  # 20 digits: too long to be a card
        "+46 70 123 45 67",  # Swedish mobile
        "+1 (555) 123-4567",  # NANP
        "+44 20 7946 0958",
        "+4915112345678",  # German mobile, E.164
        "0046701234567",
        "+49 30 901820",
        "SE45 5000 0000 0583 9825 7466",  # IBAN
        "Order 2024-0001-0002, invoice 100200300",
        "ZIP 12345, PO box 9876543",
        "1970-01-01T00:00:00Z",
    ],
)
def test_other_digit_runs_are_not_cards(text):
    assert not looks_like_card_number(text)


@settings(deadline=None)  # the CPU is shared: time per example is noise
@given(st.from_regex(r"\+[1-9][0-9]{6,13}", fullmatch=True))
def test_e164_phone_numbers_are_never_cards(phone):
    # E.164 allows at most 15 digits including the country code; cards need 15+ with
    # a network prefix and a Luhn digit. Up to 14 digits can never match.
    assert not looks_like_card_number(phone)


def test_luhn():
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert luhn_valid("0")


# -- field paths ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), "body"),
        ([], "body"),
        (("name",), "name"),
        (("contact", "email"), "contact.email"),
        (("line_items", 0, "name"), "line_items[0].name"),
        (("items", 2, "quantity"), "items[2].quantity"),
        (("a", 0, 1, "b"), "a[0][1].b"),
        ((0,), "[0]"),
    ],
)
def test_field_path(loc, path):
    assert field_path(loc) == path


# -- scan_strings -----------------------------------------------------------------------------
def errors_of(value, loc=()) -> list[dict[str, str]]:
    with pytest.raises(ValidationProblem) as caught:
        scan_strings(value, loc)
    assert caught.value.status == 422
    return caught.value.errors


def test_scan_accepts_ordinary_data():
    scan_strings({"name": "Kaffe – 1 kg ☕", "n": 5, "x": None, "ok": True, "items": [{"name": "<b>bold</b>"}]})
    scan_strings([])
    scan_strings("plain")


def test_scan_names_the_field_holding_a_card_number():
    errors = errors_of({"line_items": [{"name": "ok"}, {"name": "4242 4242 4242 4242"}]})
    assert errors == [
        {"field": "line_items[1].name", "message": errors[0]["message"]},
    ]
    assert "card number" in errors[0]["message"]


def test_scan_refuses_nul_and_lone_surrogates():
    errors = errors_of({"contact": {"firstname": "Ada\x00"}, "name": "\ud800x"})
    fields = {e["field"]: e["message"] for e in errors}
    assert "NUL" in fields["contact.firstname"]
    assert "Unicode" in fields["name"]


def test_scan_refuses_nul_in_keys_and_collects_every_error():
    errors = errors_of({"meta": {"a\x00": "x"}, "a": "4242424242424242", "b": ["ok", "5555555555554444"]})
    assert {e["field"] for e in errors} == {"meta", "a", "b[1]"}


def test_scan_refuses_nesting_beyond_the_limit():
    deep: list = []
    for _ in range(MAX_DEPTH - 1):  # MAX_DEPTH levels of lists in all
        deep = [deep]
    assert errors_of({"a": deep})[0]["field"] == "a" + "[0]" * (MAX_DEPTH - 1)
    scan_strings({"a": deep[0]})
    very_deep: list = []
    for _ in range(50_000):  # far beyond the recursion limit: still a clean refusal
        very_deep = [very_deep]
    assert "nested" in errors_of({"a": very_deep})[0]["message"]


def test_scan_prefixes_the_location():
    assert errors_of({"q": "4242424242424242"}, ("query",))[0]["field"] == "query.q"


def test_validation_problem_detail_lists_the_fields():
    problem = ValidationProblem([{"field": "b", "message": "x"}, {"field": "a", "message": "y"}])
    body = problem.body()
    assert body["status"] == 422 and body["detail"] == "Invalid value for: a, b"
    assert body["type"] == "/problems/validation-error" and body["title"] == "Validation failed"
    assert body["errors"] == [{"field": "b", "message": "x"}, {"field": "a", "message": "y"}]


# -- pydantic errors become field errors -------------------------------------------------------
class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    quantity: int = Field(ge=1)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Item]
    limit: int = 10


def test_validate_maps_locations_and_unknown_fields():
    with pytest.raises(ValidationProblem) as caught:
        validate(Body, {"items": [{"name": "x", "quantity": 0, "amount": 5}], "id": "x"})
    by_field = {e["field"]: e["message"] for e in caught.value.errors}
    assert set(by_field) == {"items[0].quantity", "items[0].amount", "id"}
    assert by_field["id"] == "is not a known field (or may not be set)"


# -- strict body parsing, end to end in process --------------------------------------------------
@pytest.fixture
async def client():
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await json_body(request))

    async def typed(request: web.Request) -> web.Response:
        return web.json_response((await parse_body(request, Body)).model_dump())

    async def empty_ok(request: web.Request) -> web.Response:
        return web.json_response(await json_body(request, allow_empty=True))

    async def query(request: web.Request) -> web.Response:
        return web.json_response(parse_query(request, QueryModel).model_dump())

    app = web.Application(middlewares=[problem_middleware], client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/echo", echo)
    app.router.add_post("/typed", typed)
    app.router.add_post("/empty", empty_ok)
    app.router.add_get("/query", query)
    async with TestClient(TestServer(app)) as c:
        yield c


class QueryModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=20, ge=1, le=100)
    email: str | None = None


async def call(client, path, data: bytes, content_type: str | None = "application/json"):
    headers = {"Content-Type": content_type} if content_type else {}
    async with client.post(path, data=data, headers=headers) as r:
        raw = await r.read()
        return r.status, r.headers.get("Content-Type", ""), json.loads(raw)


async def test_body_accepts_a_json_object(client):
    assert await call(client, "/echo", b'{"a": [1, "x"]}') == (200, "application/json; charset=utf-8", {"a": [1, "x"]})
    status, _, _ = await call(client, "/echo", b'{"a": 1}', "application/merge-patch+json")
    assert status == 200


@pytest.mark.parametrize(
    ("data", "content_type", "status", "field"),
    [
        (b"", "application/json", 422, "body"),
        (b"   ", "application/json", 422, "body"),
        (b'{"a": 1}', "text/plain", 415, None),
        (b'{"a": 1}', "application/x-www-form-urlencoded", 415, None),
        (b'{"a": 1}', None, 415, None),
        (b'{"a": "\xff\xfe"}', "application/json", 400, "body"),
        (b'{"a": ', "application/json", 400, "body"),
        (b"{'a': 1}", "application/json", 400, "body"),
        (b"[1, 2]", "application/json", 422, "body"),
        (b'"text"', "application/json", 422, "body"),
        (b"42", "application/json", 422, "body"),
        (b"null", "application/json", 422, "body"),
        (b'{"a": "x\\u0000y"}', "application/json", 422, "a"),
        (b'{"a": "\\ud800"}', "application/json", 422, "a"),
        (b'{"a": {"b": ["4242424242424242"]}}', "application/json", 422, "a.b[0]"),
        # digits beyond Python's int-conversion limit, and nesting beyond the recursion
        # limit, are malformed input — never a 500
        (b'{"quantity": ' + b"9" * 5000 + b"}", "application/json", 400, "body"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "body"),
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json", 400, "body"),
    ],
)
async def test_body_refusals(client, data, content_type, status, field):
    got, media, body = await call(client, "/echo", data, content_type)
    assert got == status, body
    assert media.startswith("application/problem+json")
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    if field is not None:
        assert field in {e["field"] for e in body["errors"]}


async def test_deep_nesting_is_refused_not_a_500(client):
    for depth in (MAX_DEPTH, 100, 500, 900, 990):
        got, media, body = await call(client, "/echo", b'{"a": ' + b"[" * depth + b"]" * depth + b"}")
        assert got in (400, 422), (depth, body)
        assert media.startswith("application/problem+json")
    got, _, body = await call(client, "/echo", b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}")
    assert got == 200, body


async def test_body_over_one_megabyte_is_413(client):
    data = json.dumps({"a": "x" * (MAX_BODY_BYTES + 10)}).encode()
    got, media, _ = await call(client, "/echo", data)
    assert got == 413 and media.startswith("application/problem+json")


async def test_empty_body_allowed_where_the_handler_says_so(client):
    assert (await call(client, "/empty", b""))[::2] == (200, {})


async def test_typed_body_names_fields(client):
    got, _, body = await call(client, "/typed", b'{"items": [{"name": "", "quantity": "two"}], "amount": 1}')
    assert got == 422
    assert {e["field"] for e in body["errors"]} == {"items[0].name", "items[0].quantity", "amount"}


async def test_query_strings_are_scanned_and_validated(client):
    async with client.get("/query", params={"limit": "0"}) as r:
        assert r.status == 422 and (await r.json())["errors"][0]["field"] == "limit"
    async with client.get("/query", params={"email": "4242424242424242"}) as r:
        assert r.status == 422 and (await r.json())["errors"][0]["field"] == "email"
    async with client.get("/query", params={"bogus": "1"}) as r:
        assert r.status == 422 and (await r.json())["errors"][0]["field"] == "bogus"
    async with client.get("/query", params={"limit": "5"}) as r:
        assert r.status == 200 and (await r.json())["limit"] == 5
