"""The payments API of PRODUCT §7 / API.md "Payments": lists and filters, refunds through
the processor (full, partial, never too much, never twice), the ledger's view of them,
and a merchant's manual association of a payment with CRM records (§9).

Every call goes through `CheckedApi`: no request may answer 5xx. Refund amounts are
checked at the processor itself (the test processor's ``GET /v1/refunds``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import asyncpg
import pytest

from shared.db import dumps
from shared.events.models import ContactUpsertedV1, PaymentFailedV1, PaymentRefundedV1, PaymentSucceededV1
from shared.ids import new_id
from shared.outbox import publish_event
from shared.processor.registry import TEST_SECRET_KEY
from tests.support.client import Buyer
from tests.support.problems import CheckedApi, assert_problem
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture
def checked(http, stack, account) -> CheckedApi:
    return CheckedApi(http, stack.config.base_url, account["api_key"])


@pytest.fixture
def processor_url(stack) -> str:
    return f"http://127.0.0.1:{stack.config.ports.test_processor}"


def new_buyer(http, stack) -> Buyer:
    buyer = Buyer(http, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")
    buyer.api = CheckedApi(http, stack.config.base_url)
    return buyer


async def make_link(api: CheckedApi, name: str = "Link", unit_amount: int = 2500) -> dict:
    created = await api.post(
        "/v1/payment_links",
        {"name": name, "currency": "USD", "line_items": [{"name": name, "unit_amount": unit_amount}]},
    )
    assert created.status == 201, created.body
    return created.body


async def pay(http, stack, link: dict, email: str) -> str:
    done = await new_buyer(http, stack).pay(link["url"], email)
    assert done.status == 200, done.body
    return done.body["payment_id"]


async def payment(api: CheckedApi, payment_id: str) -> dict:
    r = await api.get(f"/v1/payments/{payment_id}")
    assert r.status == 200, r.body
    return r.body


async def processor_refunds(http, processor_url: str, payment_intent_id: str) -> list[int]:
    """The amounts the processor refunded for a PaymentIntent (any test secret key works)."""
    async with http.get(
        f"{processor_url}/v1/refunds",
        params={"payment_intent": payment_intent_id, "limit": "100"},
        headers={"Authorization": "Bearer sk_test_payments_api"},
    ) as r:
        assert r.status == 200, await r.text()
        return sorted(item["amount"] for item in (await r.json())["data"])


async def ledger(api: CheckedApi, payment_id: str) -> list[dict]:
    r = await api.get(f"/v1/ledger_entries?payment_id={payment_id}")
    assert r.status == 200, r.body
    return r.body["data"]


def ids(response) -> list[str]:
    assert response.status == 200, response.body
    return [p["id"] for p in response.body["data"]]


def q(value: str) -> str:
    return quote(value, safe="")


async def publish_as(stack, service: str, account_id: str, events: list) -> list[str]:
    """Write events to ``service``'s outbox as that service would (its relay publishes them)."""
    conn = await asyncpg.connect(stack.postgres.url(f"commerce_{service}", stack.config.database), timeout=10)
    try:
        for type_name in ("json", "jsonb"):
            await conn.set_type_codec(type_name, encoder=dumps, decoder=json.loads, schema="pg_catalog")
        async with conn.transaction():
            return [
                await publish_event(
                    conn,
                    schema=service,
                    producer=service,
                    account_id=account_id,
                    event=event,
                    occurred_at=datetime.now(UTC),
                )
                for event in events
            ]
    finally:
        await conn.close()


async def delivered(stack, service: str, event_ids: list[str]) -> bool:
    conn = await asyncpg.connect(stack.postgres.url(f"commerce_{service}", stack.config.database), timeout=10)
    try:
        return await conn.fetchval(
            f"SELECT bool_and(delivered_at IS NOT NULL) FROM {service}.outbox WHERE event_id = ANY($1::text[])",
            event_ids,
        )
    finally:
        await conn.close()


# -- lists and filters -----------------------------------------------------------------------------
async def test_list_filters_by_status_contact_link_dates_and_pages(http, stack, checked):
    first_link, other_link = await make_link(checked, "First"), await make_link(checked, "Other")
    run = uuid.uuid4().hex[:6]
    p1 = await pay(http, stack, first_link, f"one-{run}@example.com")
    p2 = await pay(http, stack, other_link, f"two-{run}@example.com")
    p3 = await pay(http, stack, first_link, f"three-{run}@example.com")

    assert ids(await checked.get("/v1/payments")) == [p3, p2, p1]  # newest first
    assert ids(await checked.get(f"/v1/payments?payment_link_id={first_link['id']}")) == [p3, p1]
    assert ids(await checked.get(f"/v1/payments?payment_link_id={other_link['id']}")) == [p2]
    assert ids(await checked.get("/v1/payments?subscription_id=sub_00000000000000000000000000")) == []

    # status: a refunded payment leaves "succeeded"
    refunded = await checked.post(f"/v1/payments/{p2}/refunds", {})
    assert refunded.status == 201, refunded.body
    assert ids(await checked.get("/v1/payments?status=refunded")) == [p2]
    assert ids(await checked.get("/v1/payments?status=succeeded")) == [p3, p1]
    assert ids(await checked.get("/v1/payments?status=partially_refunded")) == []

    # contact: crm_sync tells checkout whose payment it was
    async def contact_of_p1():
        return (await payment(checked, p1))["contact_id"]

    contact_id = await eventually(contact_of_p1, timeout=30)
    assert ids(await checked.get(f"/v1/payments?contact_id={contact_id}")) == [p1]
    assert ids(await checked.get(f"/v1/payments?contact_id={contact_id}&status=refunded")) == []

    # creation time: created[gte|gt|lte|lt], RFC 3339 instants (or Unix seconds)
    created = {p: (await payment(checked, p))["created_at"] for p in (p1, p2, p3)}
    middle = created[p2]
    assert ids(await checked.get(f"/v1/payments?{q('created[gte]')}={q(middle)}")) == [p3, p2]
    assert ids(await checked.get(f"/v1/payments?{q('created[gt]')}={q(middle)}")) == [p3]
    assert ids(await checked.get(f"/v1/payments?{q('created[lte]')}={q(middle)}")) == [p2, p1]
    assert ids(await checked.get(f"/v1/payments?{q('created[lt]')}={q(middle)}")) == [p1]
    between = f"{q('created[gte]')}={q(created[p1])}&{q('created[lt]')}={q(created[p3])}"
    assert ids(await checked.get(f"/v1/payments?{between}&payment_link_id={first_link['id']}")) == [p1]
    later = datetime.fromisoformat(created[p3].replace("Z", "+00:00")) + timedelta(hours=1)
    assert ids(await checked.get(f"/v1/payments?{q('created[gte]')}={int(later.timestamp())}")) == []
    assert ids(await checked.get(f"/v1/payments?{q('created[lte]')}={int(later.timestamp())}")) == [p3, p2, p1]

    # pages
    page1 = await checked.get("/v1/payments?limit=2")
    assert ids(page1) == [p3, p2] and page1.body["has_more"] is True
    page2 = await checked.get(f"/v1/payments?limit=2&starting_after={p2}")
    assert ids(page2) == [p1] and page2.body["has_more"] is False
    filtered = await checked.get(f"/v1/payments?limit=1&payment_link_id={first_link['id']}&starting_after={p3}")
    assert ids(filtered) == [p1] and filtered.body["has_more"] is False

    # bad filters name the parameter
    for query, field in (
        (f"{q('created[gte]')}=yesterday", "created[gte]"),
        (f"{q('created[lt]')}=2025-01-01T00:00:00", "created[lt]"),  # no offset: ambiguous
        ("created_gte=2025-01-01T00:00:00Z", "created_gte"),
        ("status=paid", "status"),
        ("limit=0", "limit"),
    ):
        assert_problem(await checked.get(f"/v1/payments?{query}"), 422, field)


async def test_a_payment_has_the_fields_of_the_api(http, stack, checked, link):
    payment_id = await pay(http, stack, link, "fields@example.com")
    body = await payment(checked, payment_id)
    for name in (
        "id, status, amount, currency, fee, net, method_type, contact_id, source, deal_ids, company_id, "
        "billing_address, shipping_address, created_at, amount_refunded, refunds"
    ).split(", "):
        assert name in body, name
    assert body["status"] == "succeeded" and body["amount"] == 2500 and body["amount_refunded"] == 0
    assert body["amount_refundable"] == 2500
    assert body["refunds"]["total_count"] == 0 and body["refunds"]["data"] == []
    assert body["refunds"]["url"] == f"/v1/payments/{payment_id}/refunds"
    assert body["fee"] is None and body["net"] is None  # the processor has not reported its fee
    assert body["processor_payment_id"].startswith("pi_")


# -- refunds -------------------------------------------------------------------------------------
async def test_a_full_refund(http, stack, checked, link, processor_url):
    payment_id = await pay(http, stack, link, "full@example.com")
    before = await payment(checked, payment_id)

    refund = await checked.post(f"/v1/payments/{payment_id}/refunds", {})
    assert refund.status == 201, refund.body
    assert refund.body["status"] == "succeeded" and refund.body["amount"] == 2500
    assert refund.body["currency"] == "USD" and refund.body["processor_refund_id"].startswith("re_")

    after = await payment(checked, payment_id)
    assert after["status"] == "refunded" and after["amount_refunded"] == 2500 and after["amount_refundable"] == 0
    assert after["refunds"]["total_count"] == 1 and after["refunds"]["data"][0]["id"] == refund.body["id"]
    assert await processor_refunds(http, processor_url, before["processor_payment_id"]) == [2500]

    again = await checked.post(f"/v1/payments/{payment_id}/refunds", {})
    assert_problem(again, 409)
    partial_again = await checked.post(f"/v1/payments/{payment_id}/refunds", {"amount": 1})
    assert_problem(partial_again, 409)
    assert await processor_refunds(http, processor_url, before["processor_payment_id"]) == [2500]

    async def refund_entry():
        return [e for e in await ledger(checked, payment_id) if e["kind"] == "refund"]

    (entry,) = await eventually(refund_entry, timeout=30)
    assert entry["amount"] == -2500 and entry["refund_id"] == refund.body["id"] and entry["currency"] == "USD"
    assert entry["source"] == {"type": "payment_link", "id": link["id"]}
    entries = await ledger(checked, payment_id)
    assert sorted(e["kind"] for e in entries) == ["payment", "refund"]
    assert sum(e["amount"] for e in entries) == 0


async def test_the_ledger_stays_exact_when_payment_events_repeat_or_overlap(http, stack, checked, link, account):
    """payment.succeeded / payment.failed / payment.refunded as checkout (or its processor
    webhooks) will send them: twice each, and a settlement of a payment already credited."""
    paid = await pay(http, stack, link, "ledger@example.com")

    async def credited():
        return await ledger(checked, paid)

    (credit,) = await eventually(credited, timeout=30)
    assert credit["kind"] == "payment" and credit["amount"] == 2500
    now = datetime.now(UTC)
    source = {"type": "payment_link", "id": link["id"]}
    settled, failed = f"pay_settled_{uuid.uuid4().hex[:8]}", f"pay_failed_{uuid.uuid4().hex[:8]}"
    refund_id = f"refund_{uuid.uuid4().hex[:8]}"
    succeeded = PaymentSucceededV1(
        payment_id=settled, amount=4000, currency="USD", method_type="sepa_debit", source=source, succeeded_at=now
    )
    already = PaymentSucceededV1(
        payment_id=paid, amount=2500, currency="USD", method_type="card", source=source, succeeded_at=now
    )
    failure = PaymentFailedV1(
        payment_id=failed,
        amount=900,
        currency="USD",
        method_type="sepa_debit",
        source=source,
        decline_code="insufficient_funds",
        failed_at=now,
    )
    refunded = PaymentRefundedV1(
        payment_id=paid,
        refund_id=refund_id,
        amount=300,
        currency="USD",
        amount_refunded=300,
        payment_status="partially_refunded",
        refunded_at=now,
    )
    events = [succeeded, succeeded, already, already, failure, failure, refunded, refunded]
    await publish_as(stack, "checkout", account["account_id"], events)

    async def all_recorded():
        entries = {p: await ledger(checked, p) for p in (paid, settled, failed)}
        done = len(entries[settled]) == 1 and len(entries[failed]) == 1 and len(entries[paid]) == 2
        return entries if done else None

    entries = await eventually(all_recorded, timeout=30)
    await asyncio.sleep(1)  # let any duplicate arrive: nothing more may be recorded
    assert {p: await ledger(checked, p) for p in (paid, settled, failed)} == entries
    (settlement,) = entries[settled]
    assert settlement["kind"] == "settlement" and settlement["amount"] == 4000 and settlement["source"] == source
    (failure_entry,) = entries[failed]
    assert failure_entry["kind"] == "failure" and failure_entry["amount"] == 0
    assert failure_entry["details"]["attempted_amount"] == 900
    assert failure_entry["details"]["decline_code"] == "insufficient_funds"
    assert sorted((e["kind"], e["amount"]) for e in entries[paid]) == [("payment", 2500), ("refund", -300)]


async def test_partial_refunds_never_exceed_the_payment(http, stack, checked, link, processor_url):
    payment_id = await pay(http, stack, link, "partial@example.com")
    intent = (await payment(checked, payment_id))["processor_payment_id"]

    first = await checked.post(f"/v1/payments/{payment_id}/refunds", {"amount": 1000})
    assert first.status == 201 and first.body["amount"] == 1000 and first.body["status"] == "succeeded"
    body = await payment(checked, payment_id)
    assert body["status"] == "partially_refunded" and body["amount_refunded"] == 1000
    assert body["amount_refundable"] == 1500

    over = await checked.post(f"/v1/payments/{payment_id}/refunds", {"amount": 1501})
    problem = assert_problem(over, 422, "amount", contains="1500")
    assert "amount" in problem["detail"]
    for bad in ({"amount": 0}, {"amount": -5}, {"amount": "100"}, {"amount": 10.5}, {"reason": "x"}):
        assert_problem(await checked.post(f"/v1/payments/{payment_id}/refunds", bad), 422)

    rest = await checked.post(f"/v1/payments/{payment_id}/refunds")  # no body: the remainder
    assert rest.status == 201 and rest.body["amount"] == 1500
    body = await payment(checked, payment_id)
    assert body["status"] == "refunded" and body["amount_refunded"] == 2500
    assert await processor_refunds(http, processor_url, intent) == [1000, 1500]

    listed = await checked.get(f"/v1/payments/{payment_id}/refunds")
    assert [r["id"] for r in listed.body["data"]] == [rest.body["id"], first.body["id"]]
    assert all(r["status"] == "succeeded" and r["payment_id"] == payment_id for r in listed.body["data"])
    page = await checked.get(f"/v1/payments/{payment_id}/refunds?limit=1")
    assert [r["id"] for r in page.body["data"]] == [rest.body["id"]] and page.body["has_more"] is True

    async def refund_entries():
        entries = [e for e in await ledger(checked, payment_id) if e["kind"] == "refund"]
        return entries if len(entries) == 2 else None

    entries = await eventually(refund_entries, timeout=30)
    assert sorted(e["amount"] for e in entries) == [-1500, -1000]
    kind_filter = await checked.get(f"/v1/ledger_entries?payment_id={payment_id}&kind=refund")
    assert len(kind_filter.body["data"]) == 2


async def test_a_retry_with_the_same_idempotency_key_returns_the_first_refund(
    http, stack, checked, link, processor_url
):
    payment_id = await pay(http, stack, link, "retry@example.com")
    intent = (await payment(checked, payment_id))["processor_payment_id"]
    key = {"Idempotency-Key": f"refund-{uuid.uuid4()}"}

    first = await checked.post(f"/v1/payments/{payment_id}/refunds", {"amount": 700}, headers=key)
    second = await checked.post(f"/v1/payments/{payment_id}/refunds", {"amount": 700}, headers=key)
    assert first.status == second.status == 201
    assert second.body == first.body and second.headers.get("Idempotent-Replayed") == "true"
    other_body = await checked.post(f"/v1/payments/{payment_id}/refunds", {"amount": 800}, headers=key)
    assert_problem(other_body, 422, "Idempotency-Key")

    assert await processor_refunds(http, processor_url, intent) == [700]
    body = await payment(checked, payment_id)
    assert body["amount_refunded"] == 700 and body["refunds"]["total_count"] == 1


async def interrupted_refund(stack, http, processor_url, account_id, payment_id, intent, amount, **row) -> str:
    """A refund request that died after the processor refunded and before the answer was
    recorded: the refund row is ``pending`` (written before the call, as checkout does)
    and the processor has the refund, made with the row's idempotency key."""
    refund_id = new_id("refund")
    now = datetime.now(UTC) - row.pop("age", timedelta(0))
    conn = await asyncpg.connect(stack.postgres.url("commerce_checkout", stack.config.database), timeout=10)
    try:
        await conn.execute(
            """INSERT INTO checkout.refunds
                 (id, account_id, payment_id, amount, currency, status, request_key, created_at, updated_at)
               VALUES ($1, $2, $3, $4, 'USD', 'pending', $5, $6, $6)""",
            refund_id,
            account_id,
            payment_id,
            amount,
            row.get("request_key"),
            now,
        )
    finally:
        await conn.close()
    async with http.post(
        f"{processor_url}/v1/refunds",
        data={
            "payment_intent": intent,
            "amount": str(amount),
            "metadata[account_id]": account_id,
            "metadata[payment_id]": payment_id,
            "metadata[refund_id]": refund_id,
        },
        headers={"Authorization": f"Bearer {TEST_SECRET_KEY}", "Idempotency-Key": f"commerce:{refund_id}"},
    ) as r:
        assert r.status == 200, await r.text()
    return refund_id


async def test_a_refund_interrupted_after_the_processor_call_is_completed_not_repeated(
    http, stack, checked, link, account, processor_url
):
    payment_id = await pay(http, stack, link, "interrupted@example.com")
    intent = (await payment(checked, payment_id))["processor_payment_id"]

    # retried with the same Idempotency-Key: the same refund is completed
    key = f"refund-{uuid.uuid4()}"
    first = await interrupted_refund(
        stack, http, processor_url, account["account_id"], payment_id, intent, 800, request_key=key
    )
    pending = await payment(checked, payment_id)
    assert pending["amount_refundable"] == 1700 and pending["refunds"]["amount_pending"] == 800
    retried = await checked.post(
        f"/v1/payments/{payment_id}/refunds", {"amount": 800}, headers={"Idempotency-Key": key}
    )
    assert retried.status == 201, retried.body
    assert retried.body["id"] == first and retried.body["status"] == "succeeded"
    assert await processor_refunds(http, processor_url, intent) == [800]

    # left behind without a key: the next refund request of the payment completes it first
    stale = await interrupted_refund(
        stack, http, processor_url, account["account_id"], payment_id, intent, 500, age=timedelta(minutes=10)
    )
    rest = await checked.post(f"/v1/payments/{payment_id}/refunds", {})
    assert rest.status == 201 and rest.body["amount"] == 2500 - 800 - 500, rest.body
    assert await processor_refunds(http, processor_url, intent) == [500, 800, 1200]
    body = await payment(checked, payment_id)
    assert body["status"] == "refunded" and body["amount_refunded"] == 2500
    statuses = {r["id"]: r["status"] for r in (await checked.get(f"/v1/payments/{payment_id}/refunds")).body["data"]}
    assert statuses == {first: "succeeded", stale: "succeeded", rest.body["id"]: "succeeded"}

    async def refund_entries():
        entries = [e["amount"] for e in await ledger(checked, payment_id) if e["kind"] == "refund"]
        return sorted(entries) if len(entries) == 3 else None

    assert await eventually(refund_entries, timeout=30) == [-1200, -800, -500]


async def test_concurrent_refunds_of_the_remainder_refund_it_once(http, stack, checked, link, processor_url):
    payment_id = await pay(http, stack, link, "race@example.com")
    intent = (await payment(checked, payment_id))["processor_payment_id"]
    assert (await checked.post(f"/v1/payments/{payment_id}/refunds", {"amount": 500})).status == 201

    answers = await asyncio.gather(
        checked.post(f"/v1/payments/{payment_id}/refunds", {"amount": 2000}),
        checked.post(f"/v1/payments/{payment_id}/refunds", {"amount": 2000}),
        checked.post(f"/v1/payments/{payment_id}/refunds", {}),
        checked.post(f"/v1/payments/{payment_id}/refunds", {}, headers={"Idempotency-Key": str(uuid.uuid4())}),
    )
    statuses = sorted(a.status for a in answers)
    assert statuses == [201, 409, 409, 409], [(a.status, a.body) for a in answers]
    for answer in answers:
        if answer.status == 409:
            assert_problem(answer, 409)

    body = await payment(checked, payment_id)
    assert body["status"] == "refunded" and body["amount_refunded"] == 2500
    assert sum(await processor_refunds(http, processor_url, intent)) == 2500


async def test_refunds_of_unknown_payments_are_404(checked):
    missing = "pay_" + "0" * 26
    assert_problem(await checked.post(f"/v1/payments/{missing}/refunds", {}), 404)
    assert_problem(await checked.get(f"/v1/payments/{missing}/refunds"), 404)
    assert_problem(await checked.post(f"/v1/payments/{missing}/associations", {"deal_id": "deal_x"}), 404)


async def test_refunds_need_the_payments_write_scope(http, stack, checked, link):
    payment_id = await pay(http, stack, link, "scope@example.com")
    reader = await checked.post("/v1/api_keys", {"scopes": ["payments:read"]})
    assert reader.status == 201, reader.body
    read_only = CheckedApi(http, stack.config.base_url, reader.body["key"])
    assert_problem(await read_only.post(f"/v1/payments/{payment_id}/refunds", {}), 403)
    assert (await read_only.get(f"/v1/payments/{payment_id}/refunds")).status == 200
    assert (await payment(checked, payment_id))["amount_refunded"] == 0


# -- another account -----------------------------------------------------------------------------
async def test_another_accounts_payment_is_404(http, stack, checked, link, new_account, processor_url):
    payment_id = await pay(http, stack, link, "mine@example.com")
    intruder = CheckedApi(http, stack.config.base_url, new_account("Intruder")["api_key"])
    for method, path, body in (
        ("GET", f"/v1/payments/{payment_id}", None),
        ("GET", f"/v1/payments/{payment_id}/refunds", None),
        ("POST", f"/v1/payments/{payment_id}/refunds", {}),
        ("POST", f"/v1/payments/{payment_id}/refunds", {"amount": 100}),
        ("POST", f"/v1/payments/{payment_id}/associations", {"contact_id": "contact_x"}),
    ):
        assert_problem(await intruder.request(method, path, json_body=body), 404)
    assert ids(await intruder.get("/v1/payments")) == []
    body = await payment(checked, payment_id)
    assert body["amount_refunded"] == 0 and body["status"] == "succeeded"
    assert await processor_refunds(http, processor_url, body["processor_payment_id"]) == []


# -- manual association ------------------------------------------------------------------------------
async def associate(api: CheckedApi, payment_id: str, body: dict) -> dict:
    """Associate, waiting for checkout's projection to learn a record crm_sync just made."""

    async def attempt():
        r = await api.post(f"/v1/payments/{payment_id}/associations", body)
        if r.status == 422:
            return None
        assert r.status == 200, r.body
        return r.body

    return await eventually(attempt, timeout=30, interval=0.2)


async def automatic_contact(api: CheckedApi, payment_id: str) -> str:
    async def probe():
        return (await payment(api, payment_id))["contact_id"]

    return await eventually(probe, timeout=30)


async def contact_payments(api: CheckedApi, contact_id: str) -> list[str]:
    r = await api.get(f"/v1/contacts/{contact_id}/associations")
    assert r.status == 200, r.body
    return r.body["payments"]


async def test_manual_association_with_a_contact_company_and_deal(http, stack, checked, link):
    run = uuid.uuid4().hex[:6]
    payment_id = await pay(http, stack, link, f"payer-{run}@example.com")
    payer = await automatic_contact(checked, payment_id)
    other_payment = await pay(http, stack, link, f"other-{run}@example.com")
    other = await automatic_contact(checked, other_payment)
    company = await checked.post("/v1/companies", {"name": f"Acme {run}"})
    assert company.status == 201, company.body
    deal = await checked.post("/v1/deals", {"name": f"Deal {run}"})
    assert deal.status == 201, deal.body

    moved = await associate(checked, payment_id, {"contact_id": other})
    assert moved["contact_id"] == other and moved["associations"]["contact"] == "manual"
    with_company = await associate(checked, payment_id, {"company_id": company.body["id"]})
    assert with_company["company_id"] == company.body["id"] and with_company["associations"]["company"] == "manual"
    with_deal = await associate(checked, payment_id, {"deal_id": deal.body["id"]})
    assert deal.body["id"] in with_deal["deal_ids"]
    assert with_deal["associations"]["manual_deal_ids"] == [deal.body["id"]]
    assert with_deal["contact_id"] == other  # one association does not undo another
    again = await associate(checked, payment_id, {"deal_id": deal.body["id"]})
    assert again["deal_ids"].count(deal.body["id"]) == 1
    assert ids(await checked.get(f"/v1/payments?contact_id={other}")) == [other_payment, payment_id]
    assert ids(await checked.get(f"/v1/payments?contact_id={payer}")) == []

    # crm_sync records it: the payment moves from the payer's record to the chosen one
    async def crm_moved():
        return payment_id in await contact_payments(checked, other) and payment_id not in await contact_payments(
            checked, payer
        )

    await eventually(crm_moved, timeout=30)

    # bad bodies and unknown records name the field
    url = f"/v1/payments/{payment_id}/associations"
    assert_problem(await checked.post(url, {"contact_id": "contact_" + "0" * 26}), 422, "contact_id")
    assert_problem(await checked.post(url, {"company_id": "company_" + "0" * 26}), 422, "company_id")
    assert_problem(await checked.post(url, {"deal_id": "deal_" + "0" * 26}), 422, "deal_id")
    assert_problem(await checked.post(url, {"contact_id": other, "deal_id": deal.body["id"]}), 422)
    assert_problem(await checked.post(url, {}), 422)
    assert_problem(await checked.post(url, {"quote_id": "q"}), 422, "quote_id")
    assert (await payment(checked, payment_id))["contact_id"] == other


async def test_a_crm_key_may_associate_and_a_read_key_may_not(http, stack, checked, link):
    run = uuid.uuid4().hex[:6]
    payment_id = await pay(http, stack, link, f"scoped-{run}@example.com")
    deal = await checked.post("/v1/deals", {"name": f"Scoped deal {run}"})
    assert deal.status == 201, deal.body
    keys = {}
    for scopes in (["crm:write"], ["payments:read", "crm:read"]):
        created = await checked.post("/v1/api_keys", {"scopes": scopes})
        assert created.status == 201, created.body
        keys[scopes[0]] = CheckedApi(http, stack.config.base_url, created.body["key"])
    assert_problem(
        await keys["payments:read"].post(f"/v1/payments/{payment_id}/associations", {"deal_id": deal.body["id"]}),
        403,
    )
    done = await associate(keys["crm:write"], payment_id, {"deal_id": deal.body["id"]})
    assert done["deal_ids"] == [deal.body["id"]]


async def test_a_later_automatic_contact_does_not_overwrite_the_manual_one(http, stack, checked, link, account):
    run = uuid.uuid4().hex[:6]
    payment_id = await pay(http, stack, link, f"auto-{run}@example.com")
    payer = await automatic_contact(checked, payment_id)
    chosen_payment = await pay(http, stack, link, f"chosen-{run}@example.com")
    chosen = await automatic_contact(checked, chosen_payment)
    await associate(checked, payment_id, {"contact_id": chosen})

    # crm_sync announces (again, later) that the payer's contact, of a company, paid it:
    # checkout keeps the manual contact and takes no company from the automatic one
    sent = await publish_as(
        stack,
        "crm_sync",
        account["account_id"],
        [
            ContactUpsertedV1(
                contact_id=payer,
                email=f"auto-{run}@example.com",
                company_id=f"company_auto_{run}",
                payment_id=payment_id,
            )
        ],
    )
    await eventually(lambda: delivered(stack, "crm_sync", sent), timeout=30)
    body = await payment(checked, payment_id)
    assert body["contact_id"] == chosen and body["associations"]["contact"] == "manual"
    # nor does the automatic contact's company come along with it
    assert body["company_id"] is None and body["associations"]["company"] is None
