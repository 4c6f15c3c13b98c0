"""Payment links as a merchant manages them (PRODUCT §3.2–§3.5, §9; API.md "Payment
links"): every setting with its stored value and its refusals, the account's defaults,
deal creation and pipelines, list / search / read / edit / clone / delete / on-off,
preview, test mode, embed code, and the simplified links made from CRM records, bought
through the buyer's API flow.

Line-item options and the pricing summary are in `test_link_options.py`; the generic
refusals (types, lengths, mass assignment) in `test_bad_input.py`. Every request goes
through `CheckedApi`: no 5xx, whatever the input.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.support.client import Buyer, Response
from tests.support.problems import CheckedApi, assert_problem, error_message
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

WAIT = 60  # seconds for what other services must hear of first
ITEM = {"name": "Coffee beans, 1 kg", "quantity": 2, "unit_amount": 1250}
READ_ONLY = {
    "id": "plink_chosen",
    "object": "payment_link",
    "url": "https://evil.example/pay/x",
    "slug": "chosen",
    "embeddable": True,
    "crm_record": {"type": "contact", "id": "contact_x"},
    "created_at": "2000-01-01T00:00:00Z",
    "updated_at": "2000-01-01T00:00:00Z",
}


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Shop:
    def __init__(self, created: dict, api: CheckedApi) -> None:
        self.account_id: str = created["account_id"]
        self.key: str = created["api_key"]
        self.api = api


@pytest.fixture
def new_shop(stack, session) -> Callable[..., Shop]:
    def make(name: str = "Links shop", test_mode: bool = True) -> Shop:
        created = stack.create_account(f"{name} {uuid.uuid4().hex[:6]}", "USD", test_mode)
        return Shop(created, CheckedApi(session, stack.config.base_url, created["api_key"]))

    return make


@pytest.fixture
def shop(new_shop) -> Shop:
    return new_shop()


@pytest.fixture
def api(shop) -> CheckedApi:
    return shop.api


@pytest.fixture
def new_buyer(session, stack) -> Callable[[], Buyer]:
    def make() -> Buyer:
        buyer = Buyer(session, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")
        buyer.api = CheckedApi(session, stack.config.base_url)
        return buyer

    return make


@pytest.fixture
def buyer(new_buyer) -> Buyer:
    return new_buyer()


@pytest.fixture(scope="module")
async def checkout_db(stack) -> AsyncIterator[asyncpg.Connection]:
    """Checkout's tables as their owner, to count sessions."""
    conn = await asyncpg.connect(stack.env["CHECKOUT_DATABASE_OWNER_URL"])
    yield conn
    await conn.close()


# -- helpers -------------------------------------------------------------------------------------
def link_body(*items: dict, **fields: Any) -> dict:
    return {"name": "Coffee link", "currency": "USD", "line_items": list(items) or [ITEM], **fields}


async def create(api: CheckedApi, body: dict | None = None, **fields: Any) -> dict:
    created = await api.post("/v1/payment_links", {**(body or link_body()), **fields})
    assert created.status == 201, created.body
    return created.body


async def read(api: CheckedApi, link_id: str) -> dict:
    r = await api.get(f"/v1/payment_links/{link_id}")
    assert r.status == 200, r.body
    return r.body


async def refused(response: Response, field: str, *words: str, status: int = 422) -> str:
    problem = assert_problem(response, status, field)
    message = error_message(problem, field)
    for word in words:
        assert word in message, f"{word!r} not in the message for {field}: {message!r} ({problem})"
    return message


async def until_known(call: Callable[[], Awaitable[Response]], timeout: float = WAIT) -> Response:
    """Repeat ``call`` while it is refused because checkout has not heard of a CRM
    record yet (crm_sync announces records asynchronously); returns the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        r = await call()
        if r.status not in (404, 422) or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.1)


async def page(buyer: Buyer, path: str) -> Response:
    return await buyer.api.get(path)


async def open_link(buyer: Buyer, url: str) -> Response:
    """GET the link's stable URL, without following the redirect."""
    path = url.split("://", 1)[1].split("/", 1)[1]
    return await buyer.api.get("/" + path)


async def now_of(api: CheckedApi) -> str:
    return (await api.get("/v1/test_clock")).body["now"]


async def default_pipeline(api: CheckedApi) -> dict:
    listed = await api.get("/v1/pipelines?limit=100")
    assert listed.status == 200, listed.body
    (pipeline,) = [p for p in listed.body["data"] if p["default"]]
    return pipeline


def stage(pipeline: dict, kind: str) -> dict:
    return next(s for s in pipeline["stages"] if s["kind"] == kind)


def unique_email(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}@example.com"


async def pay(buyer: Buyer, url: str, email: str, **contact: Any) -> dict:
    done = await buyer.pay(url, email, **contact)
    assert done.status == 200, done.body
    assert done.body["status"] == "complete"
    return done.body


async def sessions_of(db: asyncpg.Connection, link_id: str) -> int:
    return await db.fetchval("SELECT count(*) FROM checkout.checkout_sessions WHERE source_id = $1", link_id)


# -- a new link and its settings ------------------------------------------------------------------
async def test_a_new_link_shows_every_field_with_the_defaults(api, stack):
    link = await create(api, link_body(name="Beans"))
    assert link["id"].startswith("plink_")
    slug = link["url"].rsplit("/", 1)[1]
    assert link["url"] == f"{stack.config.base_url.rstrip('/')}/pay/{slug}" and len(slug) >= 22
    assert slug not in link["id"]
    (item,) = link["line_items"]
    assert (item["name"], item["quantity"], item["unit_amount"]) == ("Coffee beans, 1 kg", 2, 1250)
    settings = {k: v for k, v in link.items() if k not in ("id", "url", "line_items", "created_at", "updated_at")}
    assert settings == {
        "object": "payment_link",
        "name": "Beans",
        "active": True,
        "currency": "USD",
        "order_discount": None,
        "allow_discount_codes": False,
        "create_deal": None,
        "deal_id": None,
        "checkout_text": None,
        "contact_fields": [
            {"property": "email", "label": "Email", "help_text": None, "required": True},
            {"property": "firstname", "label": "First name", "help_text": None, "required": False},
            {"property": "lastname", "label": "Last name", "help_text": None, "required": False},
        ],
        "payment_methods": ["card"],
        "collect_billing_address": False,
        "collect_shipping_address": False,
        "after_completion": {"type": "message"},
        "deactivate_after_payment": False,
        "embeddable": True,
        "crm_record": None,
    }
    assert link["created_at"] == link["updated_at"]
    assert link["created_at"][:16] == (await now_of(api))[:16]  # the account's clock
    unnamed = await create(api, {"currency": "usd", "line_items": [ITEM]})
    assert unnamed["name"] == "Payment link" and unnamed["currency"] == "USD"
    assert (await create(api, link_body(active=False)))["active"] is False


async def test_checkout_text_is_sanitised_and_shown_to_the_buyer(api, buyer):
    text = (
        "<p>Thanks! <strong>Free</strong> shipping over <em>$50</em>.</p><script>alert(1)</script>"
        '<a href="https://example.com/terms" onclick="steal()" target="_top">Terms</a> '
        '<a href="javascript:alert(1)">x</a><iframe src="https://evil.example"></iframe>'
        '<img src=x onerror=alert(1)><h3 style="color:red" onmouseover="x()">Note</h3><ul><li>one</li></ul>'
        '<form action="https://evil.example"><input name=q></form>'
    )
    link = await create(api, link_body(checkout_text=text))
    assert link["checkout_text"] == (
        "<p>Thanks! <strong>Free</strong> shipping over <em>$50</em>.</p>"
        '<a href="https://example.com/terms" rel="noopener noreferrer nofollow">Terms</a> '
        '<a rel="noopener noreferrer nofollow">x</a><h3>Note</h3><ul><li>one</li></ul>'
    )
    for gone in ("script", "alert", "onclick", "javascript:", "iframe", "onerror", "style=", "onmouseover", "form"):
        assert gone not in link["checkout_text"], gone
    # nothing left once sanitised, or empty: no text
    assert (await create(api, link_body(checkout_text="<script>alert(1)</script>")))["checkout_text"] is None
    assert (await create(api, link_body(checkout_text="")))["checkout_text"] is None
    await refused(await api.post("/v1/payment_links", link_body(checkout_text="x" * 10_001)), "checkout_text")


async def test_contact_fields_with_label_help_text_required_flag_and_order(api, buyer):
    link = await create(
        api,
        link_body(
            contact_fields=[
                {"property": "company", "label": "Company", "help_text": "As on the invoice", "required": True},
                {"property": "email", "label": "Work e-mail", "required": False},
                {"property": "phone"},
            ]
        ),
    )
    expected = [
        {"property": "company", "label": "Company", "help_text": "As on the invoice", "required": True},
        {"property": "email", "label": "Work e-mail", "help_text": None, "required": True},  # always required
        {"property": "phone", "label": "Phone", "help_text": None, "required": False},
    ]
    assert link["contact_fields"] == expected
    await buyer.open(link["url"])
    assert (await buyer.view()).body["contact_fields"] == expected
    await refused(await buyer.submit({"email": "a@example.com"}), "contact.company", "required")
    await refused(
        await buyer.submit({"email": "a@example.com", "company": "Acme", "firstname": "Ada"}),
        "contact.firstname",
        "not collected",
    )
    ok = await buyer.submit({"email": "a@example.com", "company": "Acme", "phone": "+46 70 123 45 67"})
    assert ok.status == 200, ok.body

    # without e-mail in the list, it is collected first
    only_name = await create(api, link_body(contact_fields=[{"property": "firstname", "required": True}]))
    assert [(f["property"], f["required"]) for f in only_name["contact_fields"]] == [
        ("email", True),
        ("firstname", True),
    ]
    for fields, field, words in (
        ([{"property": "phone"}, {"property": "phone", "label": "Mobile"}], "contact_fields", ("listed twice",)),
        ([{"property": "birthday"}], "contact_fields[0].property", ()),
        ([{"property": "phone", "label": ""}], "contact_fields[0].label", ()),
        ([{"property": "phone", "help_text": "h" * 301}], "contact_fields[0].help_text", ()),
        ([{"property": "phone", "order": 2}], "contact_fields[0].order", ("not a known field",)),
    ):
        await refused(await api.post("/v1/payment_links", link_body(contact_fields=fields)), field, *words)


async def test_billing_and_shipping_address_switches(api, buyer):
    billing = await create(api, link_body(collect_billing_address=True))
    assert (billing["collect_billing_address"], billing["collect_shipping_address"]) == (True, False)
    await buyer.open(billing["url"])
    view = (await buyer.view()).body
    assert (view["collect_billing_address"], view["collect_shipping_address"]) == (True, False)
    await refused(await buyer.submit({"email": "a@example.com"}), "billing_address", "required")
    address = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
    await refused(
        await buyer.submit({"email": "a@example.com"}, billing_address=address, shipping_address=address),
        "shipping_address",
        "not collected",
    )
    assert (await buyer.submit({"email": "a@example.com"}, billing_address=address)).status == 200

    # shipping only once the account ships
    await refused(
        await api.post("/v1/payment_links", link_body(collect_shipping_address=True)),
        "collect_shipping_address",
        "turn on shipping",
    )
    assert (await api.patch("/v1/account", {"shipping_enabled": True})).status == 200
    shipping = await create(api, link_body(collect_shipping_address=True))
    assert shipping["collect_shipping_address"] is True
    # a link saved while the account shipped can still be edited (and turned off) after it stops
    assert (await api.patch("/v1/account", {"shipping_enabled": False})).status == 200
    renamed = await api.patch(f"/v1/payment_links/{shipping['id']}", {"name": "Old shipping link", "active": False})
    assert renamed.status == 200, renamed.body
    assert (renamed.body["name"], renamed.body["active"]) == ("Old shipping link", False)
    await refused(
        await api.patch(f"/v1/payment_links/{billing['id']}", {"collect_shipping_address": True}),
        "collect_shipping_address",
        "turn on shipping",
    )


async def test_confirmation_message_or_redirect_and_turning_off_after_the_first_payment(api, new_buyer):
    message = await create(api, link_body(after_completion={"type": "message", "message": "See you soon!"}))
    assert message["after_completion"] == {"type": "message", "message": "See you soon!"}
    redirect = await create(
        api,
        link_body(
            after_completion={"type": "redirect", "url": "https://shop.example/thanks?x=1"},
            deactivate_after_payment=True,
        ),
    )
    assert redirect["after_completion"] == {"type": "redirect", "url": "https://shop.example/thanks?x=1"}
    assert redirect["deactivate_after_payment"] is True
    for body, field in (
        ({"type": "redirect"}, "after_completion.url"),
        ({"type": "message", "url": "https://shop.example"}, "after_completion.url"),
        ({"type": "redirect", "url": "ftp://shop.example"}, "after_completion.url"),
    ):
        await refused(await api.post("/v1/payment_links", link_body(after_completion=body)), field)

    plain = await pay(new_buyer(), message["url"], unique_email("message"))
    assert "redirect_url" not in plain
    done = await pay(new_buyer(), redirect["url"], unique_email("redirect"))
    assert done["redirect_url"] == "https://shop.example/thanks?x=1"
    # the first payment turned it off; the other link stays on
    assert (await read(api, redirect["id"]))["active"] is False
    assert (await read(api, message["id"]))["active"] is True
    gone = await open_link(new_buyer(), redirect["url"])
    assert gone.status == 410 and "no longer available" in gone.body
    listed = await api.get(f"/v1/payments?payment_link_id={redirect['id']}")
    assert [p["id"] for p in listed.body["data"]] == [done["payment_id"]]


# -- the account's defaults -----------------------------------------------------------------------------
async def test_links_inherit_the_accounts_defaults_and_their_own_values_win(api):
    pipeline = await default_pipeline(api)
    opening = pipeline["stages"][0]
    defaults = {
        "checkout_text": "<p>Welcome <b>back</b><script>x()</script></p>",
        "contact_fields": [{"property": "email"}, {"property": "company", "label": "Firm", "required": True}],
        "payment_methods": ["card", "sepa_debit"],
        "collect_billing_address": True,
        "collect_shipping_address": True,
        "after_completion": {"type": "redirect", "url": "https://shop.example/done"},
        "create_deal": {"pipeline": pipeline["id"], "stage": opening["id"]},
    }
    patched = await api.patch(
        "/v1/account", {"currencies": ["USD", "EUR"], "shipping_enabled": True, "payment_link_defaults": defaults}
    )
    assert patched.status == 200, patched.body
    assert patched.body["payment_link_defaults"]["checkout_text"] == "<p>Welcome <b>back</b></p>"

    inherited = (await until_known(lambda: api.post("/v1/payment_links", link_body()))).body
    assert inherited.get("id"), inherited
    assert inherited["checkout_text"] == "<p>Welcome <b>back</b></p>"
    assert inherited["contact_fields"] == [
        {"property": "email", "label": "Email", "help_text": None, "required": True},
        {"property": "company", "label": "Firm", "help_text": None, "required": True},
    ]
    assert inherited["payment_methods"] == ["card"]  # SEPA debits are EUR only
    assert (inherited["collect_billing_address"], inherited["collect_shipping_address"]) == (True, True)
    assert inherited["after_completion"] == {"type": "redirect", "url": "https://shop.example/done"}
    assert inherited["create_deal"] == {"pipeline": pipeline["id"], "stage": opening["id"]}
    in_euros = await create(api, link_body(currency="EUR"))
    assert in_euros["payment_methods"] == ["card", "sepa_debit"]

    own = await create(
        api,
        link_body(
            checkout_text=None,
            contact_fields=[],
            payment_methods=["card"],
            collect_billing_address=False,
            collect_shipping_address=False,
            after_completion={"type": "message"},
            create_deal=None,
        ),
    )
    assert own["checkout_text"] is None and own["create_deal"] is None
    assert own["contact_fields"] == [{"property": "email", "label": "Email", "help_text": None, "required": True}]
    assert (own["collect_billing_address"], own["collect_shipping_address"]) == (False, False)
    assert own["after_completion"] == {"type": "message"}
    # null for a field that cannot be empty means "the default" on a new link
    nulls = await create(api, link_body(contact_fields=None, payment_methods=None, collect_billing_address=None))
    assert nulls["contact_fields"] == inherited["contact_fields"] and nulls["collect_billing_address"] is True

    # new defaults change new links only; shipping the account stopped is not inherited
    changed = await api.patch(
        "/v1/account", {"shipping_enabled": False, "payment_link_defaults": {"checkout_text": "<p>New</p>"}}
    )
    assert changed.status == 200, changed.body
    assert (await read(api, inherited["id"]))["checkout_text"] == "<p>Welcome <b>back</b></p>"
    later = await create(api)
    assert later["checkout_text"] == "<p>New</p>" and later["collect_shipping_address"] is False
    assert later["contact_fields"] == inherited["contact_fields"]  # the defaults' other values stay

    # an inherited deal-creation stage that does not exist is refused, and says where it came from
    bogus = await api.patch(
        "/v1/account", {"payment_link_defaults": {"create_deal": {"pipeline": "pipeline_gone", "stage": "stage_gone"}}}
    )
    assert bogus.status == 200, bogus.body
    await refused(
        await api.post("/v1/payment_links", link_body()), "create_deal.pipeline", "no such pipeline", "inherited"
    )
    assert (await api.post("/v1/payment_links", link_body(create_deal=None))).status == 201


# -- deal creation and pipelines ---------------------------------------------------------------------------
async def test_deal_creation_names_a_pipeline_and_one_of_its_stages(shop, new_shop):
    api = shop.api
    default = await default_pipeline(api)
    assert [s["kind"] for s in default["stages"]].count("closed_won") == 1
    assert [s["kind"] for s in default["stages"]].count("closed_lost") == 1
    assert default["stages"][0]["kind"] == "open"
    renewals = (
        await api.post(
            "/v1/pipelines",
            {
                "name": "Renewals",
                "stages": [
                    {"name": "Due"},
                    {"name": "Won", "kind": "closed_won"},
                    {"name": "Lost", "kind": "closed_lost"},
                ],
            },
        )
    ).body
    won = stage(renewals, "closed_won")
    in_renewals = await until_known(
        lambda: api.post("/v1/payment_links", link_body(create_deal={"pipeline": renewals["id"], "stage": won["id"]}))
    )
    assert in_renewals.status == 201, in_renewals.body
    assert in_renewals.body["create_deal"] == {"pipeline": renewals["id"], "stage": won["id"]}
    by_default = await create(
        api, link_body(create_deal={"pipeline": default["id"], "stage": default["stages"][0]["id"]})
    )
    assert by_default["create_deal"]["pipeline"] == default["id"]

    theirs = await default_pipeline(new_shop("Other").api)
    for deal, field, words in (
        ({"pipeline": "pipeline_nope", "stage": won["id"]}, "create_deal.pipeline", ("no such pipeline",)),
        (
            {"pipeline": renewals["id"], "stage": default["stages"][0]["id"]},
            "create_deal.stage",
            ("not a stage of that pipeline",),
        ),
        ({"pipeline": renewals["id"], "stage": "stage_nope"}, "create_deal.stage", ("not a stage",)),
        ({"pipeline": theirs["id"], "stage": theirs["stages"][0]["id"]}, "create_deal.pipeline", ("no such pipeline",)),
        ({"pipeline": renewals["id"]}, "create_deal.stage", ()),
        ({"pipeline": "", "stage": won["id"]}, "create_deal.pipeline", ()),
    ):
        await refused(await api.post("/v1/payment_links", link_body(create_deal=deal)), field, *words)
    # switched off with null
    off = await api.patch(f"/v1/payment_links/{by_default['id']}", {"create_deal": None})
    assert off.status == 200 and off.body["create_deal"] is None


async def test_a_links_own_deal(api):
    deal = (await api.post("/v1/deals", {"name": "Consulting", "amount": 5000, "currency": "USD"})).body
    linked = await until_known(lambda: api.post("/v1/payment_links", link_body(deal_id=deal["id"])))
    assert linked.status == 201, linked.body
    assert linked.body["deal_id"] == deal["id"] and linked.body["create_deal"] is None
    await refused(await api.post("/v1/payment_links", link_body(deal_id="deal_nope")), "deal_id", "no such deal")
    await refused(
        await api.patch(f"/v1/payment_links/{linked.body['id']}", {"deal_id": "deal_nope"}), "deal_id", "no such deal"
    )
    cleared = await api.patch(f"/v1/payment_links/{linked.body['id']}", {"deal_id": None})
    assert cleared.status == 200 and cleared.body["deal_id"] is None


async def test_payments_join_the_links_open_deal_until_it_is_closed(api, new_buyer):
    pipeline = await default_pipeline(api)
    rule = {"pipeline": pipeline["id"], "stage": pipeline["stages"][0]["id"]}
    made = await until_known(lambda: api.post("/v1/payment_links", link_body(name="Retainer", create_deal=rule)))
    assert made.status == 201, made.body
    link = made.body

    async def deals_of(payment_id: str) -> list[str]:
        return (await api.get(f"/v1/payments/{payment_id}")).body["deal_ids"]

    first = await pay(new_buyer(), link["url"], unique_email("first"), firstname="Ada")
    (deal_id,) = await eventually(lambda: deals_of(first["payment_id"]), timeout=WAIT)
    deal = (await api.get(f"/v1/deals/{deal_id}")).body
    assert (deal["stage"], deal["stage_kind"], deal["created_by_link_id"]) == (rule["stage"], "open", link["id"])
    second = await pay(new_buyer(), link["url"], unique_email("second"))
    assert await eventually(lambda: deals_of(second["payment_id"]), timeout=WAIT) == [deal_id]
    associated = (await api.get(f"/v1/deals/{deal_id}/associations")).body
    assert sorted(associated["payments"]) == sorted([first["payment_id"], second["payment_id"]])
    assert associated["payment_links"] == [link["id"]]

    assert (await api.patch(f"/v1/deals/{deal_id}", {"stage": stage(pipeline, "closed_won")["id"]})).status == 200
    third = await pay(new_buyer(), link["url"], unique_email("third"))
    (new_deal,) = await eventually(lambda: deals_of(third["payment_id"]), timeout=WAIT)
    assert new_deal != deal_id


# -- list, search, read ---------------------------------------------------------------------------------
async def test_list_pages_newest_first_and_filters_by_name_and_state(api, new_shop):
    names = ["Alpha coffee", "Beta tea", "Gamma COFFEE 100%", "Delta_x", "Epsilon"]
    made = [await create(api, link_body(name=name, active=name != "Beta tea")) for name in names]
    gone = await create(api, link_body(name="Zeta coffee (deleted)"))
    assert (await api.request("DELETE", f"/v1/payment_links/{gone['id']}")).status == 200
    newest_first = [link["id"] for link in reversed(made)]

    seen, cursor, pages = [], None, []
    while True:
        r = await api.get("/v1/payment_links?limit=2" + (f"&starting_after={cursor}" if cursor else ""))
        assert r.status == 200, r.body
        pages.append(r.body["has_more"])
        seen += [link["id"] for link in r.body["data"]]
        if not r.body["has_more"]:
            break
        cursor = r.body["data"][-1]["id"]
    assert seen == newest_first and pages == [True, True, False]
    full = (await api.get("/v1/payment_links")).body
    assert full["object"] == "list" and full["data"][0] == await read(api, made[-1]["id"])

    async def names_of(query: str) -> list[str]:
        r = await api.get(f"/v1/payment_links?{query}")
        assert r.status == 200, r.body
        return [link["name"] for link in r.body["data"]]

    assert await names_of("query=coffee") == ["Gamma COFFEE 100%", "Alpha coffee"]  # any case, deleted left out
    assert await names_of("query=%25") == ["Gamma COFFEE 100%"]  # % and _ are plain characters
    assert await names_of("query=_") == ["Delta_x"]
    assert await names_of("query=nothing") == []
    assert await names_of("active=false") == ["Beta tea"]
    assert await names_of("active=true&query=COFFEE&limit=1") == ["Gamma COFFEE 100%"]
    # another account sees none of them
    assert (await new_shop("Other").api.get("/v1/payment_links")).body["data"] == []


async def test_read_is_404_for_unknown_ids_and_other_accounts(api, new_shop):
    link = await create(api)
    assert await read(api, link["id"]) == link
    other = new_shop("Other").api
    for path in ("", "/preview", "/embed"):
        assert_problem(await other.get(f"/v1/payment_links/{link['id']}{path}"), 404)
        assert_problem(await api.get(f"/v1/payment_links/plink_unknown{path}"), 404)
    assert_problem(await other.patch(f"/v1/payment_links/{link['id']}", {"name": "Mine"}), 404)
    assert_problem(await other.post(f"/v1/payment_links/{link['id']}/clone"), 404)
    assert_problem(await other.request("DELETE", f"/v1/payment_links/{link['id']}"), 404)
    assert await read(api, link["id"]) == link


# -- edit -----------------------------------------------------------------------------------------------
async def test_an_edit_changes_only_the_fields_given(api):
    rate = (await api.post("/v1/tax_rates", {"name": "VAT", "percentage": "25"})).body
    link = await create(
        api,
        link_body(
            {**ITEM, "tax_rate_id": rate["id"]},
            checkout_text="<p>Hi</p>",
            order_discount={"name": "Launch", "amount_off": 100},
            allow_discount_codes=True,
            after_completion={"type": "redirect", "url": "https://shop.example/ok"},
        ),
    )
    assert (await api.post("/v1/test_clock/advance", {"to": "2031-01-15T12:00:00Z"})).status == 200
    renamed = await api.patch(f"/v1/payment_links/{link['id']}", {"name": "Renamed"})
    assert renamed.status == 200, renamed.body
    unchanged = {k: v for k, v in link.items() if k not in ("name", "updated_at")}
    assert {k: v for k, v in renamed.body.items() if k not in ("name", "updated_at")} == unchanged
    assert renamed.body["name"] == "Renamed" and renamed.body["updated_at"].startswith("2031-01-15T12:")
    assert renamed.body["url"] == link["url"]  # the stable URL never changes
    assert await read(api, link["id"]) == renamed.body
    assert (await api.patch(f"/v1/payment_links/{link['id']}", {})).body["name"] == "Renamed"

    # line_items replace the list (new item ids); the other settings stay
    items = await api.patch(
        f"/v1/payment_links/{link['id']}",
        {"line_items": [{"name": "Tea", "unit_amount": 900}, {"name": "Pot", "unit_amount": 3000}]},
    )
    assert items.status == 200, items.body
    assert [(li["name"], li["unit_amount"]) for li in items.body["line_items"]] == [("Tea", 900), ("Pot", 3000)]
    assert items.body["line_items"][0]["id"] != link["line_items"][0]["id"]
    assert items.body["order_discount"] == link["order_discount"] and items.body["checkout_text"] == "<p>Hi</p>"

    # null clears what may be empty
    cleared = await api.patch(
        f"/v1/payment_links/{link['id']}", {"checkout_text": None, "order_discount": None, "after_completion": None}
    )
    assert cleared.status == 200, cleared.body
    assert (cleared.body["checkout_text"], cleared.body["order_discount"]) == (None, None)
    assert cleared.body["after_completion"] == {"type": "message"}
    assert cleared.body["allow_discount_codes"] is True


@pytest.mark.parametrize(
    "field",
    ["name", "active", "currency", "line_items", "allow_discount_codes", "contact_fields", "payment_methods",
     "collect_billing_address", "collect_shipping_address", "deactivate_after_payment"],
)  # fmt: skip
async def test_an_edit_may_not_null_a_field_that_cannot_be_empty(api, field):
    link = await create(api)
    await refused(await api.patch(f"/v1/payment_links/{link['id']}", {field: None}), field, "may not be null")
    assert await read(api, link["id"]) == link


@pytest.mark.parametrize("field", list(READ_ONLY))
async def test_an_edit_may_not_set_read_only_fields(api, field):
    link = await create(api)
    await refused(
        await api.patch(f"/v1/payment_links/{link['id']}", {"name": "Sneaky", field: READ_ONLY[field]}),
        field,
        "not a known field",
    )
    assert await read(api, link["id"]) == link


async def test_edits_are_validated_like_new_links_and_a_refusal_changes_nothing(api):
    assert (await api.patch("/v1/account", {"currencies": ["USD", "EUR"]})).status == 200
    link = await create(api, link_body(payment_methods=["card", "us_bank_account"]))
    path = f"/v1/payment_links/{link['id']}"
    for change, field, words in (
        ({"currency": "EUR"}, "currency", ("line items again",)),
        ({"currency": "EUR", "line_items": [ITEM]}, "payment_methods[1]", ("us_bank_account", "not available for EUR")),
        ({"currency": "KWD", "line_items": [ITEM]}, "currency", ("KWD", "does not offer")),
        ({"line_items": [{"name": "Gum", "unit_amount": 20}]}, "line_items", ("$0.50",)),
        ({"order_discount": {"name": "All", "percent_off": "100"}}, "line_items", ("$0.50", "$0.00")),
        ({"line_items": []}, "line_items", ()),
        ({"payment_methods": ["card", "sepa_debit"]}, "payment_methods[1]", ("sepa_debit", "not available for USD")),
        ({"payment_methods": ["card", "card"]}, "payment_methods", ("repeat",)),
        ({"contact_fields": [{"property": "zip"}, {"property": "zip"}]}, "contact_fields", ("listed twice",)),
    ):
        await refused(await api.patch(path, change), field, *words)
        assert await read(api, link["id"]) == link, change
    moved = await api.patch(path, {"currency": "eur", "line_items": [ITEM], "payment_methods": ["sepa_debit", "card"]})
    assert moved.status == 200, moved.body
    assert (moved.body["currency"], moved.body["payment_methods"]) == ("EUR", ["sepa_debit", "card"])


# -- clone, delete, on/off ----------------------------------------------------------------------------
async def test_a_clone_has_a_new_id_and_url_and_the_same_options(api, buyer):
    link = await create(
        api,
        link_body(
            ITEM,
            {"name": "Club", "unit_amount": 900, "optional": True, "recurring": {"interval": "monthly", "payments": 3}},
            name="n" * 200,
            checkout_text="<p>Hi</p>",
            order_discount={"name": "Launch", "percent_off": "10"},
            allow_discount_codes=True,
            contact_fields=[{"property": "phone", "label": "Mobile", "required": True}],
            deactivate_after_payment=True,
            active=False,
        ),
    )
    r = await api.post(f"/v1/payment_links/{link['id']}/clone")
    assert r.status == 201, r.body
    clone = r.body
    assert clone["id"] != link["id"] and clone["url"] != link["url"]
    assert clone["name"] == ("Copy of " + "n" * 200)[:200]
    assert clone["active"] is True  # a copy is ready to share (decision 20)
    assert [li["id"] for li in clone["line_items"]] != [li["id"] for li in link["line_items"]]
    strip = lambda items: [{k: v for k, v in li.items() if k != "id"} for li in items]  # noqa: E731
    assert strip(clone["line_items"]) == strip(link["line_items"])
    same = ("currency", "order_discount", "allow_discount_codes", "create_deal", "deal_id", "checkout_text",
            "contact_fields", "payment_methods", "collect_billing_address", "collect_shipping_address",
            "after_completion", "deactivate_after_payment", "embeddable", "crm_record")  # fmt: skip
    assert {k: clone[k] for k in same} == {k: link[k] for k in same}
    # the copy is its own link: editing one leaves the other
    assert (await api.patch(f"/v1/payment_links/{clone['id']}", {"checkout_text": "<p>Changed</p>"})).status == 200
    assert (await read(api, link["id"]))["checkout_text"] == "<p>Hi</p>"
    assert (await open_link(buyer, clone["url"])).status == 303
    assert (await open_link(buyer, link["url"])).status == 410
    short = await create(api, link_body(name="Beans"))
    assert (await api.post(f"/v1/payment_links/{short['id']}/clone")).body["name"] == "Copy of Beans"


async def test_a_deleted_link_is_gone_everywhere(api, buyer, checkout_db):
    link = await create(api)
    await buyer.open(link["url"])  # a session opened before the delete
    sessions = await sessions_of(checkout_db, link["id"])
    deleted = await api.request("DELETE", f"/v1/payment_links/{link['id']}")
    assert deleted.status == 200
    assert deleted.body == {"id": link["id"], "object": "payment_link", "deleted": True}
    path = f"/v1/payment_links/{link['id']}"
    assert_problem(await api.get(path), 404)
    assert_problem(await api.patch(path, {"name": "Back"}), 404)
    assert_problem(await api.post(f"{path}/clone"), 404)
    assert_problem(await api.get(f"{path}/embed"), 404)
    assert_problem(await api.get(f"{path}/preview"), 404)
    assert_problem(await api.request("DELETE", path), 404)
    assert link["id"] not in [li["id"] for li in (await api.get("/v1/payment_links")).body["data"]]
    opened = await open_link(buyer, link["url"])
    assert opened.status == 404 and "does not exist" in opened.body
    assert await sessions_of(checkout_db, link["id"]) == sessions  # no new session


async def test_turning_a_link_off_and_on(api, buyer):
    link = await create(api)
    off = await api.patch(f"/v1/payment_links/{link['id']}", {"active": False})
    assert off.status == 200 and off.body["active"] is False
    page = await open_link(buyer, link["url"])
    assert page.status == 410
    assert page.headers["Content-Type"].startswith("text/html")
    assert "no longer available" in page.body
    assert link["id"] in [li["id"] for li in (await api.get("/v1/payment_links?active=false")).body["data"]]
    on = await api.patch(f"/v1/payment_links/{link['id']}", {"active": True})
    assert on.status == 200 and on.body["active"] is True
    again = await open_link(buyer, link["url"])
    assert again.status == 303 and again.headers["Location"].startswith("/checkout/")
    created_off = await create(api, link_body(active=False))
    assert (await open_link(buyer, created_off["url"])).status == 410


async def test_a_session_opened_before_the_link_was_turned_off_takes_no_payment(api, new_buyer):
    link = await create(api, link_body(deactivate_after_payment=True))
    first, second = new_buyer(), new_buyer()
    await first.open(link["url"])
    await second.open(link["url"])
    paid = await pay(first, link["url"], unique_email("first"))  # (opens a third session and pays it)
    assert paid["payment_id"] and (await read(api, link["id"]))["active"] is False
    # a buyer who had the page open before the first payment cannot pay a one-off link twice
    submitted = await second.submit({"email": unique_email("second")})
    assert submitted.status == 410, submitted.body
    assert len((await api.get(f"/v1/payments?payment_link_id={link['id']}")).body["data"]) == 1


async def test_a_one_off_link_is_charged_for_one_buyer_at_a_time(api, new_buyer, stack):
    """Two buyers with a one-off link's page open: while the first one's charge may still
    succeed (waiting for 3-D Secure), the second is asked to wait (409, nothing charged);
    once the first has paid, the link is off and the second's attempt is 410."""
    from tests.support.processor import THREE_D_SECURE_CARD, TestProcessor

    link = await create(api, link_body(deactivate_after_payment=True))
    first, second = new_buyer(), new_buyer()
    processor = TestProcessor(first.session, first.processor_url)
    for buyer, email in ((first, "first"), (second, "second")):
        await buyer.open(link["url"])
        submitted = await buyer.submit({"email": unique_email(email)})
        assert submitted.status == 200, submitted.body
        buyer.secret = submitted.body["payment"]["client_secret"]
    confirmed = await processor.confirm_card_setup(first.secret, THREE_D_SECURE_CARD)
    assert confirmed["status"] == "succeeded", confirmed
    waiting = await first.complete()
    assert waiting.status == 402 and waiting.body["status"] == "requires_action", waiting.body

    assert (await second.confirm_card(second.secret))["http_status"] == 200
    busy = await second.complete()
    assert busy.status == 409, busy.body
    assert "right now" in busy.body["detail"]

    authenticated = await processor.authenticate(waiting.body["client_secret"])
    assert authenticated["status"] == "succeeded", authenticated
    paid = await first.complete()
    assert paid.status == 200 and paid.body["status"] == "complete", paid.body
    assert (await read(api, link["id"]))["active"] is False
    gone = await second.complete()
    assert gone.status == 410, gone.body
    payments = (await api.get(f"/v1/payments?payment_link_id={link['id']}")).body["data"]
    assert [p["id"] for p in payments] == [paid.body["payment_id"]]


async def test_a_session_of_a_link_turned_off_or_deleted_takes_no_payment(api, new_buyer):
    for action in ("off", "delete"):
        link = await create(api, link_body())
        buyer = new_buyer()
        await buyer.open(link["url"])
        submitted = await buyer.submit({"email": unique_email(action)})
        assert submitted.status == 200, submitted.body
        assert (await buyer.confirm_card(submitted.body["payment"]["client_secret"]))["http_status"] == 200
        if action == "off":
            assert (await api.patch(f"/v1/payment_links/{link['id']}", {"active": False})).status == 200
        else:
            assert (await api.request("DELETE", f"/v1/payment_links/{link['id']}")).status in (200, 204)
        refused = await buyer.complete()
        assert refused.status == 410, (action, refused.body)
        assert (await buyer.submit({"email": unique_email(action)})).status == 410


# -- preview, test mode, embed ---------------------------------------------------------------------------
async def test_preview_renders_the_buyers_page_without_a_session(api, checkout_db):
    link = await create(
        api,
        link_body(
            ITEM,
            {"name": "Mug <b>", "unit_amount": 900},
            name="Secret internal name",
            checkout_text="<p>Free <strong>returns</strong><script>x()</script></p>",
        ),
    )
    r = await api.get(f"/v1/payment_links/{link['id']}/preview")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/html")
    html = r.body
    assert "Preview" in html and "Nothing can be paid here" in html
    assert "Coffee beans, 1 kg" in html and "Mug &lt;b&gt;" in html
    assert "$34.00" in html  # 2 × 12.50 + 9.00
    assert "<p>Free <strong>returns</strong></p>" in html and "x()" not in html  # the sanitised checkout text
    assert "Secret internal name" not in html  # buyers never see the link's name
    assert "checkout.js" not in html  # nothing to pay with
    assert await sessions_of(checkout_db, link["id"]) == 0
    # an inactive link can still be previewed
    assert (await api.patch(f"/v1/payment_links/{link['id']}", {"active": False})).status == 200
    assert (await api.get(f"/v1/payment_links/{link['id']}/preview")).status == 200
    assert await sessions_of(checkout_db, link["id"]) == 0


async def test_test_mode_opens_one_time_links_and_refuses_recurring_ones(new_shop, new_buyer):
    live = new_shop("Live shop", test_mode=False)
    one_time = await create(live.api)
    buyer = new_buyer()
    r = await open_link(buyer, one_time["url"] + "?test=1")
    assert r.status == 303, r.body
    buyer.token = r.headers["Location"].rsplit("/", 1)[1]
    view = (await buyer.view()).body
    assert view["processor"]["type"] == "test" and view["status"] == "open"
    # the test card pays it through the test processor
    paid = await pay(new_buyer(), one_time["url"] + "?test=1", unique_email("tester"))
    assert (await live.api.get(f"/v1/payments/{paid['payment_id']}")).body["amount"] == 2500

    recurring = await create(
        live.api, link_body(ITEM, {"name": "Club", "unit_amount": 900, "recurring": {"interval": "monthly"}})
    )
    refused_page = await open_link(new_buyer(), recurring["url"] + "?test=1")
    assert refused_page.status == 409
    assert refused_page.headers["Content-Type"].startswith("text/html")
    assert "recurring" in refused_page.body and "test mode" in refused_page.body
    # an optional recurring item counts too
    optional = await create(
        live.api,
        link_body(ITEM, {"name": "Club", "unit_amount": 900, "optional": True, "recurring": {"interval": "weekly"}}),
    )
    assert (await open_link(new_buyer(), optional["url"] + "?test=1")).status == 409


async def test_embed_code_only_for_fixed_items_charged_at_checkout(api):
    fixed = await create(
        api,
        link_body(
            ITEM,
            {
                "name": "Club",
                "unit_amount": 900,
                "recurring": {"interval": "monthly"},
                "unit_discount": {"amount_off": 100},
            },
            name='Beans & "more"',
        ),
    )
    assert fixed["embeddable"] is True
    r = await api.get(f"/v1/payment_links/{fixed['id']}/embed")
    assert r.status == 200, r.body
    assert r.body["url"] == fixed["url"]
    html = r.body["html"]
    assert html.startswith("<a ") and f'href="{fixed["url"]}"' in html
    assert "Beans &amp; &quot;more&quot;" in html and "<script" not in html

    later = {"interval": "monthly", "start": {"delay_days": 7}}
    for extra, reason in (
        ({"name": "Grinder", "unit_amount": 6000, "optional": True}, "'Grinder' is optional"),
        ({"name": "Seats", "unit_amount": 900, "adjustable_quantity": {"minimum": 1, "maximum": 3}},
         "the buyer can change the quantity of 'Seats'"),
        ({"name": "Tip", "custom_amount": {}}, "the buyer chooses the price of 'Tip'"),
        ({"name": "Plan", "unit_amount": 900, "recurring": later}, "'Plan' starts billing after checkout"),
    ):  # fmt: skip
        link = await create(api, link_body(ITEM, extra))
        assert link["embeddable"] is False
        problem = assert_problem(await api.get(f"/v1/payment_links/{link['id']}/embed"), 409)
        assert "cannot be embedded" in problem["detail"] and reason in problem["detail"], problem
        # editing the items makes it embeddable
        fixed_now = await api.patch(f"/v1/payment_links/{link['id']}", {"line_items": [ITEM]})
        assert fixed_now.body["embeddable"] is True
        assert (await api.get(f"/v1/payment_links/{link['id']}/embed")).status == 200


async def test_scopes_of_the_management_actions(api, stack, session):
    link = await create(api)
    reader_key = (await api.post("/v1/api_keys", {"scopes": ["links:read"]})).body["key"]
    reader = CheckedApi(session, stack.config.base_url, reader_key)
    for path in ("", "/preview", "/embed"):
        assert (await reader.get(f"/v1/payment_links/{link['id']}{path}")).status == 200
    assert_problem(await reader.patch(f"/v1/payment_links/{link['id']}", {"name": "x"}), 403)
    assert_problem(await reader.post(f"/v1/payment_links/{link['id']}/clone"), 403)
    assert_problem(await reader.request("DELETE", f"/v1/payment_links/{link['id']}"), 403)
    assert await read(api, link["id"]) == link


# -- simplified links from a CRM record ---------------------------------------------------------------
SIMPLE = {"name": "Invoice 7", "item_name": "Consulting, March", "unit_amount": 15000, "currency": "USD"}


async def make_record(api: CheckedApi, kind: str) -> dict:
    bodies = {
        "contacts": {"email": unique_email("source")},
        "companies": {"name": f"Source Co {uuid.uuid4().hex[:6]}"},
        "deals": {"name": "Big order", "amount": 15000, "currency": "USD"},
    }
    created = await api.post(f"/v1/{kind}", bodies[kind])
    assert created.status == 201, created.body
    return created.body


@pytest.mark.parametrize(
    ("kind", "record_type"), [("contacts", "contact"), ("companies", "company"), ("deals", "deal")]
)
async def test_a_simplified_link_turns_off_after_its_first_payment(api, new_buyer, kind, record_type):
    record = await make_record(api, kind)
    made = await until_known(lambda: api.post(f"/v1/{kind}/{record['id']}/payment_links", SIMPLE))
    assert made.status == 201, made.body
    link = made.body
    (item,) = link["line_items"]
    assert (link["name"], link["currency"], link["active"]) == ("Invoice 7", "USD", True)
    assert (item["name"], item["quantity"], item["unit_amount"], item["recurring"], item["optional"]) == (
        "Consulting, March", 1, 15000, None, False,
    )  # fmt: skip
    assert link["deactivate_after_payment"] is True
    assert link["crm_record"] == {"type": record_type, "id": record["id"]}
    assert link["deal_id"] == (record["id"] if kind == "deals" else None)
    assert link["embeddable"] is True

    payer = unique_email("payer")
    paid = await pay(new_buyer(), link["url"], payer)
    assert (await read(api, link["id"]))["active"] is False
    assert (await open_link(new_buyer(), link["url"])).status == 410

    async def payer_payments() -> list[str] | None:
        found = (await api.get(f"/v1/contacts?email={payer}")).body["data"]
        return (found and (await api.get(f"/v1/contacts/{found[0]['id']}/associations")).body["payments"]) or None

    assert await eventually(payer_payments, timeout=WAIT) == [paid["payment_id"]]
    # the link is associated with its record (from its creation, PRODUCT §3.4); the payment
    # belongs to whoever paid (§9) — and, from a deal, to that deal
    linked = (await api.get(f"/v1/{kind}/{record['id']}/associations")).body
    assert linked["payment_links"] == [link["id"]]
    if kind == "deals":

        async def deal_payments() -> list[str] | None:
            return (await api.get(f"/v1/deals/{record['id']}/associations")).body["payments"] or None

        assert await eventually(deal_payments, timeout=WAIT) == [paid["payment_id"]]
    else:
        assert linked["payments"] == []

    # it can be edited like any link, and turned on again
    again = await api.patch(f"/v1/payment_links/{link['id']}", {"active": True, "name": "Invoice 7 (again)"})
    assert again.status == 200 and again.body["crm_record"] == link["crm_record"]


async def test_a_simplified_link_that_stays_on_and_its_refusals(api, new_shop):
    contact = await make_record(api, "contacts")
    path = f"/v1/contacts/{contact['id']}/payment_links"
    made = await until_known(lambda: api.post(path, {**SIMPLE, "deactivate_after_payment": False}))
    assert made.status == 201, made.body
    assert made.body["deactivate_after_payment"] is False
    for change, field, words in (
        ({"unit_amount": 49}, "unit_amount", ("$0.50",)),
        ({"unit_amount": 0}, "unit_amount", ()),
        ({"currency": "KWD"}, "currency", ("KWD", "does not offer")),
        ({"currency": "EUR"}, "currency", ("not enabled",)),
        ({"item_name": ""}, "item_name", ()),
        ({"name": None}, "name", ()),
        ({"line_items": [ITEM]}, "line_items", ("not a known field",)),
        ({"recurring": {"interval": "monthly"}}, "recurring", ("not a known field",)),
    ):
        await refused(await api.post(path, {**SIMPLE, **change}), field, *words)
    assert_problem(await api.post("/v1/contacts/contact_nope/payment_links", SIMPLE), 404)
    assert_problem(await api.post("/v1/deals/deal_nope/payment_links", SIMPLE), 404)
    theirs = await make_record(new_shop("Other").api, "companies")
    assert_problem(await api.post(f"/v1/companies/{theirs['id']}/payment_links", SIMPLE), 404)
