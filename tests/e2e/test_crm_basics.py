"""The CRM objects payment links need (issue 3): pipelines, companies, deals, contacts a
merchant enters, what a purchase does to them (PRODUCT §4.2 points 2–3, the deal rule of
§3.2, simplified links §3.4/§9), and checkout's projection of CRM records.

Purchases are published as ``purchase.completed`` events through checkout's outbox (as
checkout does after a payment), so these tests drive every deal-rule input directly;
crm_sync's ``contact.upserted`` (read from its outbox) tells when one was processed and
which company and deals the payment got. Every request goes through `CheckedApi`: no 5xx.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.checkout import crm_refs
from shared.db import create_pool, tenant_tx
from shared.events.models import ContactUpsertedV1, DealRule, PurchaseCompletedV1, PurchaseContact, PurchasedItem
from shared.outbox import publish_event
from tests.support.client import Buyer
from tests.support.problems import CheckedApi, assert_problem
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

WAIT = 60  # seconds; the machine is shared with other test runs


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(scope="module")
async def pools(stack) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    """Owner connections of checkout (to publish purchases, read its projection) and of
    crm_sync (to read what it published)."""
    made = {
        service: await create_pool(stack.env[f"{prefix}_DATABASE_OWNER_URL"], application_name="test-crm", max_size=2)
        for service, prefix in (("checkout", "CHECKOUT"), ("crm_sync", "CRM_SYNC"))
    }
    yield made
    for pool in made.values():
        await pool.close()


class Shop:
    def __init__(self, created: dict, api: CheckedApi) -> None:
        self.account_id: str = created["account_id"]
        self.key: str = created["api_key"]
        self.api = api


@pytest.fixture
def new_shop(stack, session):
    def make(name: str = "CRM shop") -> Shop:
        created = stack.create_account(f"{name} {uuid.uuid4().hex[:6]}", "USD", True)
        return Shop(created, CheckedApi(session, stack.config.base_url, created["api_key"]))

    return make


@pytest.fixture
def shop(new_shop) -> Shop:
    return new_shop()


@pytest.fixture(scope="module")
def other(stack, session) -> Shop:
    """Another account, whose objects must stay invisible (404) to the shop."""
    created = stack.create_account(f"Other CRM shop {uuid.uuid4().hex[:6]}", "USD", True)
    return Shop(created, CheckedApi(session, stack.config.base_url, created["api_key"]))


# -- helpers ---------------------------------------------------------------------------------------
def unique_email(label: str = "buyer") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}@example.com"


async def default_pipeline(shop: Shop) -> dict:
    listed = await shop.api.get("/v1/pipelines?limit=100")
    assert listed.status == 200, listed.body
    (pipeline,) = [p for p in listed.body["data"] if p["default"]]
    return pipeline


def stage_of(pipeline: dict, kind: str) -> dict:
    return next(s for s in pipeline["stages"] if s["kind"] == kind)


def purchase_event(
    *,
    email: str,
    link_id: str,
    link_name: str = "Coffee link",
    deal_rule: bool = True,
    create_deal: dict | None = None,
    deal_id: str | None = None,
    crm_record: dict | None = None,
    amount: int = 2500,
    currency: str = "USD",
    **contact: Any,
) -> PurchaseCompletedV1:
    """``purchase.completed`` as checkout writes it for a payment through link ``link_id``."""
    return PurchaseCompletedV1(
        payment_id=f"pay_test{uuid.uuid4().hex[:20]}",
        session_id=f"cs_test{uuid.uuid4().hex[:20]}",
        source={"type": "payment_link", "id": link_id},
        amount=amount,
        currency=currency,
        subtotal=amount,
        method_type="card",
        contact=PurchaseContact(email=email, **contact),
        items=[PurchasedItem(line_item_id="li_test", name="Beans", quantity=1, unit_amount=amount, amount=amount)],
        deal_rule=DealRule(link_id=link_id, link_name=link_name, deal_id=deal_id, create_deal=create_deal)
        if deal_rule
        else None,
        crm_record=crm_record,
        paid_at=datetime.now(UTC),
        test_mode=True,
    )


async def publish_purchases(pools: dict, shop: Shop, events: list[PurchaseCompletedV1]) -> list[dict]:
    """Publish the events through checkout's outbox in one transaction (as checkout does
    after a payment); wait until crm_sync processed each. Returns, per event, crm_sync's
    ``contact.upserted`` payload (the payment's contact, company and deals) plus
    ``payment_id`` and ``link_id``."""
    async with tenant_tx(pools["checkout"], shop.account_id) as conn:
        event_ids = [
            await publish_event(
                conn,
                schema="checkout",
                producer="checkout",
                account_id=shop.account_id,
                event=event,
                occurred_at=datetime.now(UTC),
            )
            for event in events
        ]
    results = []
    for event_id, event in zip(event_ids, events, strict=True):

        async def processed(event_id=event_id, payment_id=event.payment_id) -> list[dict]:
            failed = await pools["crm_sync"].fetchval(
                "SELECT error FROM crm_sync.failed_jobs WHERE event_id = $1 LIMIT 1", event_id
            )
            assert failed is None, f"crm_sync failed on the purchase: {failed}"
            return await published(pools, shop, "contact.upserted", payment_id)

        upserted = await eventually(processed, timeout=WAIT)
        results.append({**upserted[-1], "payment_id": event.payment_id, "link_id": event.source["id"]})
    return results


async def purchase(pools: dict, shop: Shop, *, email: str, link_id: str | None = None, **kw: Any) -> dict:
    """One purchase (see `purchase_event`), processed by crm_sync."""
    link_id = link_id or f"plink_test{uuid.uuid4().hex[:20]}"
    (result,) = await publish_purchases(pools, shop, [purchase_event(email=email, link_id=link_id, **kw)])
    return result


async def published(pools: dict, shop: Shop, event_type: str, payment_id: str | None = None) -> list[dict]:
    """The payloads crm_sync published of one type (for one payment), oldest first."""
    rows = await pools["crm_sync"].fetch(
        """SELECT envelope FROM crm_sync.outbox WHERE account_id = $1 AND type = $2
             AND ($3::text IS NULL OR envelope->'data'->>'payment_id' = $3) ORDER BY seq""",
        shop.account_id,
        event_type,
        payment_id,
    )
    return [r["envelope"]["data"] for r in rows]


async def associations(shop: Shop, kind: str, record_id: str) -> dict:
    r = await shop.api.get(f"/v1/{kind}/{record_id}/associations")
    assert r.status == 200, r.body
    return r.body


async def count(shop: Shop, path: str) -> int:
    r = await shop.api.get(path + ("&" if "?" in path else "?") + "limit=100")
    assert r.status == 200, r.body
    return len(r.body["data"])


async def checkout_record(pools: dict, shop: Shop, kind: str, record_id: str) -> dict | None:
    async with tenant_tx(pools["checkout"], shop.account_id) as conn:
        return await crm_refs.find_record(conn, shop.account_id, kind, record_id)


async def checkout_stage(pools: dict, shop: Shop, pipeline_id: str, stage_id: str) -> dict | None:
    async with tenant_tx(pools["checkout"], shop.account_id) as conn:
        return await crm_refs.pipeline_stage(conn, shop.account_id, pipeline_id, stage_id)


# -- pipelines --------------------------------------------------------------------------------------
async def test_a_new_account_has_a_default_pipeline(shop, pools):
    # made when crm_sync applied the account's first snapshot (account creation waits for
    # that), not only on first use
    (announced,) = [r for r in await published(pools, shop, "crm_record.updated") if r["kind"] == "pipeline"]
    listed = await shop.api.get("/v1/pipelines")
    assert listed.status == 200 and listed.body["has_more"] is False
    (pipeline,) = listed.body["data"]
    assert pipeline["id"] == announced["record_id"]
    assert pipeline["object"] == "pipeline" and pipeline["default"] is True and pipeline["name"]
    kinds = [s["kind"] for s in pipeline["stages"]]
    assert kinds[0] == "open"
    assert kinds.count("closed_won") == 1 and kinds.count("closed_lost") == 1
    assert [s["display_order"] for s in pipeline["stages"]] == list(range(len(kinds)))
    assert all(s["id"].startswith("stage_") and s["name"] for s in pipeline["stages"])
    again = await shop.api.get(f"/v1/pipelines/{pipeline['id']}")
    assert again.status == 200 and again.body == pipeline
    # checkout learns it (crm_record.updated), stages and their kinds included
    first = pipeline["stages"][0]
    stage = await eventually(lambda: checkout_stage(pools, shop, pipeline["id"], first["id"]), timeout=WAIT)
    assert stage == {"id": first["id"], "name": first["name"], "kind": "open"}
    record = await checkout_record(pools, shop, "pipeline", pipeline["id"])
    assert record["data"]["name"] == pipeline["name"] and record["data"]["default"] is True
    assert [s["kind"] for s in record["data"]["stages"]] == kinds


async def test_pipelines_are_created_listed_and_refused_with_the_field_named(shop, other):
    created = await shop.api.post(
        "/v1/pipelines",
        {
            "name": "  Renewals  ",
            "stages": [{"name": "Due"}, {"name": "Won", "kind": "closed_won"}, {"name": "Lost", "kind": "closed_lost"}],
        },
    )
    assert created.status == 201, created.body
    pipeline = created.body
    assert pipeline["id"].startswith("pipeline_") and pipeline["name"] == "Renewals" and pipeline["default"] is False
    assert [(s["name"], s["kind"]) for s in pipeline["stages"]] == [
        ("Due", "open"),
        ("Won", "closed_won"),
        ("Lost", "closed_lost"),
    ]
    listed = (await shop.api.get("/v1/pipelines")).body["data"]
    assert listed[0]["id"] == pipeline["id"] and len(listed) == 2  # newest first
    assert (await shop.api.get(f"/v1/pipelines/{pipeline['id']}")).body == pipeline

    one_stage = [{"name": "Open"}]
    refusals = [
        ({"stages": one_stage}, 422, "name"),
        ({"name": "   ", "stages": one_stage}, 422, "name"),
        ({"name": "X", "stages": []}, 422, "stages"),
        ({"name": "X", "stages": [{"name": "A"}, {"name": "a"}]}, 422, "stages[1].name"),
        ({"name": "X", "stages": [{"name": "A", "kind": "won"}]}, 422, "stages[0].kind"),
        ({"name": "X", "stages": [{"name": "Won", "kind": "closed_won"}]}, 422, "stages"),
        ({"name": "X", "stages": one_stage, "default": True}, 422, "default"),
        ({"name": "renewals", "stages": one_stage}, 409, "name"),
    ]
    for body, status, field in refusals:
        assert_problem(await shop.api.post("/v1/pipelines", body), status, field)
    assert await count(shop, "/v1/pipelines") == 2  # nothing stored
    # another account's pipeline is not found, and not listed
    assert_problem(await other.api.get(f"/v1/pipelines/{pipeline['id']}"), 404)
    assert pipeline["id"] not in str((await other.api.get("/v1/pipelines")).body)


async def test_crm_scopes(shop, session, stack):
    made = await shop.api.post("/v1/api_keys", {"scopes": ["crm:read"]})
    assert made.status == 201, made.body
    reader = CheckedApi(session, stack.config.base_url, made.body["key"])
    assert (await reader.get("/v1/pipelines")).status == 200
    assert (await reader.get("/v1/deals")).status == 200
    for path, body in (
        ("/v1/pipelines", {"name": "P", "stages": [{"name": "S"}]}),
        ("/v1/companies", {"name": "C"}),
        ("/v1/deals", {"name": "D"}),
        ("/v1/contacts", {"email": unique_email()}),
    ):
        assert_problem(await reader.post(path, body), 403)
    payments_only = await shop.api.post("/v1/api_keys", {"scopes": ["payments:read"]})
    nobody = CheckedApi(session, stack.config.base_url, payments_only.body["key"])
    for path in ("/v1/pipelines", "/v1/companies", "/v1/deals"):
        assert_problem(await nobody.get(path), 403)


# -- companies ----------------------------------------------------------------------------------------
async def test_companies_are_unique_by_domain_else_by_name(shop, other, pools):
    acme = await shop.api.post("/v1/companies", {"name": "Acme", "domain": "WWW.Acme.example.", "city": "Lund"})
    assert acme.status == 201, acme.body
    company = acme.body
    assert company["id"].startswith("company_") and company["domain"] == "www.acme.example"
    assert company["city"] == "Lund" and company["object"] == "company"

    taken = assert_problem(await shop.api.post("/v1/companies", {"name": "Other", "domain": "www.ACME.example"}), 409)
    assert taken["errors"][0]["field"] == "domain" and taken["existing_id"] == company["id"]
    # the same name with another domain, or without a domain, is another company
    second = await shop.api.post("/v1/companies", {"name": "ACME", "domain": "acme.example"})
    nameless = await shop.api.post("/v1/companies", {"name": "acme"})
    assert second.status == 201 and nameless.status == 201, (second.body, nameless.body)
    by_name = assert_problem(await shop.api.post("/v1/companies", {"name": " ACME "}), 409, "name")
    assert by_name["existing_id"] == nameless.body["id"]

    for body, field in (
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "X", "domain": "https://x.example/path"}, "domain"),
        ({"name": "X", "domain": "no spaces.example"}, "domain"),
        ({"name": "X", "id": "company_mine"}, "id"),
        ({"name": "X", "city": 5}, "city"),
    ):
        assert_problem(await shop.api.post("/v1/companies", body), 422, field)
    assert await count(shop, "/v1/companies") == 3

    found = (await shop.api.get("/v1/companies?domain=WWW.ACME.EXAMPLE")).body["data"]
    assert [c["id"] for c in found] == [company["id"]]
    named = (await shop.api.get("/v1/companies?name=aCmE")).body["data"]
    assert [c["id"] for c in named] == [nameless.body["id"], second.body["id"], company["id"]]  # newest first

    patched = await shop.api.patch(f"/v1/companies/{company['id']}", {"name": "Acme Inc", "city": None, "zip": "22100"})
    assert patched.status == 200, patched.body
    assert (patched.body["name"], patched.body["city"], patched.body["zip"]) == ("Acme Inc", None, "22100")
    assert_problem(await shop.api.patch(f"/v1/companies/{company['id']}", {"name": None}), 422, "name")
    assert_problem(await shop.api.patch(f"/v1/companies/{company['id']}", {"domain": "acme.example"}), 409, "domain")
    # dropping the domain would make it a second domain-less "acme"
    assert_problem(
        await shop.api.patch(f"/v1/companies/{second.body['id']}", {"domain": None}),
        409,
        "name",
    )
    assert (await shop.api.get(f"/v1/companies/{company['id']}")).body == patched.body

    for method in ("GET", "PATCH"):
        r = await other.api.request(method, f"/v1/companies/{company['id']}", json_body={"name": "Stolen"})
        assert_problem(r, 404)
    assert_problem(await other.api.get(f"/v1/companies/{company['id']}/associations"), 404)
    assert (await shop.api.get(f"/v1/companies/{company['id']}")).body["name"] == "Acme Inc"
    assert (await other.api.get("/v1/companies?name=acme")).body["data"] == []

    record = await eventually(
        lambda: _named(checkout_record(pools, shop, "company", company["id"]), "Acme Inc"), timeout=WAIT
    )
    assert record["data"]["domain"] == "www.acme.example"


async def _named(pending, name: str) -> dict | None:
    record = await pending
    return record if record and record["data"].get("name") == name else None


# -- contacts ---------------------------------------------------------------------------------------------
async def test_contacts_entered_by_the_merchant_are_unique_by_email_in_any_case(shop, other):
    email = unique_email("Grace")
    created = await shop.api.post("/v1/contacts", {"email": email, "firstname": "Grace", "phone": "+46 70 000"})
    assert created.status == 201, created.body
    contact = created.body
    assert contact["id"].startswith("contact_") and contact["email"] == email and contact["firstname"] == "Grace"

    dup = assert_problem(await shop.api.post("/v1/contacts", {"email": email.upper()}), 409)
    assert dup["errors"][0]["field"] == "email" and dup["existing_id"] == contact["id"]
    company = (await shop.api.post("/v1/companies", {"name": f"Hopper {uuid.uuid4().hex[:6]}"})).body
    foreign = (await other.api.post("/v1/companies", {"name": f"Elsewhere {uuid.uuid4().hex[:6]}"})).body
    for body, status, field in (
        ({}, 422, "email"),
        ({"email": "not-an-email"}, 422, "email"),
        ({"email": unique_email(), "lastname": "x" * 201}, 422, "lastname"),
        ({"email": unique_email(), "company_id": foreign["id"]}, 422, "company_id"),
        ({"email": unique_email(), "version": 3}, 422, "version"),
    ):
        assert_problem(await shop.api.post("/v1/contacts", body), status, field)

    other_email = unique_email("ada")
    second = (await shop.api.post("/v1/contacts", {"email": other_email, "company_id": company["id"]})).body
    assert second["company_id"] == company["id"]
    assert second["id"] in (await associations(shop, "companies", company["id"]))["contacts"]
    assert (await associations(shop, "contacts", second["id"]))["companies"] == [company["id"]]
    assert await count(shop, "/v1/contacts") == 2  # nothing else stored

    taken = assert_problem(await shop.api.patch(f"/v1/contacts/{contact['id']}", {"email": other_email.upper()}), 409)
    assert taken["errors"][0]["field"] == "email"
    assert_problem(await shop.api.patch(f"/v1/contacts/{contact['id']}", {"email": None}), 422, "email")
    assert_problem(
        await shop.api.patch(f"/v1/contacts/{contact['id']}", {"company_id": foreign["id"]}), 422, "company_id"
    )
    patched = await shop.api.patch(
        f"/v1/contacts/{contact['id']}",
        {"email": email.upper(), "phone": None, "lastname": "Hopper", "company_id": company["id"]},
    )
    assert patched.status == 200, patched.body
    assert (patched.body["email"], patched.body["phone"], patched.body["lastname"]) == (email.upper(), None, "Hopper")
    assert patched.body["firstname"] == "Grace" and patched.body["company_id"] == company["id"]
    assert (await shop.api.get(f"/v1/contacts/{contact['id']}")).body == patched.body

    assert_problem(await other.api.patch(f"/v1/contacts/{contact['id']}", {"firstname": "Mallory"}), 404)
    assert (await shop.api.get(f"/v1/contacts/{contact['id']}")).body["firstname"] == "Grace"


async def test_a_purchase_keeps_what_the_merchant_entered(shop, pools):
    email = unique_email("kept")
    contact = (await shop.api.post("/v1/contacts", {"email": email, "firstname": "Merchant", "city": "Malmö"})).body
    done = await purchase(pools, shop, email=email.upper(), firstname="", lastname="Buyer", deal_rule=False)
    assert done["contact_id"] == contact["id"] and done["created"] is False
    after = (await shop.api.get(f"/v1/contacts/{contact['id']}")).body
    assert (after["firstname"], after["lastname"], after["city"]) == ("Merchant", "Buyer", "Malmö")


# -- deals ----------------------------------------------------------------------------------------------------
async def test_deals_are_created_changed_and_refused_with_the_field_named(shop, other, pools):
    default = await default_pipeline(shop)
    contact = (await shop.api.post("/v1/contacts", {"email": unique_email()})).body
    company = (await shop.api.post("/v1/companies", {"name": f"Deal Co {uuid.uuid4().hex[:6]}"})).body
    created = await shop.api.post(
        "/v1/deals",
        {
            "name": "Big order",
            "amount": 120000,
            "currency": "eur",
            "contact_ids": [contact["id"], contact["id"]],
            "company_id": company["id"],
        },
    )
    assert created.status == 201, created.body
    deal = created.body
    assert deal["id"].startswith("deal_") and deal["object"] == "deal"
    assert (deal["amount"], deal["currency"]) == (120000, "EUR")
    assert deal["pipeline"] == default["id"] and deal["stage"] == default["stages"][0]["id"]
    assert deal["stage_kind"] == "open"
    assert deal["contact_ids"] == [contact["id"]] and deal["company_id"] == company["id"]
    linked = await associations(shop, "deals", deal["id"])
    assert linked["contacts"] == [contact["id"]] and linked["companies"] == [company["id"]]
    assert deal["id"] in (await associations(shop, "contacts", contact["id"]))["deals"]
    assert deal["id"] in (await associations(shop, "companies", company["id"]))["deals"]

    renewals = (
        await shop.api.post(
            "/v1/pipelines",
            {
                "name": f"Renewals {uuid.uuid4().hex[:6]}",
                "stages": [{"name": "Due"}, {"name": "Done", "kind": "closed_won"}],
            },
        )
    ).body
    foreign_contact = (await other.api.post("/v1/contacts", {"email": unique_email()})).body
    foreign_company = (await other.api.post("/v1/companies", {"name": f"Theirs {uuid.uuid4().hex[:6]}"})).body
    refusals = [
        ({}, "name"),
        ({"name": " "}, "name"),
        ({"name": "D", "amount": 100}, "currency"),
        ({"name": "D", "amount": 100, "currency": "XYZ"}, "currency"),
        ({"name": "D", "amount": 10.5, "currency": "USD"}, "amount"),
        ({"name": "D", "amount": "100", "currency": "USD"}, "amount"),
        ({"name": "D", "amount": -1, "currency": "USD"}, "amount"),
        ({"name": "D", "pipeline": "pipeline_nope"}, "pipeline"),
        ({"name": "D", "stage": renewals["stages"][0]["id"]}, "stage"),  # not in the default pipeline
        ({"name": "D", "pipeline": renewals["id"], "stage": default["stages"][0]["id"]}, "stage"),
        ({"name": "D", "company_id": foreign_company["id"]}, "company_id"),
        ({"name": "D", "contact_ids": [contact["id"], foreign_contact["id"]]}, "contact_ids[1]"),
        ({"name": "D", "created_by_link_id": "plink_x"}, "created_by_link_id"),
    ]
    for body, field in refusals:
        assert_problem(await shop.api.post("/v1/deals", body), 422, field)
    assert await count(shop, "/v1/deals") == 1  # nothing stored

    in_renewals = await shop.api.post("/v1/deals", {"name": "Renewal", "pipeline": renewals["id"]})
    assert in_renewals.body["stage"] == renewals["stages"][0]["id"], in_renewals.body

    won = stage_of(default, "closed_won")
    moved = await shop.api.patch(f"/v1/deals/{deal['id']}", {"stage": won["id"], "name": "Big order (won)"})
    assert moved.status == 200, moved.body
    assert (moved.body["stage"], moved.body["stage_kind"], moved.body["name"]) == (
        won["id"],
        "closed_won",
        "Big order (won)",
    )
    for body, field in (
        ({"stage": renewals["stages"][1]["id"]}, "stage"),
        ({"pipeline": renewals["id"], "stage": won["id"]}, "stage"),
        ({"pipeline": None}, "pipeline"),
        ({"name": None}, "name"),
        ({"currency": None}, "currency"),  # the deal has an amount
        ({"contact_ids": None}, "contact_ids"),
        ({"company_id": foreign_company["id"]}, "company_id"),
    ):
        assert_problem(await shop.api.patch(f"/v1/deals/{deal['id']}", body), 422, field)
    assert (await shop.api.get(f"/v1/deals/{deal['id']}")).body == moved.body  # refusals changed nothing

    switched = await shop.api.patch(
        f"/v1/deals/{deal['id']}", {"pipeline": renewals["id"], "contact_ids": [], "company_id": None, "amount": None}
    )
    assert switched.status == 200, switched.body
    assert switched.body["pipeline"] == renewals["id"] and switched.body["stage"] == renewals["stages"][0]["id"]
    assert (
        switched.body["contact_ids"] == [] and switched.body["company_id"] is None and switched.body["amount"] is None
    )
    linked = await associations(shop, "deals", deal["id"])
    assert linked["contacts"] == [] and linked["companies"] == []
    assert deal["id"] not in (await associations(shop, "contacts", contact["id"]))["deals"]

    listed = await shop.api.get(f"/v1/deals?pipeline={renewals['id']}")
    assert [d["id"] for d in listed.body["data"]] == [in_renewals.body["id"], deal["id"]]  # newest first
    assert (await shop.api.get(f"/v1/deals?stage={won['id']}")).body["data"] == []
    with_contact = await shop.api.patch(f"/v1/deals/{deal['id']}", {"contact_ids": [contact["id"]]})
    assert with_contact.body["contact_ids"] == [contact["id"]]
    assert [d["id"] for d in (await shop.api.get(f"/v1/deals?contact_id={contact['id']}")).body["data"]] == [deal["id"]]

    for method in ("GET", "PATCH"):
        assert_problem(await other.api.request(method, f"/v1/deals/{deal['id']}", json_body={"name": "Mine"}), 404)
    assert_problem(await other.api.get(f"/v1/deals/{deal['id']}/associations"), 404)
    assert (await other.api.get(f"/v1/deals?contact_id={contact['id']}")).body["data"] == []

    # checkout's projection follows the newest version of the deal
    record = await eventually(
        lambda: _in_stage(checkout_record(pools, shop, "deal", deal["id"]), renewals["stages"][0]["id"]), timeout=WAIT
    )
    assert record["data"]["name"] == "Big order (won)" and record["data"]["pipeline_id"] == renewals["id"]
    stage = await eventually(
        lambda: checkout_stage(pools, shop, renewals["id"], renewals["stages"][1]["id"]), timeout=WAIT
    )
    assert stage["kind"] == "closed_won"
    assert await checkout_stage(pools, shop, renewals["id"], won["id"]) is None  # another pipeline's stage
    assert await checkout_record(pools, shop, "deal", "deal_unknown") is None
    assert await checkout_record(pools, other, "deal", deal["id"]) is None


async def _in_stage(pending, stage_id: str) -> dict | None:
    record = await pending
    return record if record and record["data"].get("stage_id") == stage_id else None


# -- purchases: companies ----------------------------------------------------------------------------------
async def test_a_purchase_with_a_company_name_creates_or_reuses_the_company(shop, pools):
    name = f"Widgets {uuid.uuid4().hex[:6]}"
    first = await purchase(pools, shop, email=unique_email("w1"), company=name, deal_rule=False)
    (company,) = (await shop.api.get(f"/v1/companies?name={name}")).body["data"]
    assert company["name"] == name and first["company_id"] == company["id"]
    contact = (await shop.api.get(f"/v1/contacts/{first['contact_id']}")).body
    assert contact["company_id"] == company["id"] and contact["company"] == name
    linked = await associations(shop, "companies", company["id"])
    assert linked["payments"] == [first["payment_id"]] and linked["contacts"] == [contact["id"]]
    assert (await associations(shop, "contacts", contact["id"]))["companies"] == [company["id"]]

    second = await purchase(pools, shop, email=unique_email("w2"), company=f"  {name.upper()} ", deal_rule=False)
    assert second["company_id"] == company["id"]
    assert await count(shop, f"/v1/companies?name={name}") == 1
    linked = await associations(shop, "companies", company["id"])
    assert sorted(linked["payments"]) == sorted([first["payment_id"], second["payment_id"]])
    assert len(linked["contacts"]) == 2

    # a contact whose company the merchant chose keeps it; the payment goes to the named company
    chosen = (await shop.api.post("/v1/companies", {"name": f"Chosen {uuid.uuid4().hex[:6]}"})).body
    email = unique_email("w3")
    kept = (await shop.api.post("/v1/contacts", {"email": email, "company_id": chosen["id"]})).body
    third = await purchase(pools, shop, email=email, company=name, deal_rule=False)
    assert third["contact_id"] == kept["id"] and third["company_id"] == company["id"]
    assert (await shop.api.get(f"/v1/contacts/{kept['id']}")).body["company_id"] == chosen["id"]
    # without a company name the payment goes to the contact's own company
    fourth = await purchase(pools, shop, email=email, deal_rule=False)
    assert fourth["company_id"] == chosen["id"] and fourth["deal_ids"] == []
    assert (await associations(shop, "companies", chosen["id"]))["payments"] == [fourth["payment_id"]]


# -- purchases: the deal rule of §3.2 -------------------------------------------------------------------------
async def test_deal_rule_off_associates_the_payment_with_the_links_deal(shop, pools):
    deal = (await shop.api.post("/v1/deals", {"name": "Consulting", "amount": 5000, "currency": "USD"})).body
    link_id = f"plink_test{uuid.uuid4().hex[:20]}"
    done = await purchase(pools, shop, email=unique_email("off"), link_id=link_id, deal_id=deal["id"], company="Off Co")
    assert done["deal_ids"] == [deal["id"]]
    linked = await associations(shop, "deals", deal["id"])
    assert linked["payments"] == [done["payment_id"]] and linked["contacts"] == [done["contact_id"]]
    assert linked["payment_links"] == [link_id] and linked["companies"] == [done["company_id"]]
    assert (await shop.api.get(f"/v1/deals/{deal['id']}")).body["company_id"] == done["company_id"]
    # off without a deal: no deal at all, and none created
    before = await count(shop, "/v1/deals")
    plain = await purchase(pools, shop, email=unique_email("off2"), link_id=link_id)
    assert plain["deal_ids"] == [] and await count(shop, "/v1/deals") == before
    # a deal of another account (or none) named by the link is ignored
    ghost = await purchase(pools, shop, email=unique_email("off3"), deal_id="deal_doesnotexist")
    assert ghost["deal_ids"] == [] and await count(shop, "/v1/deals") == before


async def test_deal_rule_on_without_an_open_deal_creates_a_deal_each_time(shop, pools):
    pipeline = await default_pipeline(shop)
    won = stage_of(pipeline, "closed_won")
    link_id = f"plink_test{uuid.uuid4().hex[:20]}"
    rule = {"pipeline": pipeline["id"], "stage": won["id"]}
    first = await purchase(
        pools, shop, email=unique_email("on"), link_id=link_id, link_name="Beans", create_deal=rule,
        firstname="Ada", lastname="Lovelace", amount=3100, currency="EUR", company="Analytical Engines",
    )  # fmt: skip
    second = await purchase(pools, shop, email=unique_email("on"), link_id=link_id, link_name="Beans", create_deal=rule)
    (d1,), (d2,) = first["deal_ids"], second["deal_ids"]
    assert d1 != d2
    deal = (await shop.api.get(f"/v1/deals/{d1}")).body
    assert deal["name"] == "Beans – Ada Lovelace"
    assert (deal["amount"], deal["currency"]) == (3100, "EUR")
    assert (deal["pipeline"], deal["stage"], deal["stage_kind"]) == (pipeline["id"], won["id"], "closed_won")
    assert deal["created_by_link_id"] == link_id and deal["contact_ids"] == [first["contact_id"]]
    assert deal["company_id"] == first["company_id"] is not None
    linked = await associations(shop, "deals", d1)
    assert linked["payments"] == [first["payment_id"]] and linked["payment_links"] == [link_id]
    assert linked["contacts"] == [first["contact_id"]] and linked["companies"] == [first["company_id"]]
    assert d1 in (await associations(shop, "contacts", first["contact_id"]))["deals"]
    other_deal = (await shop.api.get(f"/v1/deals/{d2}")).body
    assert other_deal["name"].startswith("Beans – on-") and other_deal["amount"] == 2500
    # checkout hears of the new deals
    assert await eventually(lambda: checkout_record(pools, shop, "deal", d2), timeout=WAIT)


async def test_deal_rule_on_reuses_the_open_deal_until_it_is_closed(shop, pools):
    pipeline = await default_pipeline(shop)
    opening = pipeline["stages"][0]
    link_id = f"plink_test{uuid.uuid4().hex[:20]}"
    rule = {"pipeline": pipeline["id"], "stage": opening["id"]}
    first = await purchase(pools, shop, email=unique_email("open"), link_id=link_id, create_deal=rule)
    (deal_id,) = first["deal_ids"]
    second = await purchase(pools, shop, email=unique_email("open"), link_id=link_id, create_deal=rule)
    assert second["deal_ids"] == [deal_id]
    linked = await associations(shop, "deals", deal_id)
    assert sorted(linked["payments"]) == sorted([first["payment_id"], second["payment_id"]])
    assert sorted(linked["contacts"]) == sorted([first["contact_id"], second["contact_id"]])

    lost = stage_of(pipeline, "closed_lost")
    assert (await shop.api.patch(f"/v1/deals/{deal_id}", {"stage": lost["id"]})).status == 200
    third = await purchase(pools, shop, email=unique_email("open"), link_id=link_id, create_deal=rule)
    (new_deal,) = third["deal_ids"]
    assert new_deal != deal_id
    assert (await associations(shop, "deals", deal_id))["payments"] == linked["payments"]  # the closed one unchanged
    fourth = await purchase(pools, shop, email=unique_email("open"), link_id=link_id, create_deal=rule)
    assert fourth["deal_ids"] == [new_deal]

    # the link's own open deal comes first
    own = (await shop.api.post("/v1/deals", {"name": "The link's deal"})).body
    fifth = await purchase(
        pools, shop, email=unique_email("open"), link_id=link_id, create_deal=rule, deal_id=own["id"]
    )
    assert fifth["deal_ids"] == [own["id"]]
    # another link's open deal is not this link's
    elsewhere = await purchase(pools, shop, email=unique_email("open"), create_deal=rule)
    assert elsewhere["deal_ids"] not in ([deal_id], [new_deal], [own["id"]])


async def test_concurrent_first_payments_of_a_link_share_one_open_deal(shop, pools):
    pipeline = await default_pipeline(shop)
    link_id = f"plink_test{uuid.uuid4().hex[:20]}"
    rule = {"pipeline": pipeline["id"], "stage": pipeline["stages"][0]["id"]}
    events = [purchase_event(email=unique_email("rush"), link_id=link_id, create_deal=rule) for _ in range(6)]
    results = await publish_purchases(pools, shop, events)
    assert len({tuple(r["deal_ids"]) for r in results}) == 1, results
    (deal_id,) = results[0]["deal_ids"]
    linked = await associations(shop, "deals", deal_id)
    assert sorted(linked["payments"]) == sorted(e.payment_id for e in events)
    assert await count(shop, f"/v1/deals?pipeline={pipeline['id']}") == 1


async def test_the_deal_rule_serialises_the_purchases_of_one_link(shop, stack):
    """Deterministic version of the race: the second purchase's transaction waits for the
    first one's (which created the open deal) and then joins that deal."""
    from services.crm_sync.contacts import upserts
    from services.crm_sync.crm.purchases import apply_purchase

    pipeline = await default_pipeline(shop)
    rule = {"pipeline": pipeline["id"], "stage": pipeline["stages"][0]["id"]}
    link_id = f"plink_test{uuid.uuid4().hex[:20]}"
    pool = await create_pool(stack.env["CRM_SYNC_DATABASE_URL"], application_name="test-crm-race", max_size=2)
    applied, release = asyncio.Event(), asyncio.Event()

    async def buy(hold: bool) -> list[str]:
        event = purchase_event(email=unique_email("race"), link_id=link_id, create_deal=rule)
        now = datetime.now(UTC)
        async with tenant_tx(pool, shop.account_id) as conn:
            contact = await upserts.upsert_contact(conn, shop.account_id, event.contact.model_dump(), now)
            outcome = await apply_purchase(conn, shop.account_id, event, contact, now)
            if hold:
                applied.set()
                await release.wait()
        return outcome.deal_ids

    try:
        first = asyncio.create_task(buy(hold=True))
        await asyncio.wait_for(applied.wait(), timeout=WAIT)
        second = asyncio.create_task(buy(hold=False))
        await asyncio.sleep(0.5)
        assert not second.done(), "the second purchase did not wait for the first one's deal"
        release.set()
        assert await first == await second
    finally:
        release.set()
        await pool.close()


async def test_deal_rule_with_a_stage_that_is_gone_uses_the_default_pipeline(shop, pools):
    pipeline = await default_pipeline(shop)
    done = await purchase(
        pools, shop, email=unique_email("gone"), create_deal={"pipeline": "pipeline_gone", "stage": "stage_gone"}
    )
    (deal_id,) = done["deal_ids"]
    deal = (await shop.api.get(f"/v1/deals/{deal_id}")).body
    assert deal["pipeline"] == pipeline["id"] and deal["stage"] == pipeline["stages"][0]["id"]


async def test_a_simplified_links_record_gets_the_link_and_the_payer_gets_the_payment(shop, pools):
    source = (await shop.api.post("/v1/contacts", {"email": unique_email("source")})).body
    company = (await shop.api.post("/v1/companies", {"name": f"Source Co {uuid.uuid4().hex[:6]}"})).body
    link_id = f"plink_test{uuid.uuid4().hex[:20]}"
    done = await purchase(
        pools, shop, email=unique_email("payer"), link_id=link_id, crm_record={"type": "contact", "id": source["id"]}
    )
    assert done["contact_id"] != source["id"]
    made_from = await associations(shop, "contacts", source["id"])
    assert made_from["payment_links"] == [link_id] and made_from["payments"] == []
    payer = await associations(shop, "contacts", done["contact_id"])
    assert payer["payments"] == [done["payment_id"]] and payer["payment_links"] == [link_id]

    again = await purchase(
        pools, shop, email=unique_email("payer"), link_id=link_id, crm_record={"type": "company", "id": company["id"]}
    )
    linked = await associations(shop, "companies", company["id"])
    assert linked["payment_links"] == [link_id] and again["payment_id"] not in linked["payments"]


# -- through real payment links (the link API: create_deal, deal_id, simplified links) ----------------
async def test_a_link_that_creates_deals_end_to_end(shop, pools, session, stack):
    pipeline = await default_pipeline(shop)
    won = stage_of(pipeline, "closed_won")
    await eventually(lambda: checkout_stage(pools, shop, pipeline["id"], won["id"]), timeout=WAIT)
    link = await shop.api.post(
        "/v1/payment_links",
        {
            "name": "Workshop",
            "currency": "USD",
            "line_items": [{"name": "Seat", "unit_amount": 4000}],
            "create_deal": {"pipeline": pipeline["id"], "stage": won["id"]},
        },
    )
    assert link.status == 201, link.body
    deals = []
    for buyer_name in ("Ada", "Grace"):
        buyer = Buyer(session, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")
        paid = await buyer.pay(link.body["url"], unique_email(buyer_name), firstname=buyer_name)
        assert paid.status == 200, paid.body

        async def payment_deals(payment_id=paid.body["payment_id"]):
            return (await shop.api.get(f"/v1/payments/{payment_id}")).body["deal_ids"]

        (deal_id,) = await eventually(payment_deals, timeout=WAIT)
        deal = (await shop.api.get(f"/v1/deals/{deal_id}")).body
        assert deal["name"] == f"Workshop – {buyer_name}" and deal["stage"] == won["id"]
        assert deal["amount"] == 4000 and deal["created_by_link_id"] == link.body["id"]
        assert (await associations(shop, "deals", deal_id))["payments"] == [paid.body["payment_id"]]
        deals.append(deal_id)
    assert deals[0] != deals[1]  # closed-won deals are never reused


async def test_a_simplified_link_from_a_contact_end_to_end(shop, pools, session, stack):
    source = (await shop.api.post("/v1/contacts", {"email": unique_email("source")})).body
    await eventually(lambda: checkout_record(pools, shop, "contact", source["id"]), timeout=WAIT)
    link = await shop.api.post(
        f"/v1/contacts/{source['id']}/payment_links",
        {"name": "Invoice 7", "item_name": "Consulting", "unit_amount": 15000, "currency": "USD"},
    )
    assert link.status == 201, link.body
    buyer = Buyer(session, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")
    payer_email = unique_email("payer")
    paid = await buyer.pay(link.body["url"], payer_email)
    assert paid.status == 200, paid.body

    async def made_from():
        linked = await associations(shop, "contacts", source["id"])
        return linked if linked["payment_links"] else None

    linked = await eventually(made_from, timeout=WAIT)
    assert linked["payment_links"] == [link.body["id"]] and linked["payments"] == []

    async def payer_payments():  # (the link is associated at its creation, before the payment)
        found = (await shop.api.get(f"/v1/contacts?email={payer_email}")).body["data"]
        return (found and (await associations(shop, "contacts", found[0]["id"]))["payments"]) or None

    assert await eventually(payer_payments, timeout=WAIT) == [paid.body["payment_id"]]


# -- checkout records the payment's deals --------------------------------------------------------------------
async def test_checkout_records_the_deals_of_a_payment_add_only(shop, pools, session, stack):
    link = await shop.api.post(
        "/v1/payment_links", {"currency": "USD", "line_items": [{"name": "Tea", "unit_amount": 900}]}
    )
    assert link.status == 201, link.body
    buyer = Buyer(session, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")
    paid = await buyer.pay(link.body["url"], unique_email("tea"))
    assert paid.status == 200, paid.body
    payment_id = paid.body["payment_id"]
    upserted = await eventually(lambda: published(pools, shop, "contact.upserted", payment_id), timeout=WAIT)
    contact_id = upserted[0]["contact_id"]
    d1 = (await shop.api.post("/v1/deals", {"name": "One"})).body["id"]
    d2 = (await shop.api.post("/v1/deals", {"name": "Two"})).body["id"]

    async def tell(deal_ids: list[str]) -> None:
        async with tenant_tx(pools["crm_sync"], shop.account_id) as conn:
            await publish_event(
                conn,
                schema="crm_sync",
                producer="crm_sync",
                account_id=shop.account_id,
                event=ContactUpsertedV1(
                    contact_id=contact_id, email="x@example.com", payment_id=payment_id, deal_ids=deal_ids
                ),
                occurred_at=datetime.now(UTC),
            )

    async def deals_of_payment(expected: list[str]):
        r = await shop.api.get(f"/v1/payments/{payment_id}")
        return r.body if r.body["deal_ids"] == expected else None

    await tell([d1])
    await eventually(lambda: deals_of_payment([d1]), timeout=WAIT)
    await tell([d2, d1])
    await eventually(lambda: deals_of_payment([d1, d2]), timeout=WAIT)
    await tell([])
    await tell([d1])
    body = await eventually(lambda: deals_of_payment([d1, d2]), timeout=WAIT)
    assert body["contact_id"] == contact_id


def test_contact_upserted_without_deal_ids_still_parses():
    """Events written before ``deal_ids`` existed keep working."""
    old = json.loads('{"contact_id": "contact_1", "email": "a@example.com", "payment_id": "pay_1"}')
    assert ContactUpsertedV1.model_validate(old).deal_ids == []
