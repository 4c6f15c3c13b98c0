"""TARGETS R9 through the API: one account's key used on another account's objects.

Two accounts, each with a payment link, a paid payment, the contact, receipt and ledger
entry that payment made, and a spare API key. With either account's key:
- every admin endpoint that takes an id answers 404 — never 403 or 200 — for the other
  account's object, with the same body as for an id that never existed, and changes
  nothing;
- no list returns the other account's objects, whatever filter or cursor names them;
- the singular endpoints (/v1/account, processor, test clock) show only the caller's;
- the buyer surface reveals nothing across accounts: public tokens are not object ids,
  one session's CSRF token does not open another, pages and session JSON carry only
  their own merchant's data and no secrets;
- an Idempotency-Key is scoped to its account; a test clock too.

The endpoint tables below are the data; `test_every_route_is_classified` fails when a
service grows an admin route that is in none of them.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

import services
from tests.support.client import Buyer
from tests.support.problems import CheckedApi, assert_problem
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class ById:
    """An admin endpoint that names one object in its path; ``{param}`` is filled with an
    object of `World` (see `PARAMS`)."""

    method: str
    path: str
    body: dict | None = None


@dataclass(frozen=True)
class Listing:
    """A list endpoint; ``{param}`` in the query is filled with the owner's or the
    intruder's object; ``kind`` is the kind of object listed. ``own`` (default): filled
    with the caller's own objects, the list shows the caller's object of that kind."""

    path: str
    kind: str
    own: bool = True


#: path parameter -> the kind of object that fills it
PARAMS = {
    "link_id": "link",
    "payment_id": "payment",
    "contact_id": "contact",
    "key_id": "spare_key",
    "email": "email",
    "product_id": "product",
    "tax_rate_id": "tax_rate",
    "discount_code_id": "discount_code",
    "company_id": "company",
    "company_name": "company_name",
    "deal_id": "deal",
    "pipeline_id": "pipeline",
    "subscription_id": "subscription",
    "invoice_id": "invoice",
    "quote_id": "quote",
    "webhook_endpoint_id": "webhook_endpoint",  # outbound webhooks (issue 5, part 4)
}

BY_ID: list[ById] = [
    ById("GET", "/v1/payment_links/{link_id}"),
    ById("PATCH", "/v1/payment_links/{link_id}", {"name": "Renamed by an intruder"}),
    ById("DELETE", "/v1/payment_links/{link_id}"),
    ById("POST", "/v1/payment_links/{link_id}/clone", {}),
    ById("GET", "/v1/payment_links/{link_id}/embed"),
    ById("GET", "/v1/payment_links/{link_id}/preview"),
    ById(
        "POST",
        "/v1/contacts/{contact_id}/payment_links",
        {"name": "Intruder", "item_name": "X", "unit_amount": 1000, "currency": "USD"},
    ),
    ById(
        "POST",
        "/v1/companies/{company_id}/payment_links",
        {"name": "Intruder", "item_name": "X", "unit_amount": 1000, "currency": "USD"},
    ),
    ById(
        "POST",
        "/v1/deals/{deal_id}/payment_links",
        {"name": "Intruder", "item_name": "X", "unit_amount": 1000, "currency": "USD"},
    ),
    ById("GET", "/v1/payments/{payment_id}"),
    ById("GET", "/v1/payments/{payment_id}/refunds"),
    ById("POST", "/v1/payments/{payment_id}/refunds", {"amount": 1}),
    ById("POST", "/v1/payments/{payment_id}/associations", {"deal_id": "deal_00000000000000000000000000"}),
    ById("GET", "/v1/contacts/{contact_id}"),
    ById("GET", "/v1/contacts/{contact_id}/associations"),
    ById("PATCH", "/v1/contacts/{contact_id}", {"firstname": "Intruder"}),
    ById("GET", "/v1/companies/{company_id}"),
    ById("PATCH", "/v1/companies/{company_id}", {"name": "Intruder"}),
    ById("GET", "/v1/companies/{company_id}/associations"),
    ById("GET", "/v1/deals/{deal_id}"),
    ById("PATCH", "/v1/deals/{deal_id}", {"name": "Intruder"}),
    ById("GET", "/v1/deals/{deal_id}/associations"),
    ById("GET", "/v1/pipelines/{pipeline_id}"),
    ById("POST", "/v1/api_keys/{key_id}/revoke", {}),
    ById("GET", "/v1/products/{product_id}"),
    ById("PATCH", "/v1/products/{product_id}", {"name": "Renamed by an intruder"}),
    ById("DELETE", "/v1/products/{product_id}"),
    ById("GET", "/v1/tax_rates/{tax_rate_id}"),
    ById("GET", "/v1/discount_codes/{discount_code_id}"),
    ById("POST", "/v1/discount_codes/{discount_code_id}/deactivate", {}),
    ById("GET", "/v1/subscriptions/{subscription_id}"),
    ById("PATCH", "/v1/subscriptions/{subscription_id}", {"metadata": {"by": "intruder"}}),
    ById("POST", "/v1/subscriptions/{subscription_id}/cancel", {"at_period_end": False}),
    ById("POST", "/v1/subscriptions/{subscription_id}/pause", {}),
    ById("POST", "/v1/subscriptions/{subscription_id}/resume", {}),
    ById("POST", "/v1/subscriptions/{subscription_id}/payment_method_link", {"rotate": True}),
    ById("GET", "/v1/invoices/{invoice_id}"),
    ById("GET", "/v1/invoices/{invoice_id}/document"),
    ById("POST", "/v1/invoices/{invoice_id}/void", {}),
    ById("POST", "/v1/invoices/{invoice_id}/mark_paid", {}),
    ById("POST", "/v1/invoices/{invoice_id}/mark_uncollectible", {}),
    ById("GET", "/v1/quotes/{quote_id}"),
    ById("PATCH", "/v1/quotes/{quote_id}", {"title": "Renamed by an intruder"}),
    ById("POST", "/v1/quotes/{quote_id}/publish", {}),
    ById("POST", "/v1/quotes/{quote_id}/recall", {}),
    ById("POST", "/v1/quotes/{quote_id}/convert_to_subscription", {}),
    # -- outbound webhooks (issue 5, part 4) --
    ById("GET", "/v1/webhook_endpoints/{webhook_endpoint_id}"),
    ById("PATCH", "/v1/webhook_endpoints/{webhook_endpoint_id}", {"events": ["payment.failed"]}),
    ById("DELETE", "/v1/webhook_endpoints/{webhook_endpoint_id}"),
    ById("POST", "/v1/webhook_endpoints/{webhook_endpoint_id}/retry", {}),
    ById("POST", "/v1/webhook_endpoints/{webhook_endpoint_id}/rotate_secret", {}),
    ById("GET", "/v1/webhook_endpoints/{webhook_endpoint_id}/deliveries"),
]

LISTS: list[Listing] = [
    Listing("/v1/payment_links", "link"),
    Listing("/v1/payment_links?limit=100", "link"),
    Listing("/v1/payment_links?starting_after={link_id}", "link", own=False),
    Listing("/v1/payments", "payment"),
    Listing("/v1/payments?payment_link_id={link_id}", "payment"),
    # own=False: checkout does not learn a payment's contact_id yet (crm_sync keeps it)
    Listing("/v1/payments?contact_id={contact_id}", "payment", own=False),
    Listing("/v1/payments?status=succeeded", "payment"),
    Listing("/v1/payments?starting_after={payment_id}", "payment", own=False),
    Listing("/v1/payments?created%5Bgte%5D=2000-01-01T00:00:00Z", "payment"),
    Listing("/v1/contacts", "contact"),
    Listing("/v1/contacts?email={email}", "contact"),
    Listing("/v1/companies", "company"),
    Listing("/v1/companies?name={company_name}", "company"),
    Listing("/v1/companies?starting_after={company_id}", "company", own=False),
    Listing("/v1/deals", "deal"),
    Listing("/v1/deals?company_id={company_id}", "deal"),
    Listing("/v1/deals?contact_id={contact_id}", "deal"),
    Listing("/v1/deals?pipeline={pipeline_id}", "deal"),
    Listing("/v1/pipelines", "pipeline"),
    Listing("/v1/emails", "email_record"),
    Listing("/v1/emails?to={email}", "email_record"),
    Listing("/v1/emails?kind=receipt", "email_record"),
    Listing("/v1/ledger_entries", "ledger_entry"),
    Listing("/v1/ledger_entries?payment_id={payment_id}", "ledger_entry"),
    Listing("/v1/ledger_entries?kind=payment", "ledger_entry"),
    Listing("/v1/api_keys", "api_key"),
    Listing("/v1/products", "product"),
    Listing("/v1/products?active=true", "product"),
    Listing("/v1/products?starting_after={product_id}", "product", own=False),
    Listing("/v1/tax_rates", "tax_rate"),
    Listing("/v1/tax_rates?starting_after={tax_rate_id}", "tax_rate", own=False),
    Listing("/v1/discount_codes", "discount_code"),
    Listing("/v1/discount_codes?active=true", "discount_code"),
    Listing("/v1/discount_codes?starting_after={discount_code_id}", "discount_code", own=False),
    Listing("/v1/subscriptions", "subscription"),
    Listing("/v1/subscriptions?status=active", "subscription"),
    Listing("/v1/subscriptions?starting_after={subscription_id}", "subscription", own=False),
    Listing("/v1/invoices", "invoice"),
    Listing("/v1/invoices?subscription_id={subscription_id}", "invoice"),
    Listing("/v1/invoices?status=open", "invoice"),
    Listing("/v1/quotes", "quote"),
    Listing("/v1/quotes?status=draft", "quote"),
    Listing("/v1/quotes?deal_id={deal_id}", "quote"),
    Listing("/v1/quotes?contact_id={contact_id}", "quote"),
    Listing("/v1/quotes?starting_after={quote_id}", "quote", own=False),
    # -- outbound webhooks and the event feed (issue 5, part 4) --
    Listing("/v1/webhook_endpoints", "webhook_endpoint"),
    Listing("/v1/events", "event"),
    Listing("/v1/events?limit=100", "event"),
]

#: GET endpoints about the caller's own account (no id in the path).
SINGULAR = ["/v1/account", "/v1/account/processor", "/v1/test_clock", "/v1/analytics/subscriptions"]

#: Admin routes that take no object id and list nothing: creating, changing the caller's
#: own account. Cross-account writes through them are the mass-assignment checks of
#: test_bad_input.py (account_id, id in bodies are refused).
OWN_ACCOUNT_WRITES = {
    ("POST", "/v1/payment_links"),
    ("POST", "/v1/contacts"),
    ("POST", "/v1/contacts/batch/upsert"),  # CRM bulk upserts (issue 5): the caller's own contacts
    ("POST", "/v1/companies"),
    ("POST", "/v1/deals"),
    ("POST", "/v1/pipelines"),
    ("PATCH", "/v1/account"),
    ("POST", "/v1/account/processor"),
    ("POST", "/v1/api_keys"),
    ("POST", "/v1/test_clock/advance"),
    ("POST", "/v1/products"),
    ("POST", "/v1/tax_rates"),
    ("POST", "/v1/discount_codes"),
    ("POST", "/v1/subscriptions"),
    ("POST", "/v1/analytics/dunning_dry_run"),
    ("POST", "/v1/quotes"),
    ("POST", "/v1/webhook_endpoints"),  # outbound webhooks (issue 5, part 4)
}


@dataclass
class Side:
    account_id: str
    key: str
    name: str
    email: str
    link: str = ""
    link_url: str = ""
    item_name: str = ""
    payment: str = ""
    contact: str = ""
    spare_key: str = ""
    spare_key_secret: str = ""
    email_record: str = ""
    ledger_entry: str = ""
    api_key: str = ""  # the id of the main key
    session_token: str = ""
    session_csrf: str = ""
    webhook_secret: str = ""
    product: str = ""
    tax_rate: str = ""
    discount_code: str = ""
    company: str = ""
    company_name: str = ""
    deal: str = ""
    pipeline: str = ""
    subscription: str = ""
    invoice: str = ""
    quote: str = ""
    webhook_endpoint: str = ""
    event: str = ""  # the first event of the account's feed

    def value(self, param: str) -> str:
        return getattr(self, PARAMS[param])

    def ids(self) -> set[str]:
        return {
            self.link,
            self.payment,
            self.contact,
            self.spare_key,
            self.email_record,
            self.ledger_entry,
            self.api_key,
            self.account_id,
            self.product,
            self.tax_rate,
            self.discount_code,
            self.company,
            self.deal,
            self.pipeline,
            self.subscription,
            self.invoice,
            self.quote,
            self.webhook_endpoint,
            self.event,
        }


@dataclass
class World:
    sides: dict[str, Side] = field(default_factory=dict)
    apis: dict[str, CheckedApi] = field(default_factory=dict)


def fill(template: str, side: Side) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: side.value(m.group(1)), template)


# -- the two accounts ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def new_buyer(session, stack) -> Buyer:
    buyer = Buyer(session, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")
    buyer.api = CheckedApi(session, stack.config.base_url)
    return buyer


@pytest.fixture(scope="module")
async def world(stack, session) -> World:
    w = World()
    for label in ("a", "b"):
        run = uuid.uuid4().hex[:6]
        created = stack.create_account(f"Isolation shop {label.upper()} {run}", "USD", True)
        side = Side(
            created["account_id"],
            created["api_key"],
            f"Isolation shop {label.upper()} {run}",
            f"buyer-{label}-{run}@example.com",
        )
        api = CheckedApi(session, stack.config.base_url, side.key)
        side.item_name = f"Item of {label.upper()} {run}"
        link = await api.post(
            "/v1/payment_links",
            {
                "name": f"Link {label} {run}",
                "currency": "USD",
                "line_items": [{"name": side.item_name, "unit_amount": 1500}],
            },
        )
        assert link.status == 201, link.body
        side.link, side.link_url = link.body["id"], link.body["url"]
        paid = await new_buyer(session, stack).pay(side.link_url, side.email, firstname=label.upper())
        assert paid.status == 200, paid.body
        side.payment = paid.body["payment_id"]
        spare = await api.post("/v1/api_keys", {"scopes": ["payments:read"]})
        assert spare.status == 201, spare.body
        side.spare_key, side.spare_key_secret = spare.body["id"], spare.body["key"]
        keys = (await api.get("/v1/api_keys")).body["data"]
        side.api_key = next(k["id"] for k in keys if k["id"] != side.spare_key)
        side.webhook_secret = (await api.get("/v1/account/processor")).body["webhook_secret"]
        opened = new_buyer(session, stack)
        side.session_token = await opened.open(side.link_url)
        side.session_csrf = opened.csrf
        w.sides[label], w.apis[label] = side, api

    for label, side in w.sides.items():  # the facts the purchase made in the other services
        api = w.apis[label]

        async def contact(api=api, side=side):
            return (await api.get(f"/v1/contacts?email={side.email}")).body["data"]

        async def receipt(api=api, side=side):
            return (await api.get(f"/v1/emails?to={side.email}")).body["data"]

        async def ledger(api=api, side=side):
            return (await api.get(f"/v1/ledger_entries?payment_id={side.payment}")).body["data"]

        side.contact = (await eventually(contact, timeout=30))[0]["id"]
        side.email_record = (await eventually(receipt, timeout=30))[0]["id"]
        side.ledger_entry = (await eventually(ledger, timeout=30))[0]["id"]
        associations = await api.get(f"/v1/contacts/{side.contact}/associations")
        assert side.payment in associations.body["payments"]
    for label, side in w.sides.items():  # CRM records of each account
        api, run = w.apis[label], uuid.uuid4().hex[:6]
        side.company_name = f"Company of {label.upper()} {run}"
        company = await api.post("/v1/companies", {"name": side.company_name})
        pipeline = await api.post("/v1/pipelines", {"name": f"Pipeline {run}", "stages": [{"name": "Open"}]})
        assert company.status == 201 and pipeline.status == 201, (company.body, pipeline.body)
        side.company, side.pipeline = company.body["id"], pipeline.body["id"]
        deal = await api.post(
            "/v1/deals",
            {
                "name": f"Deal of {label.upper()} {run}",
                "pipeline": side.pipeline,
                "company_id": side.company,
                "contact_ids": [side.contact],
            },
        )
        assert deal.status == 201, deal.body
        side.deal = deal.body["id"]
    for label, side in w.sides.items():  # the catalogue: one object of each kind per account
        api, run = w.apis[label], uuid.uuid4().hex[:6]
        for kind, path, body in (
            ("product", "/v1/products", {"name": f"Product {label} {run}", "unit_amount": 900, "currency": "USD"}),
            ("tax_rate", "/v1/tax_rates", {"name": f"Tax {label} {run}", "percentage": "8.875"}),
            ("discount_code", "/v1/discount_codes", {"code": f"ISO-{label}-{run}", "percent_off": "10"}),
        ):
            made = await api.post(path, body)
            assert made.status == 201, made.body
            setattr(side, kind, made.body["id"])
    for label, side in w.sides.items():  # a subscription invoiced today: its first invoice
        api = w.apis[label]
        sub = await api.post(
            "/v1/subscriptions",
            {
                "email": side.email,
                "currency": "USD",
                "interval": "monthly",
                "line_items": [{"name": f"Service of {label.upper()}", "quantity": 1, "unit_amount": 1200}],
                "collection": {"method": "send_invoice", "payment_terms_days": 30},
            },
        )
        assert sub.status == 201, sub.body
        side.subscription = sub.body["id"]

        async def invoice(api=api, side=side):
            return (await api.get(f"/v1/invoices?subscription_id={side.subscription}")).body["data"]

        side.invoice = (await eventually(invoice, timeout=30))[0]["id"]
        quote = await api.post(
            "/v1/quotes",
            {
                "title": f"Quote of {label.upper()}",
                "currency": "USD",
                "deal_id": side.deal,
                "contact_id": side.contact,
                "line_items": [{"name": f"Work for {label.upper()}", "quantity": 1, "unit_amount": 5000}],
            },
        )
        assert quote.status == 201, quote.body
        side.quote = quote.body["id"]
    for label, side in w.sides.items():  # outbound webhooks and the event feed (issue 5, part 4)
        api = w.apis[label]
        endpoint = await api.post(
            "/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/isolation", "events": ["*"], "description": side.name}
        )
        assert endpoint.status == 201, endpoint.body
        side.webhook_endpoint = endpoint.body["id"]
        await api.post("/v1/contacts", {"email": f"hooked-{side.email}"})  # an event with a delivery

        async def delivered_to(api=api, side=side):
            return (await api.get(f"/v1/webhook_endpoints/{side.webhook_endpoint}/deliveries")).body["data"]

        await eventually(delivered_to, timeout=30)
        side.event = (await api.get("/v1/events?limit=1")).body["data"][0]["id"]
    return w


PAIRS = [("a", "b"), ("b", "a")]


def nonexistent(value: str) -> str:
    """An id of the same shape that never existed."""
    prefix = value.rsplit("_", 1)[0]
    return f"{prefix}_{'0' * 26}"


# -- by id ------------------------------------------------------------------------------------------
async def probe_by_id(world: World, endpoint: ById, intruder: str, owner: str) -> list[str]:
    """Leaks found when ``intruder``'s key names ``owner``'s object (empty list: none)."""
    leaks: list[str] = []
    api, victim = world.apis[intruder], world.sides[owner]
    path = fill(endpoint.path, victim)
    foreign = await api.request(endpoint.method, path, json_body=endpoint.body)
    if foreign.status != 404:
        leaks.append(f"{endpoint.method} {endpoint.path} with {intruder}'s key on {owner}'s object: {foreign.status}")
        return leaks
    assert_problem(foreign, 404)
    text = str(foreign.body)
    for secret in victim.ids() - {fill(endpoint.path, victim).rsplit("/", 1)[-1]}:
        if secret and secret in text:
            leaks.append(f"{endpoint.method} {endpoint.path}: the 404 mentions {secret}")
    missing_path = re.sub(r"\{(\w+)\}", lambda m: nonexistent(victim.value(m.group(1))), endpoint.path)
    missing = await api.request(endpoint.method, missing_path, json_body=endpoint.body)
    assert missing.status == 404
    if {k: v for k, v in foreign.body.items()} != {k: v for k, v in missing.body.items()}:
        leaks.append(f"{endpoint.method} {endpoint.path}: another account's object answers unlike a missing one")
    if endpoint.method == "GET":  # the owner still reads it (writes: see the revoke test)
        own = await world.apis[owner].get(path)
        if own.status != 200:
            leaks.append(f"GET {endpoint.path}: the owner lost access ({own.status})")
    return leaks


@pytest.mark.parametrize("endpoint", BY_ID, ids=lambda e: f"{e.method} {e.path}")
@pytest.mark.parametrize(("intruder", "owner"), PAIRS)
async def test_another_accounts_object_is_404(world, endpoint, intruder, owner):
    assert await probe_by_id(world, endpoint, intruder, owner) == []


async def test_a_foreign_revoke_leaves_the_key_working(world, stack, session):
    for intruder, owner in PAIRS:
        victim = world.sides[owner]
        assert_problem(await world.apis[intruder].post(f"/v1/api_keys/{victim.spare_key}/revoke", {}), 404)
        keys = {k["id"]: k for k in (await world.apis[owner].get("/v1/api_keys")).body["data"]}
        assert keys[victim.spare_key]["revoked_at"] is None
        spare = CheckedApi(session, stack.config.base_url, victim.spare_key_secret)
        r = await spare.get(f"/v1/payments/{victim.payment}")
        assert r.status == 200 and r.body["id"] == victim.payment


# -- lists ---------------------------------------------------------------------------------------
async def probe_listing(world: World, listing: Listing, intruder: str, owner: str) -> list[str]:
    """``intruder`` lists with ``owner``'s objects in the query: nothing of ``owner`` may
    appear. The same list filled with the intruder's own objects must show its own object
    (so the check is not vacuous)."""
    leaks = []
    api, victim, me = world.apis[intruder], world.sides[owner], world.sides[intruder]
    foreign = await api.get(fill(listing.path, victim))
    if foreign.status != 200:
        return [f"{listing.path}: {foreign.status} {foreign.body}"]
    text = str(foreign.body)
    for secret in victim.ids() | {victim.email, victim.name, victim.item_name}:
        if secret and secret in text:
            leaks.append(f"GET {listing.path} with {intruder}'s key shows {owner}'s {secret}")
    if listing.own:
        own = await api.get(fill(listing.path, me))
        own_ids = [item["id"] for item in own.body["data"]]
        assert getattr(me, listing.kind) in own_ids, (listing.path, own_ids)
    return leaks


@pytest.mark.parametrize("listing", LISTS, ids=lambda entry: entry.path)
@pytest.mark.parametrize(("intruder", "owner"), PAIRS)
async def test_lists_never_show_another_accounts_objects(world, listing, intruder, owner):
    assert await probe_listing(world, listing, intruder, owner) == []


async def probe_singular(world: World, path: str, intruder: str, owner: str) -> list[str]:
    r = await world.apis[intruder].get(path)
    assert r.status == 200, r.body
    victim = world.sides[owner]
    text = str(r.body)
    return [
        f"GET {path} with {intruder}'s key shows {owner}'s {s}"
        for s in (victim.account_id, victim.name, victim.webhook_secret)
        if s in text
    ]


@pytest.mark.parametrize("path", SINGULAR)
@pytest.mark.parametrize(("intruder", "owner"), PAIRS)
async def test_the_callers_own_account_only(world, path, intruder, owner):
    assert await probe_singular(world, path, intruder, owner) == []
    me = world.sides[intruder]
    r = await world.apis[intruder].get(path)
    if path == "/v1/account":
        assert r.body["id"] == me.account_id and r.body["name"] == me.name
    if path == "/v1/account/processor":
        assert r.body["webhook_url"].endswith(f"/webhooks/stripe/{me.account_id}")
        assert r.body["webhook_secret"] == me.webhook_secret


# -- the buyer surface --------------------------------------------------------------------------
async def probe_public(world: World, stack, session, intruder: str, owner: str) -> list[str]:
    leaks = []
    buyer = new_buyer(session, stack)
    me, victim = world.sides[intruder], world.sides[owner]
    # object ids are not public tokens
    for path in (
        f"/pay/{me.link}",
        f"/checkout/{me.payment}",
        f"/api/checkout/{me.link}",
        f"/api/checkout/{me.payment}",
        f"/billing/payment-method/{me.subscription}",
        f"/api/payment-method/{me.subscription}",
        f"/invoices/{me.invoice}",
        f"/quotes/{me.quote}",
    ):
        r = await buyer.api.get(path)
        if r.status != 404:
            leaks.append(f"{path} answers {r.status}")
    # a session shows its own merchant and items, nothing of the other account, no secrets
    view = await buyer.api.get(f"/api/checkout/{me.session_token}")
    page = await buyer.api.get(f"/checkout/{me.session_token}")
    assert view.status == 200 and page.status == 200
    assert view.body["merchant"]["name"] == me.name and view.body["line_items"][0]["name"] == me.item_name
    assert me.name in page.body and me.item_name in page.body
    for text in (str(view.body), page.body):
        for secret in (
            victim.name,
            victim.item_name,
            victim.account_id,
            victim.link,
            victim.email,
            victim.webhook_secret,
            me.webhook_secret,
            me.account_id,
            "whsec_",
            "sk_test_",
            "ck_test_",
        ):
            if secret in text:
                leaks.append(f"the buyer surface of {intruder} shows {secret}")
    # one session's CSRF token does not open another's session, in either account
    r = await buyer.api.post(
        f"/api/checkout/{victim.session_token}",
        {"contact": {"email": "x@example.com"}},
        headers={"X-CSRF-Token": me.session_csrf},
    )
    if r.status != 403:
        leaks.append(f"{intruder}'s CSRF token opens {owner}'s session: {r.status}")
    # a session token or another account's key is no admin credential
    for token in (me.session_token, victim.session_token):
        r = await CheckedApi(session, stack.config.base_url, token).get("/v1/payments")
        if r.status != 401:
            leaks.append(f"a session token authenticates the admin API: {r.status}")
    return leaks


@pytest.mark.parametrize(("intruder", "owner"), PAIRS)
async def test_the_buyer_surface_reveals_nothing_across_accounts(world, stack, session, intruder, owner):
    assert await probe_public(world, stack, session, intruder, owner) == []


# -- keys, idempotency and clocks are per account --------------------------------------------------
async def test_an_idempotency_key_is_scoped_to_its_account(world):
    key = f"shared-{uuid.uuid4()}"
    body = {"name": "Same body", "currency": "USD", "line_items": [{"name": "Same", "unit_amount": 700}]}
    first = await world.apis["a"].post("/v1/payment_links", body, headers={"Idempotency-Key": key})
    second = await world.apis["b"].post("/v1/payment_links", body, headers={"Idempotency-Key": key})
    assert first.status == 201 and second.status == 201
    assert "Idempotent-Replayed" not in second.headers
    assert first.body["id"] != second.body["id"] and first.body["url"] != second.body["url"]
    assert_problem(await world.apis["a"].get(f"/v1/payment_links/{second.body['id']}"), 404)
    assert (await world.apis["b"].get(f"/v1/payment_links/{second.body['id']}")).status == 200
    # a different body under the same key in the other account is not a conflict either
    other = await world.apis["b"].post(
        "/v1/payment_links", {**body, "name": "Other"}, headers={"Idempotency-Key": f"shared-b-{key}"}
    )
    assert other.status == 201


async def test_a_test_clock_is_per_account(stack, session):
    a = stack.create_account("Clock A", "USD", True)
    b = stack.create_account("Clock B", "USD", True)
    api_a = CheckedApi(session, stack.config.base_url, a["api_key"])
    api_b = CheckedApi(session, stack.config.base_url, b["api_key"])
    target = datetime.now(UTC) + timedelta(days=400)
    assert (await api_a.post("/v1/test_clock/advance", {"to": target.isoformat()})).status == 200
    now_b = datetime.fromisoformat((await api_b.get("/v1/test_clock")).body["now"].replace("Z", "+00:00"))
    assert now_b < target - timedelta(days=300)
    link = await api_b.post("/v1/payment_links", {"currency": "USD", "line_items": [{"name": "x", "unit_amount": 100}]})
    assert datetime.fromisoformat(link.body["created_at"].replace("Z", "+00:00")) < target - timedelta(days=300)


async def test_a_patch_changes_only_the_callers_account(world):
    before = (await world.apis["b"].get("/v1/account")).body
    own = (await world.apis["a"].get("/v1/account")).body
    r = await world.apis["a"].patch("/v1/account", {"time_zone": "Asia/Tokyo"})
    assert r.status == 200 and r.body["id"] == world.sides["a"].account_id
    try:
        assert (await world.apis["b"].get("/v1/account")).body == before
    finally:
        await world.apis["a"].patch("/v1/account", {"time_zone": own["time_zone"]})


# -- every route is in a table above ------------------------------------------------------------------
def admin_routes() -> set[tuple[str, str]]:
    """(method, path) of every /v1/ route declared by the services' handler modules."""
    found: set[tuple[str, str]] = set()
    for module_info in pkgutil.walk_packages(services.__path__, "services."):
        if not module_info.name.endswith(".handlers"):
            continue
        module = importlib.import_module(module_info.name)
        table = getattr(module, "routes", None)
        if not isinstance(table, web.RouteTableDef):
            continue
        for route in table:
            if isinstance(route, web.RouteDef) and route.path.startswith("/v1/") and route.method != "HEAD":
                found.add((route.method, route.path))
    return found


def test_every_route_is_classified():
    routes = admin_routes()
    assert ("GET", "/v1/payments/{payment_id}") in routes  # discovery works
    by_id = {(e.method, e.path) for e in BY_ID}
    listed = {("GET", entry.path.split("?", 1)[0]) for entry in LISTS} | {("GET", p) for p in SINGULAR}
    unclassified = sorted(routes - by_id - listed - OWN_ACCOUNT_WRITES)
    assert not unclassified, (
        f"add these routes to BY_ID / LISTS / SINGULAR / OWN_ACCOUNT_WRITES of {__name__}: {unclassified}"
    )
    for method, path in routes:
        if "{" in path:
            assert (method, path) in by_id, f"{method} {path} takes an id: it belongs in BY_ID"
    for params in (re.findall(r"\{(\w+)\}", e.path) for e in BY_ID):
        assert set(params) <= set(PARAMS)
    stale = (by_id | listed | OWN_ACCOUNT_WRITES) - routes
    assert not stale, f"no such routes any more: {sorted(stale)}"


# -- the figure ------------------------------------------------------------------------------------
async def test_r9_api_summary(world, stack, session, capsys):
    leaks: list[str] = []
    for intruder, owner in PAIRS:
        for endpoint in BY_ID:
            leaks += await probe_by_id(world, endpoint, intruder, owner)
        for listing in LISTS:
            leaks += await probe_listing(world, listing, intruder, owner)
        for path in SINGULAR:
            leaks += await probe_singular(world, path, intruder, owner)
        leaks += await probe_public(world, stack, session, intruder, owner)
    endpoints = len(BY_ID) + len(LISTS) + len(SINGULAR) + 1  # + the buyer surface
    with capsys.disabled():
        print(f"\nR9 api: endpoints={endpoints} leaks={len(leaks)}")
    assert leaks == []
