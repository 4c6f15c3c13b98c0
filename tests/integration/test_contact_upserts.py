"""The CRM's upsert rules on the one set-based path (``contacts/upserts.py``), against
real PostgreSQL, as crm_sync's runtime role under row-level security:

- a contact is one per e-mail address in any letter case, within a batch (rows merged)
  and against what is stored; the stored spelling stays;
- empty, blank or missing values never erase stored ones; non-empty ones replace them;
- a batch that brings nothing new writes nothing (no version, no ``updated_at``, no event);
- rows are checked one by one: a refused row names its fields, the others are written;
- addresses that are not ASCII are keyed by the database's own ``lower()``;
- the contacts a batch created or changed are announced with one ``crm_records.updated``
  event, which checkout's projection applies (newest version wins);
- concurrent batches of the same addresses in opposite orders do not deadlock;
- a purchase's contact goes through the same statement and is never refused;
- ``POST /v1/contacts/batch/upsert`` refuses a malformed request as a whole (422 naming the
  field) and answers per row otherwise.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.checkout.crm_refs import find_record
from services.checkout.crm_refs import registry as checkout_crm_registry
from services.checkout.settings import CheckoutSettings
from services.crm_sync.app import create_app as crm_app
from services.crm_sync.contacts import repository as contacts_repo
from services.crm_sync.contacts import upserts
from services.crm_sync.settings import CrmSettings
from shared.accounts import apply_account_snapshot
from shared.db import create_pool, tenant_tx
from shared.events.models import AccountSnapshot, ApiKeySnapshot, CrmRecordsUpdatedV1
from shared.inbox import HandlerContext, consume
from shared.web.auth import hash_api_key

API_KEY = f"ck_test_{uuid.uuid4().hex}"
T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


class FakeRedis:
    async def rpush(self, key: str, value: str) -> None:
        pass


def _settings(cls, dsn, service: str):
    return cls(database_url=dsn(service), database_owner_url=dsn(service, owner=True), db_pool_min=1, db_pool_max=2)


@pytest.fixture(scope="module")
async def pools(dsn):
    made = {
        "crm": await create_pool(dsn("crm_sync"), application_name="upserts-test", min_size=1, max_size=3),
        "crm_owner": await create_pool(dsn("crm_sync", owner=True), application_name="upserts-test", max_size=1),
        "checkout": await create_pool(dsn("checkout"), application_name="upserts-test", max_size=2),
        "checkout_owner": await create_pool(dsn("checkout", owner=True), application_name="upserts-test", max_size=1),
    }
    yield made
    for pool in made.values():
        await pool.close()


@pytest.fixture
async def account(pools) -> str:
    """A new account known to crm_sync and checkout, with the test's API key."""
    account_id = f"acct_upsert_{uuid.uuid4().hex[:10]}"
    snapshot = AccountSnapshot(
        id=account_id,
        version=1,
        name="Upserts",
        test_mode=True,
        settings={},
        clock_offset_us=0,
        api_keys=[
            ApiKeySnapshot(
                id=f"key_{uuid.uuid4().hex[:10]}",
                prefix=API_KEY[:12],
                key_hash=hash_api_key(API_KEY + account_id),
                scopes=["*"],
            )
        ],
    )
    for pool, schema in ((pools["crm"], "crm_sync"), (pools["checkout"], "checkout")):
        async with tenant_tx(pool, account_id) as conn:
            assert await apply_account_snapshot(conn, schema, snapshot)
    return account_id


async def batch(pools, account_id: str, rows: list[dict], *, at: datetime = T0) -> upserts.BatchOutcome:
    async with tenant_tx(pools["crm"], account_id) as conn:
        return await upserts.upsert_batch(conn, account_id, rows, at)


async def contacts(pools, account_id: str) -> list[dict]:
    async with tenant_tx(pools["crm"], account_id) as conn:
        rows = await conn.fetch(
            "SELECT * FROM crm_sync.contacts WHERE account_id = $1 ORDER BY lower(email)", account_id
        )
    return [dict(r) for r in rows]


async def batch_events(pools, account_id: str) -> list[dict]:
    rows = await pools["crm_owner"].fetch(
        "SELECT envelope FROM crm_sync.outbox WHERE account_id = $1 AND type = 'crm_records.updated' ORDER BY seq",
        account_id,
    )
    return [r["envelope"] for r in rows]


def statuses(outcome: upserts.BatchOutcome) -> list[str]:
    return [r.status for r in outcome.results]


async def test_an_email_address_is_one_contact_in_any_letter_case(pools, account):
    first = await batch(
        pools,
        account,
        [
            {"email": "Ada@Example.com", "firstname": "Ada"},
            {"email": "grace@example.com"},
            {"email": "  ada@EXAMPLE.com ", "lastname": "Lovelace"},
        ],
    )
    assert statuses(first) == ["created", "created", "merged"]
    assert (first.created, first.merged, first.updated, first.unchanged, first.failed) == (2, 1, 0, 0, 0)
    assert first.results[0].id == first.results[2].id != first.results[1].id
    again = await batch(pools, account, [{"email": "ADA@EXAMPLE.COM", "city": "London"}])
    assert statuses(again) == ["updated"] and again.results[0].id == first.results[0].id
    (ada, grace) = await contacts(pools, account)
    assert ada["id"] == first.results[0].id and ada["email"] == "ada@EXAMPLE.com"  # the row merged last named it
    assert (ada["firstname"], ada["lastname"], ada["city"]) == ("Ada", "Lovelace", "London")
    assert grace["email"] == "grace@example.com"


async def test_empty_values_never_erase_and_values_replace(pools, account):
    await batch(pools, account, [{"email": "kept@example.com", "firstname": "Merchant", "city": "Malmö", "zip": "1"}])
    done = await batch(
        pools,
        account,
        [{"email": "KEPT@example.com", "firstname": "", "city": "   ", "zip": None, "phone": "+46 70 1", "state": "S"}],
    )
    assert statuses(done) == ["updated"]
    (row,) = await contacts(pools, account)
    assert (row["firstname"], row["city"], row["zip"]) == ("Merchant", "Malmö", "1")
    assert (row["phone"], row["state"]) == ("+46 70 1", "S")
    replaced = await batch(pools, account, [{"email": "kept@example.com", "firstname": "Anna"}])
    assert statuses(replaced) == ["updated"]
    assert (await contacts(pools, account))[0]["firstname"] == "Anna"
    # within a batch the same: a later row's value wins, its empty one keeps the earlier one's
    merged = await batch(
        pools,
        account,
        [
            {"email": "m@example.com", "firstname": "One", "lastname": "First"},
            {"email": "M@example.com", "firstname": "Two", "lastname": ""},
        ],
    )
    assert statuses(merged) == ["created", "merged"]
    row = next(c for c in await contacts(pools, account) if c["email"].lower() == "m@example.com")
    assert (row["firstname"], row["lastname"]) == ("Two", "First")


async def test_a_batch_that_brings_nothing_new_writes_nothing(pools, account):
    rows = [{"email": f"same{i}@example.com", "firstname": f"N{i}", "city": "Lund"} for i in range(50)]
    first = await batch(pools, account, rows)
    assert first.created == 50
    before = await contacts(pools, account)
    events = await batch_events(pools, account)
    assert len(events) == 1 and len(events[0]["data"]["record_ids"]) == 50

    later = T0 + timedelta(days=1)
    shuffled = [{**r, "email": r["email"].upper(), "city": ""} for r in reversed(rows)]
    again = await batch(pools, account, shuffled, at=later)
    assert again.unchanged == 50 and statuses(again) == ["unchanged"] * 50
    assert sorted(r.id for r in again.results) == sorted(c["id"] for c in before)  # ids of unchanged contacts too
    assert await contacts(pools, account) == before  # same versions, same updated_at
    assert len(await batch_events(pools, account)) == 1  # nothing announced

    one_changed = await batch(pools, account, [*rows[:10], {**rows[10], "city": "Malmö"}], at=later)
    assert (one_changed.unchanged, one_changed.updated) == (10, 1)
    (event,) = (await batch_events(pools, account))[1:]
    (record,) = CrmRecordsUpdatedV1.model_validate(event["data"]).records()
    changed = next(c for c in await contacts(pools, account) if c["email"] == rows[10]["email"])
    assert record == {
        "record_id": changed["id"],
        "version": changed["version"],
        "data": {"email": changed["email"], "name": "N10", "company_id": None},
    }
    assert changed["version"] == 2 and changed["updated_at"] == later


async def test_rows_are_checked_one_by_one(pools, account):
    card = "4242 4242 4242 4242"
    rows = [
        {"email": "ok@example.com", "firstname": "Fine"},
        {"email": "not-an-address"},
        {"email": "long@example.com", "firstname": "x" * 201, "zip": "1" * 51},
        {"firstname": "No address"},
        {"email": "nul@example.com", "city": "a\x00b"},
        {"email": "card@example.com", "phone": card},
        {"email": "surrogate@example.com", "lastname": "\ud800"},
        {"email": "   "},
        {"email": "x" * 310 + "@example.com"},
        {"email": "fine2@example.com", "website": "https://example.com/" + "a" * 1900},
    ]
    done = await batch(pools, account, rows)
    assert statuses(done) == ["created", *["failed"] * 8, "created"]
    assert (done.created, done.failed) == (2, 8)
    fields = {r.index: [e["field"] for e in r.errors] for r in done.results if r.status == "failed"}
    assert fields == {
        1: ["email"],
        2: ["firstname", "zip"],
        3: ["email"],
        4: ["city"],
        5: ["phone"],
        6: ["lastname"],
        7: ["email"],
        8: ["email"],
    }
    assert all(r.id is None for r in done.results if r.status == "failed")
    assert [c["email"] for c in await contacts(pools, account)] == ["fine2@example.com", "ok@example.com"]
    # numbering continues across the batches of one import
    numbered = await batch_at(pools, account, [{"email": "bad"}], first_index=1000)
    assert [(r.index, r.status) for r in numbered.results] == [(1000, "failed")]


async def batch_at(pools, account_id: str, rows: list[dict], *, first_index: int) -> upserts.BatchOutcome:
    async with tenant_tx(pools["crm"], account_id) as conn:
        return await upserts.upsert_batch(conn, account_id, rows, T0, first_index=first_index)


async def test_separator_characters_in_values_are_stored_as_given(pools, account):
    # values travel packed in one text per column unless a value holds the separators
    odd = {"email": "odd@example.com", "address": "Box 1\x1fFloor 2", "city": "A\x1eB", "zip": "\x1e"}
    plain = {"email": "plain@example.com", "firstname": "Plain"}
    done = await batch(pools, account, [odd, plain])
    assert done.created == 2
    stored = {c["email"]: c for c in await contacts(pools, account)}
    assert stored["odd@example.com"]["address"] == "Box 1\x1fFloor 2"
    assert stored["odd@example.com"]["city"] == "A\x1eB"
    assert stored["odd@example.com"]["zip"] is None  # only blanks (\x1e is one): no value
    assert stored["plain@example.com"]["firstname"] == "Plain"


async def test_the_announced_name_is_the_summary_of_crm_record_updated(pools, account):
    from services.crm_sync.crm.records import contact_summary

    rows = [
        {"email": "both@example.com", "firstname": "Ada", "lastname": "Lovelace"},
        {"email": "first@example.com", "firstname": "Ada"},
        {"email": "last@example.com", "lastname": "Lovelace"},
        {"email": "none@example.com", "city": "Lund"},
    ]
    await batch(pools, account, rows)
    (event,) = await batch_events(pools, account)
    announced = {r["record_id"]: r["data"] for r in CrmRecordsUpdatedV1.model_validate(event["data"]).records()}
    stored = await contacts(pools, account)
    assert len(announced) == 4
    for row in stored:
        assert announced[row["id"]] == contact_summary(row), row["email"]


async def test_addresses_beyond_ascii_are_keyed_by_the_database(pools, account):
    emails = ["Ärla@exämple.se", "ärla@EXÄMPLE.se", "ÅSA@exempel.se", "åsa@exempel.se", "İpek@örnek.tr"]
    async with tenant_tx(pools["crm"], account) as conn:
        keys = await contacts_repo.lower_case(conn, emails)
    done = await batch(pools, account, [{"email": e} for e in emails])
    assert done.created == len(set(keys)) and done.merged == len(emails) - len(set(keys))
    again = await batch(pools, account, [{"email": e, "city": "Umeå"} for e in emails])
    assert again.updated == len(set(keys)) and again.created == 0
    assert len(await contacts(pools, account)) == len(set(keys))


async def test_the_batch_event_keeps_checkouts_projection(pools, account, dsn):
    await batch(pools, account, [{"email": f"p{i}@example.com", "firstname": "Old"} for i in range(3)])
    await batch(pools, account, [{"email": "p0@example.com", "firstname": "New"}], at=T0 + timedelta(hours=1))
    first, second = await batch_events(pools, account)
    settings = _settings(CheckoutSettings, dsn, "checkout")
    ctx = HandlerContext("checkout", "checkout", settings, pools["checkout"], pools["checkout_owner"], FakeRedis(), {})
    handler = checkout_crm_registry.handlers["checkout.on_crm_records_updated"]
    await consume(ctx, handler, second)  # the newer one first: the older one must not undo it
    await consume(ctx, handler, first)
    await consume(ctx, handler, first)  # a duplicate delivery changes nothing
    async with tenant_tx(pools["checkout"], account) as conn:
        found = {
            c["email"]: await find_record(conn, account, "contact", c["id"]) for c in await contacts(pools, account)
        }
    assert found["p0@example.com"]["data"]["name"] == "New"
    assert found["p1@example.com"]["data"] == {"email": "p1@example.com", "name": "Old", "company_id": None}
    assert all(record is not None for record in found.values())


async def test_concurrent_batches_of_the_same_addresses_do_not_deadlock(pools, account):
    rows = [{"email": f"race{i:03d}@example.com", "city": "A"} for i in range(300)]
    await batch(pools, account, rows[::2])  # half exist already

    async def run(order: list[dict], city: str) -> upserts.BatchOutcome:
        return await batch(pools, account, [{**r, "city": city} for r in order])

    one, two = await asyncio.wait_for(asyncio.gather(run(rows, "B"), run(rows[::-1], "C")), timeout=60)
    assert one.failed == two.failed == 0
    stored = await contacts(pools, account)
    assert len(stored) == 300 and {c["city"] for c in stored} <= {"B", "C"}


async def test_a_purchase_contact_takes_the_same_path_and_is_never_refused(pools, account):
    await batch(pools, account, [{"email": "buyer@example.com", "firstname": "Merchant", "city": "Lund"}])
    async with tenant_tx(pools["crm"], account) as conn:
        row = await upserts.upsert_contact(
            conn, account, {"email": "BUYER@example.com", "firstname": " ", "lastname": "Buyer", "zip": "x" * 60}, T0
        )
        fresh = await upserts.upsert_contact(conn, account, {"email": "new-buyer@example.com"}, T0)
        same = await upserts.upsert_contact(conn, account, {"email": "new-buyer@example.com"}, T0)
    assert row["created"] is False and (row["firstname"], row["lastname"], row["city"]) == ("Merchant", "Buyer", "Lund")
    assert row["zip"] == "x" * 60  # checkout checked the buyer's input; the CRM never refuses a purchase
    assert fresh["created"] is True and same["created"] is False and same["id"] == fresh["id"]


# -- the batch API ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def crm_http(dsn):
    async with TestClient(TestServer(crm_app(_settings(CrmSettings, dsn, "crm_sync")))) as client:
        yield client


def auth(account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}{account_id}"}


async def test_the_batch_api_answers_per_row(crm_http, pools, account):
    body = {
        "contacts": [
            {"email": "api@example.com", "firstname": "Api"},
            {"email": "bad address"},
            {"email": "API@example.com", "phone": "4111 1111 1111 1111"},
            {"email": "API@example.com", "lastname": "Last"},
        ]
    }
    r = await crm_http.post("/v1/contacts/batch/upsert", json=body, headers=auth(account))
    assert r.status == 200, await r.text()
    answer = await r.json()
    assert answer["object"] == "contact_batch"
    assert [(x["index"], x["status"]) for x in answer["results"]] == [
        (0, "created"),
        (1, "failed"),
        (2, "failed"),
        (3, "merged"),
    ]
    assert answer["results"][1]["errors"] == [{"field": "email", "message": "is not a valid e-mail address"}]
    assert answer["results"][2]["errors"][0]["field"] == "phone"
    assert answer["results"][3]["id"] == answer["results"][0]["id"]
    assert (answer["created"], answer["merged"], answer["failed"]) == (1, 1, 2)
    (row,) = await contacts(pools, account)
    assert (row["firstname"], row["lastname"], row["phone"]) == ("Api", "Last", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contacts": []}, "contacts"),
        ({"contacts": [{"email": f"n{i}@example.com"} for i in range(1001)]}, "contacts"),
        ({"contacts": [{"email": "a@example.com", "favourite": "tea"}]}, "contacts[0].favourite"),
        ({"contacts": [{"email": "a@example.com"}, {"email": 5}]}, "contacts[1].email"),
        ({"contacts": [{"email": "a@example.com", "city": ["Lund"]}]}, "contacts[0].city"),
        ({"contacts": {"email": "a@example.com"}}, "contacts"),
        ({"rows": [{"email": "a@example.com"}]}, "rows"),
    ],
)
async def test_a_malformed_batch_is_refused_as_a_whole(crm_http, pools, account, body, field):
    r = await crm_http.post("/v1/contacts/batch/upsert", json=body, headers=auth(account))
    assert r.status == 422, await r.text()
    problem = await r.json()
    assert field in [e["field"] for e in problem["errors"]]
    assert await contacts(pools, account) == []
