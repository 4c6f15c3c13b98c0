"""A simplified link is associated with the CRM record it was made from at creation
(PRODUCT §3.4), not only after its first payment: checkout publishes
``payment_link.associated`` with the link, crm_sync records the association (and
absorbs duplicates), and a record it does not know is skipped without a failed job
(decision 23). Every request goes through `CheckedApi`: no 5xx."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import asyncpg
import pytest

from services.checkout import crm_refs
from services.crm_sync.crm.link_events import on_payment_link_associated
from shared.db import create_pool, tenant_tx
from shared.events import EventEnvelope
from shared.events.models import PaymentLinkAssociatedV1
from shared.ids import new_id
from shared.outbox import publish_event
from tests.support.problems import CheckedApi
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

WAIT = 60  # seconds; the machine is shared with other test runs
ACTOR = "crm_sync.on_payment_link_associated"
KINDS = {"contacts": "contact", "companies": "company", "deals": "deal"}
SIMPLE = {"name": "Invoice 7", "item_name": "Consulting", "unit_amount": 15000, "currency": "USD"}


@pytest.fixture(scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(scope="module")
async def pools(stack) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    """Owner connections of checkout and crm_sync (their outbox, inbox and tables), and
    crm_sync's runtime role (row-level security applies to it, as in its worker)."""
    made = {
        "checkout": await create_pool(stack.env["CHECKOUT_DATABASE_OWNER_URL"], application_name="test-la", max_size=2),
        "crm_sync": await create_pool(stack.env["CRM_SYNC_DATABASE_OWNER_URL"], application_name="test-la", max_size=2),
        "crm_sync_app": await create_pool(stack.env["CRM_SYNC_DATABASE_URL"], application_name="test-la", max_size=2),
    }
    yield made
    for pool in made.values():
        await pool.close()


class Shop:
    def __init__(self, created: dict, api: CheckedApi) -> None:
        self.account_id: str = created["account_id"]
        self.api = api


@pytest.fixture
def shop(stack, session) -> Shop:
    created = stack.create_account(f"Link associations {uuid.uuid4().hex[:6]}", "USD", True)
    return Shop(created, CheckedApi(session, stack.config.base_url, created["api_key"]))


# -- helpers ---------------------------------------------------------------------------------------
async def new_record(shop: Shop, pools: dict, collection: str) -> str:
    """A contact, company or deal, once checkout knows it (links are checked against that)."""
    body = {
        "contacts": {"email": f"source-{uuid.uuid4().hex[:8]}@example.com"},
        "companies": {"name": f"Source Co {uuid.uuid4().hex[:6]}"},
        "deals": {"name": f"Source deal {uuid.uuid4().hex[:6]}"},
    }[collection]
    created = await shop.api.post(f"/v1/{collection}", body)
    assert created.status == 201, created.body
    record_id = created.body["id"]

    async def known():
        async with tenant_tx(pools["checkout"], shop.account_id) as conn:
            return await crm_refs.find_record(conn, shop.account_id, KINDS[collection], record_id)

    await eventually(known, timeout=WAIT)
    return record_id


async def associations(shop: Shop, collection: str, record_id: str) -> dict:
    r = await shop.api.get(f"/v1/{collection}/{record_id}/associations")
    assert r.status == 200, r.body
    return r.body


async def listed_link(shop: Shop, collection: str, record_id: str, link_id: str) -> dict | None:
    linked = await associations(shop, collection, record_id)
    return linked if link_id in linked["payment_links"] else None


async def announced(pools: dict, shop: Shop, link_id: str) -> list:
    """checkout's ``payment_link.associated`` rows for the link."""
    return await pools["checkout"].fetch(
        """SELECT event_id, envelope, pending, publish_count, delivered_at FROM checkout.outbox
           WHERE account_id = $1 AND type = 'payment_link.associated' AND envelope->'data'->>'link_id' = $2
           ORDER BY seq""",
        shop.account_id,
        link_id,
    )


async def delivered(pools: dict, event_id: str, publish_count: int = 1):
    """The outbox row once crm_sync acknowledged it (after ``publish_count`` sends)."""
    return await pools["checkout"].fetchrow(
        """SELECT * FROM checkout.outbox
           WHERE event_id = $1 AND delivered_at IS NOT NULL AND publish_count >= $2""",
        event_id,
        publish_count,
    )


async def no_failed_job(pools: dict, event_id: str) -> None:
    failed = await pools["crm_sync"].fetchval("SELECT error FROM crm_sync.failed_jobs WHERE event_id = $1", event_id)
    assert failed is None, f"crm_sync failed on the event: {failed}"


async def inbox_rows(pools: dict, event_id: str) -> int:
    return await pools["crm_sync"].fetchval(
        "SELECT count(*) FROM crm_sync.inbox WHERE event_id = $1 AND handler = $2", event_id, ACTOR
    )


async def association_rows(pools: dict, shop: Shop, kind: str, record_id: str, link_id: str) -> list:
    return await pools["crm_sync"].fetch(
        """SELECT * FROM crm_sync.associations
           WHERE account_id = $1 AND object_type = $2 AND object_id = $3
             AND related_type = 'payment_link' AND related_id = $4""",
        shop.account_id,
        kind,
        record_id,
        link_id,
    )


# -- tests ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("collection", list(KINDS))
async def test_a_simplified_link_is_associated_with_its_record_before_any_payment(shop, pools, collection):
    kind = KINDS[collection]
    record_id = await new_record(shop, pools, collection)
    made = await shop.api.post(f"/v1/{collection}/{record_id}/payment_links", SIMPLE)
    assert made.status == 201, made.body
    link = made.body
    assert link["crm_record"] == {"type": kind, "id": record_id}

    linked = await eventually(lambda: listed_link(shop, collection, record_id, link["id"]), timeout=WAIT)
    assert linked["payment_links"] == [link["id"]] and linked["payments"] == []  # nobody paid
    assert linked["object"] == "associations" and linked[f"{kind}_id"] == record_id

    # one event, written with the link, with what crm_sync needs; acknowledged, no failure
    (row,) = await announced(pools, shop, link["id"])
    data = row["envelope"]["data"]
    assert (data["link_id"], data["kind"], data["record_id"]) == (link["id"], kind, record_id)
    assert datetime.fromisoformat(data["associated_at"]) == datetime.fromisoformat(link["created_at"])
    await eventually(lambda: delivered(pools, row["event_id"]), timeout=WAIT)
    await no_failed_job(pools, row["event_id"])
    assert await inbox_rows(pools, row["event_id"]) == 1


async def test_a_clone_keeps_the_record_and_is_associated_too(shop, pools):
    record_id = await new_record(shop, pools, "companies")
    link = (await shop.api.post(f"/v1/companies/{record_id}/payment_links", SIMPLE)).body
    clone = await shop.api.post(f"/v1/payment_links/{link['id']}/clone")
    assert clone.status == 201, clone.body
    assert clone.body["crm_record"] == {"type": "company", "id": record_id}

    async def both():
        linked = await associations(shop, "companies", record_id)
        return linked if len(linked["payment_links"]) == 2 else None

    linked = await eventually(both, timeout=WAIT)
    assert linked["payment_links"] == sorted([link["id"], clone.body["id"]])


async def test_links_not_made_from_a_record_announce_nothing(shop, pools):
    plain = await shop.api.post(
        "/v1/payment_links", {"currency": "USD", "line_items": [{"name": "Tea", "unit_amount": 900}]}
    )
    assert plain.status == 201, plain.body
    assert plain.body["crm_record"] is None
    assert await announced(pools, shop, plain.body["id"]) == []


async def test_the_event_delivered_twice_makes_one_association(shop, pools):
    record_id = await new_record(shop, pools, "contacts")
    link = (await shop.api.post(f"/v1/contacts/{record_id}/payment_links", SIMPLE)).body
    await eventually(lambda: listed_link(shop, "contacts", record_id, link["id"]), timeout=WAIT)
    (row,) = await announced(pools, shop, link["id"])
    first = await eventually(lambda: delivered(pools, row["event_id"]), timeout=WAIT)
    before = await association_rows(pools, shop, "contact", record_id, link["id"])
    assert len(before) == 1

    # The relay sends the same event (same id) to crm_sync again, as after a crash
    # between sending and marking: the real worker's inbox absorbs it and acknowledges.
    await pools["checkout"].execute(
        """UPDATE checkout.outbox SET published_at = NULL, delivered_at = NULL, pending = $2
           WHERE event_id = $1""",
        row["event_id"],
        [ACTOR],
    )
    again = await eventually(lambda: delivered(pools, row["event_id"], first["publish_count"] + 1), timeout=WAIT)
    assert again["pending"] == []
    await no_failed_job(pools, row["event_id"])
    assert await inbox_rows(pools, row["event_id"]) == 1
    assert await association_rows(pools, shop, "contact", record_id, link["id"]) == before  # untouched
    assert (await associations(shop, "contacts", record_id))["payment_links"] == [link["id"]]

    # Without the inbox (a new event id for the same fact, e.g. an operator replay), the
    # handler itself changes nothing either: run it twice under crm_sync's runtime role.
    event = PaymentLinkAssociatedV1(
        link_id=link["id"], kind="contact", record_id=record_id, associated_at=datetime.now(UTC)
    )
    for _ in range(2):
        envelope = EventEnvelope(
            id=new_id("evt"),
            type="payment_link.associated",
            version=1,
            account_id=shop.account_id,
            producer="checkout",
            occurred_at=datetime.now(UTC),
            data=event.model_dump(mode="json"),
        )
        async with tenant_tx(pools["crm_sync_app"], shop.account_id) as conn:
            # the handler uses nothing of the worker's context
            await on_payment_link_associated(None, conn, event, envelope)  # type: ignore[arg-type]
    assert await association_rows(pools, shop, "contact", record_id, link["id"]) == before


@pytest.mark.parametrize("kind", ["contact", "company", "deal"])
async def test_an_unknown_record_is_skipped_without_a_failed_job(shop, pools, stack, session, kind):
    """A record crm_sync does not have (deleted after the link was made, never known, or
    another account's) is not associated, and the event is handled once, not retried."""
    other = stack.create_account(f"Other {uuid.uuid4().hex[:6]}", "USD", True)
    foreign = await new_record(
        Shop(other, CheckedApi(session, stack.config.base_url, other["api_key"])),
        pools,
        {"contact": "contacts", "company": "companies", "deal": "deals"}[kind],
    )
    link_id = f"plink_test{uuid.uuid4().hex[:20]}"
    event_ids = []
    async with tenant_tx(pools["checkout"], shop.account_id) as conn:
        for record_id in (f"{kind}_gone{uuid.uuid4().hex[:12]}", foreign):
            event = PaymentLinkAssociatedV1(
                link_id=link_id, kind=kind, record_id=record_id, associated_at=datetime.now(UTC)
            )
            event_ids.append(
                await publish_event(
                    conn,
                    schema="checkout",
                    producer="checkout",
                    account_id=shop.account_id,
                    event=event,
                    occurred_at=datetime.now(UTC),
                )
            )
    for event_id in event_ids:
        await eventually(lambda event_id=event_id: delivered(pools, event_id), timeout=WAIT)
        await no_failed_job(pools, event_id)
        assert await inbox_rows(pools, event_id) == 1
    left = await pools["crm_sync"].fetchval(
        "SELECT count(*) FROM crm_sync.associations WHERE related_type = 'payment_link' AND related_id = $1", link_id
    )
    assert left == 0
