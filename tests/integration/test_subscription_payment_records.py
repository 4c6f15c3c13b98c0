"""Billing's subscription payments in checkout and in the CRM, against real PostgreSQL.

The handlers run through ``shared.inbox.consume`` with envelopes as the relay delivers
them; answers are read through the services' own HTTP apps:
- checkout records each payment (or failed attempt) once by its id, whatever the order
  and however often the events come; a failure never takes a success back; the
  subscription filter and the payment object show it; it can be refunded (its intent
  is kept); checkout's own ``payment.*`` events (no ``subscription``) change nothing;
- crm_sync associates the payment with the contact (by id, else by e-mail — created when
  missing, never erasing a merchant's values), the company and the deals, once; keeps
  the newest snapshot of each subscription, from which a contact's (company's, deal's)
  associations list its subscriptions.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.checkout.app import create_app as checkout_app
from services.checkout.payments import repository as payments_repo
from services.checkout.payments.events import registry as checkout_registry
from services.checkout.settings import CheckoutSettings
from services.crm_sync.app import create_app as crm_app
from services.crm_sync.contacts import service as contacts_service
from services.crm_sync.contacts.payment_events import registry as crm_payment_events_registry
from services.crm_sync.contacts.schemas import ContactCreate
from services.crm_sync.crm import service as crm_service
from services.crm_sync.crm.schemas import CompanyCreate, DealCreate
from services.crm_sync.crm.subscription_events import registry as crm_registry
from services.crm_sync.settings import CrmSettings
from shared.accounts import apply_account_snapshot
from shared.db import create_pool, tenant_tx
from shared.events import EventEnvelope
from shared.events.models import (
    AccountSnapshot,
    ApiKeySnapshot,
    PaymentAssociatedV1,
    PaymentFailedV1,
    PaymentSucceededV1,
    SubscriptionCharge,
    SubscriptionUpdatedV1,
)
from shared.inbox import HandlerContext, consume
from shared.processor import RefundOutcome
from shared.web.auth import hash_api_key
from shared.web.keys import EXTRAS

#: Each account's key is this plus the account id (key hashes are unique).
API_KEY = f"ck_test_{uuid.uuid4().hex}"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


class FakeRedis:
    """Collects the inbox's acknowledgements (``rpush``) instead of a broker."""

    def __init__(self) -> None:
        self.acks: list[str] = []

    async def rpush(self, key: str, value: str) -> None:
        self.acks.append(value)


async def _context(dsn, service: str, settings) -> HandlerContext:
    app = await create_pool(dsn(service), application_name="sub-records-test", min_size=1, max_size=2)
    owner = await create_pool(dsn(service, owner=True), application_name="sub-records-test", min_size=0, max_size=1)
    return HandlerContext(service, service, settings, app, owner, FakeRedis(), {})


def _settings(cls, dsn, service: str):
    return cls(database_url=dsn(service), database_owner_url=dsn(service, owner=True), db_pool_min=1, db_pool_max=2)


@pytest.fixture(scope="module")
async def checkout(dsn):
    ctx = await _context(dsn, "checkout", _settings(CheckoutSettings, dsn, "checkout"))
    yield ctx
    await ctx.app_pool.close()
    await ctx.owner_pool.close()


@pytest.fixture(scope="module")
async def crm(dsn):
    ctx = await _context(dsn, "crm_sync", _settings(CrmSettings, dsn, "crm_sync"))
    yield ctx
    await ctx.app_pool.close()
    await ctx.owner_pool.close()


@pytest.fixture(scope="module")
async def checkout_http(dsn):
    async with TestClient(TestServer(checkout_app(_settings(CheckoutSettings, dsn, "checkout")))) as client:
        yield client


@pytest.fixture(scope="module")
async def crm_http(dsn):
    async with TestClient(TestServer(crm_app(_settings(CrmSettings, dsn, "crm_sync")))) as client:
        yield client


async def new_account(*contexts: HandlerContext) -> str:
    """One account, known to every service given, with the test's API key."""
    account_id = f"acct_subpay_{uuid.uuid4().hex[:10]}"
    key = ApiKeySnapshot(id=f"key_{uuid.uuid4().hex[:10]}", prefix=API_KEY[:12], key_hash="", scopes=["*"])
    snapshot = AccountSnapshot(
        id=account_id,
        version=1,
        name="Subscriptions",
        test_mode=True,
        settings={},
        clock_offset_us=0,
        api_keys=[key.model_copy(update={"key_hash": hash_api_key(API_KEY + account_id)})],
    )
    for ctx in contexts:
        async with tenant_tx(ctx.app_pool, account_id) as conn:
            assert await apply_account_snapshot(conn, ctx.schema, snapshot)
    return account_id


def auth(account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}{account_id}"}


def charge(subscription_id: str, **overrides: Any) -> SubscriptionCharge:
    values: dict[str, Any] = {
        "subscription_id": subscription_id,
        "charge_id": f"chg_{uuid.uuid4().hex[:10]}",
        "attempt_id": f"att_{uuid.uuid4().hex[:10]}",
        "period_index": 1,
        "due_date": date(2025, 3, 1),
        "trigger": "due",
        "interval": "month",
        "lines": [{"name": "Coffee box", "quantity": 1, "unit_amount": 2500, "amount": 2500}],
        "subtotal": 2500,
        "contact_id": None,
        "deal_ids": [],
        "processor_payment_intent_id": f"pi_{uuid.uuid4().hex[:14]}",
        "processor_customer_id": "cus_subpay",
        "status": "active",
        "payments_made": 2,
        "test_mode": True,
    }
    values.update(overrides)
    return SubscriptionCharge(**values)


def succeeded(payment_id: str, sub: SubscriptionCharge | None, *, email: str | None = "buyer@example.com", at=T0):
    return PaymentSucceededV1(
        payment_id=payment_id,
        amount=2500,
        currency="EUR",
        method_type="card",
        source={"type": "subscription", "id": sub.subscription_id} if sub else {"type": "payment_link", "id": "pl"},
        email=email,
        succeeded_at=at,
        subscription=sub,
    )


def failed(payment_id: str, sub: SubscriptionCharge | None, *, email: str | None = "buyer@example.com", at=T0):
    return PaymentFailedV1(
        payment_id=payment_id,
        amount=2500,
        currency="EUR",
        method_type="card",
        source={"type": "subscription", "id": sub.subscription_id} if sub else {"type": "payment_link", "id": "pl"},
        email=email,
        decline_code="card_declined",
        reason="Your card was declined.",
        failed_at=at,
        subscription=sub.model_copy(update={"status": "past_due"}) if sub else None,
    )


def envelope(account_id: str, event, *, producer: str = "billing") -> dict:
    return EventEnvelope(
        id=f"evt_{uuid.uuid4().hex}",
        type=type(event).event_type,
        version=1,
        account_id=account_id,
        producer=producer,
        occurred_at=datetime.now(UTC),
        data=event.model_dump(mode="json"),
    ).model_dump(mode="json")


def pid(name: str) -> str:
    """A payment id of its own (ids are unique across accounts, as billing's are)."""
    return f"pay_{name}_{uuid.uuid4().hex[:10]}"


async def deliver(ctx: HandlerContext, registry, env: dict) -> None:
    actor = f"{ctx.service}.on_{env['type'].replace('.', '_')}"
    await consume(ctx, registry.handlers[actor], env)


async def payment_row(ctx: HandlerContext, account_id: str, payment_id: str):
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        return await payments_repo.get_payment(conn, account_id, payment_id)


# -- checkout -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("order", "status"),
    [
        (["succeeded"], "succeeded"),
        (["failed"], "failed"),
        (["succeeded", "failed"], "succeeded"),  # a failure never takes a success back
        (["failed", "succeeded"], "succeeded"),  # the success is heard late: it counts
        (["succeeded", "succeeded", "failed", "succeeded"], "succeeded"),
        (["failed", "failed"], "failed"),
    ],
)
async def test_checkout_records_a_subscription_payment_once_in_any_order(checkout, order, status):
    account_id = await new_account(checkout)
    payment_id = f"pay_{uuid.uuid4().hex[:12]}"
    sub = charge("sub_order", contact_id="contact_x", company_id="company_x", deal_ids=["deal_a", "deal_b", "deal_a"])
    for step in order:
        event = succeeded(payment_id, sub) if step == "succeeded" else failed(payment_id, sub)
        env = envelope(account_id, event)
        await deliver(checkout, checkout_registry, env)
        await deliver(checkout, checkout_registry, env)  # the same delivery again: absorbed
    row = await payment_row(checkout, account_id, payment_id)
    assert row["status"] == status
    assert (row["source_type"], row["source_id"], row["session_id"]) == ("subscription", "sub_order", None)
    assert (row["amount"], row["currency"], row["method_type"], row["email"]) == (
        2500,
        "EUR",
        "card",
        "buyer@example.com",
    )
    assert (row["contact_id"], row["company_id"], list(row["deal_ids"])) == (
        "contact_x",
        "company_x",
        ["deal_a", "deal_b"],
    )
    assert (row["contact_source"], row["company_source"]) == ("automatic", "automatic")
    assert row["processor_payment_intent_id"] == sub.processor_payment_intent_id
    assert row["processor_customer_id"] == "cus_subpay"
    assert row["created_at"] == T0 and row["test_mode"] is True
    assert (row["fee"], row["net"], row["amount_refunded"]) == (None, None, 0)
    async with tenant_tx(checkout.app_pool, account_id) as conn:
        count = await conn.fetchval("SELECT count(*) FROM checkout.payments WHERE account_id = $1", account_id)
    assert count == 1


async def test_checkout_ignores_its_own_payment_events(checkout):
    account_id = await new_account(checkout)
    # A bank debit checkout recorded and then settled (its own payment.succeeded).
    async with tenant_tx(checkout.app_pool, account_id) as conn:
        await payments_repo.insert_payment(
            conn,
            id="pay_own_debit",
            account_id=account_id,
            source_type="payment_link",
            source_id="plink_own",
            status="succeeded",
            amount=2500,
            currency="EUR",
            method_type="sepa_debit",
            email="debit@example.com",
            contact={"email": "debit@example.com"},
            processor_payment_intent_id=f"pi_own_{uuid.uuid4().hex[:10]}",
            test_mode=True,
            created_at=T0,
            updated_at=T0,
        )
    before = await payment_row(checkout, account_id, "pay_own_debit")
    for event in (succeeded("pay_own_debit", None), failed("pay_own_debit", None), succeeded("pay_own_other", None)):
        env = envelope(account_id, event, producer="checkout")
        await deliver(checkout, checkout_registry, env)
    assert await payment_row(checkout, account_id, "pay_own_debit") == before
    assert await payment_row(checkout, account_id, "pay_own_other") is None
    async with tenant_tx(checkout.app_pool, account_id) as conn:  # handled, not failed
        assert await conn.fetchval("SELECT count(*) FROM checkout.failed_jobs WHERE account_id = $1", account_id) == 0


@pytest.mark.parametrize("success_first", [False, True])
async def test_a_retry_on_the_failed_attempts_intent_gives_the_intent_to_the_success(checkout, success_first):
    account_id = await new_account(checkout)
    sub = charge("sub_intent")
    first_try, second_try = pid("first_try"), pid("second_try")
    events = [failed(first_try, sub), succeeded(second_try, sub)]
    for event in reversed(events) if success_first else events:
        await deliver(checkout, checkout_registry, envelope(account_id, event))
    first = await payment_row(checkout, account_id, first_try)
    second = await payment_row(checkout, account_id, second_try)
    assert (first["status"], first["processor_payment_intent_id"]) == ("failed", None)
    assert (second["status"], second["processor_payment_intent_id"]) == ("succeeded", sub.processor_payment_intent_id)


async def test_payments_api_lists_a_subscriptions_payments_and_refunds_them(checkout, checkout_http):
    account_id = await new_account(checkout)
    sub = charge("sub_api", contact_id="contact_api", deal_ids=["deal_api"])
    other = charge("sub_other")
    events = [
        failed("pay_sub_1", sub, at=T0),
        succeeded("pay_sub_2", sub.model_copy(update={"trigger": "retry"}), at=T0 + timedelta(days=3)),
        succeeded("pay_other", other, email=None),  # a subscription made by the API, without an e-mail
    ]
    for event in events:
        await deliver(checkout, checkout_registry, envelope(account_id, event))

    response = await checkout_http.get("/v1/payments", params={"subscription_id": "sub_api"}, headers=auth(account_id))
    assert response.status == 200, await response.text()
    page = await response.json()
    assert [(p["id"], p["status"]) for p in page["data"]] == [("pay_sub_2", "succeeded"), ("pay_sub_1", "failed")]

    response = await checkout_http.get("/v1/payments/pay_sub_2", headers=auth(account_id))
    payment = await response.json()
    assert payment["source"] == {"type": "subscription", "id": "sub_api"}
    assert payment["contact_id"] == "contact_api" and payment["deal_ids"] == ["deal_api"]
    assert payment["company_id"] is None and payment["associations"]["contact"] == "automatic"
    assert (payment["amount"], payment["currency"], payment["fee"], payment["net"]) == (2500, "EUR", None, None)
    assert payment["processor_payment_id"] == sub.processor_payment_intent_id
    assert payment["amount_refundable"] == 2500
    response = await checkout_http.get("/v1/payments/pay_other", headers=auth(account_id))
    assert (await response.json())["email"] is None
    response = await checkout_http.get("/v1/payments", params={"subscription_id": "sub_none"}, headers=auth(account_id))
    assert (await response.json())["data"] == []

    # Refunds reach the processor with the intent billing charged.
    calls: list[dict] = []

    class Processor:
        async def create_refund(self, *, payment_intent_id, amount, metadata, idempotency_key):
            calls.append({"payment_intent_id": payment_intent_id, "amount": amount})
            return RefundOutcome(id=f"re_{uuid.uuid4().hex[:10]}", status="succeeded", amount=amount, currency="EUR")

    class Processors:
        def for_account(self, account):
            return Processor()

    real = checkout_http.app[EXTRAS]["processors"]
    checkout_http.app[EXTRAS]["processors"] = Processors()
    try:
        response = await checkout_http.post(
            "/v1/payments/pay_sub_2/refunds", json={"amount": 500}, headers=auth(account_id)
        )
        assert response.status == 201, await response.text()
        assert (await response.json())["status"] == "succeeded"
        response = await checkout_http.post("/v1/payments/pay_sub_1/refunds", json={}, headers=auth(account_id))
        assert response.status == 409  # a failed attempt has nothing to refund
    finally:
        checkout_http.app[EXTRAS]["processors"] = real
    assert calls == [{"payment_intent_id": sub.processor_payment_intent_id, "amount": 500}]
    response = await checkout_http.get("/v1/payments/pay_sub_2", headers=auth(account_id))
    payment = await response.json()
    assert (payment["status"], payment["amount_refunded"], payment["amount_refundable"]) == (
        "partially_refunded",
        500,
        2000,
    )
    async with tenant_tx(checkout.app_pool, account_id) as conn:
        refunded = await conn.fetchval(
            "SELECT count(*) FROM checkout.outbox WHERE account_id = $1 AND type = 'payment.refunded'", account_id
        )
    assert refunded == 1
    # A late failure of the refunded payment changes nothing.
    await deliver(checkout, checkout_registry, envelope(account_id, failed("pay_sub_2", sub)))
    assert (await payment_row(checkout, account_id, "pay_sub_2"))["status"] == "partially_refunded"


# -- crm_sync ---------------------------------------------------------------------------------------
async def crm_records(crm: HandlerContext, account_id: str) -> dict[str, str]:
    async with tenant_tx(crm.app_pool, account_id) as conn:
        now = datetime.now(UTC)
        ada = await contacts_service.create_contact(
            conn, account_id, ContactCreate(email="Ada@Example.com", firstname="Ada", phone="+44 20 1234"), now
        )
        company = await crm_service.create_company(conn, account_id, CompanyCreate(name="Engines Ltd"), now)
        deal = await crm_service.create_deal(conn, account_id, DealCreate(name="Supply"), now)
    return {"ada": ada["id"], "company": company["id"], "deal": deal["id"]}


async def payment_associations(crm: HandlerContext, account_id: str, payment_id: str) -> list[tuple[str, str, str]]:
    async with tenant_tx(crm.app_pool, account_id) as conn:
        rows = await conn.fetch(
            """SELECT object_type, object_id, source FROM crm_sync.associations
               WHERE account_id = $1 AND related_type = 'payment' AND related_id = $2
               ORDER BY object_type, object_id""",
            account_id,
            payment_id,
        )
    return [tuple(r) for r in rows]


async def test_crm_associates_a_subscription_payment_once(crm):
    account_id = await new_account(crm)
    ids = await crm_records(crm, account_id)
    sub = charge("sub_crm", contact_id=ids["ada"], company_id=ids["company"], deal_ids=[ids["deal"], "deal_gone"])
    first = envelope(account_id, succeeded("pay_crm_1", sub))
    for env in (
        first,
        first,
        envelope(account_id, succeeded("pay_crm_1", sub)),
        envelope(account_id, failed("pay_crm_1", sub)),
    ):
        await deliver(crm, crm_registry, env)
    assert await payment_associations(crm, account_id, "pay_crm_1") == [
        ("company", ids["company"], "automatic"),
        ("contact", ids["ada"], "automatic"),
        ("deal", ids["deal"], "automatic"),
    ]
    # A failed attempt is associated too.
    await deliver(crm, crm_registry, envelope(account_id, failed("pay_crm_2", sub)))
    assert [a[0] for a in await payment_associations(crm, account_id, "pay_crm_2")] == ["company", "contact", "deal"]


async def test_crm_finds_or_creates_the_contact_by_email_without_erasing_it(crm):
    account_id = await new_account(crm)
    ids = await crm_records(crm, account_id)
    sub = charge("sub_mail", contact_id=None)
    await deliver(crm, crm_registry, envelope(account_id, succeeded("pay_mail_1", sub, email="ADA@example.COM")))
    await deliver(crm, crm_registry, envelope(account_id, succeeded("pay_mail_2", sub, email="new.buyer@example.com")))
    # The contact id billing gave does not exist here (deleted): the e-mail decides.
    gone = charge("sub_mail", contact_id="contact_deleted")
    await deliver(crm, crm_registry, envelope(account_id, succeeded("pay_mail_3", gone, email="ada@example.com")))
    async with tenant_tx(crm.app_pool, account_id) as conn:
        contacts = await conn.fetch(
            "SELECT id, email, firstname, phone FROM crm_sync.contacts WHERE account_id = $1 ORDER BY id", account_id
        )
        announced = await conn.fetchval(
            """SELECT count(*) FROM crm_sync.outbox WHERE account_id = $1 AND type = 'crm_record.updated'
               AND envelope->'data'->>'record_id' = $2""",
            account_id,
            next(c["id"] for c in contacts if c["email"] == "new.buyer@example.com"),
        )
    ada = next(c for c in contacts if c["id"] == ids["ada"])
    assert (ada["email"], ada["firstname"], ada["phone"]) == ("Ada@Example.com", "Ada", "+44 20 1234")
    assert len(contacts) == 2
    new = next(c for c in contacts if c["email"] == "new.buyer@example.com")
    assert announced == 1  # checkout hears of the new contact
    assert await payment_associations(crm, account_id, "pay_mail_1") == [("contact", ids["ada"], "automatic")]
    assert await payment_associations(crm, account_id, "pay_mail_2") == [("contact", new["id"], "automatic")]
    assert await payment_associations(crm, account_id, "pay_mail_3") == [("contact", ids["ada"], "automatic")]


async def test_crm_keeps_a_merchants_contact_and_ignores_checkouts_events(crm):
    account_id = await new_account(crm)
    ids = await crm_records(crm, account_id)
    async with tenant_tx(crm.app_pool, account_id) as conn:
        other = await contacts_service.create_contact(
            conn, account_id, ContactCreate(email="grace@example.com"), datetime.now(UTC)
        )
    manual = PaymentAssociatedV1(
        payment_id="pay_manual", kind="contact", record_id=other["id"], associated_at=datetime.now(UTC)
    )
    await deliver(crm, crm_payment_events_registry, envelope(account_id, manual, producer="checkout"))
    await deliver(
        crm, crm_registry, envelope(account_id, succeeded("pay_manual", charge("sub_m", contact_id=ids["ada"])))
    )
    assert await payment_associations(crm, account_id, "pay_manual") == [("contact", other["id"], "manual")]
    # checkout's own settled bank debit: its purchase associated it already.
    await deliver(
        crm,
        crm_registry,
        envelope(account_id, succeeded("pay_debit", None, email="x@example.com"), producer="checkout"),
    )
    assert await payment_associations(crm, account_id, "pay_debit") == []


async def test_contact_associations_list_subscriptions_from_the_newest_snapshot(crm, crm_http):
    account_id = await new_account(crm)
    ids = await crm_records(crm, account_id)
    async with tenant_tx(crm.app_pool, account_id) as conn:
        grace = await contacts_service.create_contact(
            conn, account_id, ContactCreate(email="grace@example.com"), datetime.now(UTC)
        )

    def snapshot(sub_id: str, version: int, **values: Any) -> SubscriptionUpdatedV1:
        return SubscriptionUpdatedV1(
            subscription_id=sub_id,
            version=version,
            status=values.pop("status", "active"),
            currency="EUR",
            amount=2500,
            interval="month",
            payments_made=1,
            start_date=date(2025, 3, 1),
            source={"type": "payment_link", "id": "plink_x"},
            **values,
        )

    for event in (
        snapshot("sub_b", 2, contact_id=ids["ada"], company_id=ids["company"], deal_ids=[ids["deal"]]),
        snapshot("sub_b", 1, contact_id=grace["id"]),  # older: ignored
        snapshot("sub_b", 2, contact_id=grace["id"]),  # same version: ignored
        snapshot("sub_a", 1, contact_id=grace["id"]),
        snapshot("sub_a", 3, contact_id=ids["ada"], status="past_due"),  # moved to Ada
        snapshot("sub_c", 1, email="GRACE@example.com"),  # billing knows only the e-mail
    ):
        await deliver(crm, crm_registry, envelope(account_id, event))
    await deliver(crm, crm_registry, envelope(account_id, succeeded("pay_b", charge("sub_b", contact_id=ids["ada"]))))

    async def associations(kind: str, record_id: str) -> dict:
        response = await crm_http.get(f"/v1/{kind}/{record_id}/associations", headers=auth(account_id))
        assert response.status == 200, await response.text()
        return await response.json()

    ada = await associations("contacts", ids["ada"])
    assert ada["subscriptions"] == ["sub_a", "sub_b"]
    assert ada["payments"] == ["pay_b"]
    assert (await associations("contacts", grace["id"]))["subscriptions"] == ["sub_c"]
    assert (await associations("companies", ids["company"]))["subscriptions"] == ["sub_b"]
    assert (await associations("deals", ids["deal"]))["subscriptions"] == ["sub_b"]
    async with tenant_tx(crm.app_pool, account_id) as conn:
        rows = await conn.fetch(
            "SELECT id, status, version FROM crm_sync.subscriptions WHERE account_id = $1 ORDER BY id", account_id
        )
    assert [tuple(r) for r in rows] == [("sub_a", "past_due", 3), ("sub_b", "active", 2), ("sub_c", "active", 1)]
