"""The subscription admin API (API.md "Subscriptions and invoices"; PRODUCT §6): create
from scratch, change, cancel, pause, resume, the update link, analytics and the dunning
dry run — on the test clock, against the running stack."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from tests.support.client import Api
from tests.support.problems import assert_problem
from tests.support.subscriptions import (
    advance,
    at,
    configure_processor,
    processor_intents,
    recurring_item,
    subscription_link,
    subscriptions_of,
    update_payment_method,
    wait_subscription,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def processor_url(stack) -> str:
    return f"http://127.0.0.1:{stack.config.ports.test_processor}"


def new_sub(**overrides: Any) -> dict:
    body = {
        "email": "ada@example.com",
        "firstname": "Ada",
        "currency": "USD",
        "interval": "monthly",
        "line_items": [{"name": "Support plan", "quantity": 1, "unit_amount": 1000}],
    }
    return {**body, **overrides}


async def create(api: Api, **overrides: Any) -> dict:
    made = await api.post("/v1/subscriptions", new_sub(**overrides))
    assert made.status == 201, made.body
    return made.body


async def charges_of(stack, sub_id: str) -> list[dict]:
    """billing.charges of a subscription, read as the schema owner (white box)."""
    conn = await asyncpg.connect(stack.postgres.url("commerce_billing", stack.config.database), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT period_index, status, amount, attempts FROM billing.charges WHERE subscription_id = $1 "
            "ORDER BY period_index",
            sub_id,
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


async def renewal_intents(http, stack, account_id: str) -> list[dict]:
    intents = await processor_intents(http, processor_url(stack), account_id)
    return [i for i in intents if i["metadata"].get("commerce_charge_id")]


async def bought_monthly(api: Api, buyer, email: str, amount: int = 1000) -> dict:
    link = await subscription_link(api, recurring_item("monthly", amount))
    done = await buyer.pay(link["url"], email)
    assert done.status == 200, done.body
    (sub,) = await eventually(lambda: subscriptions_of(api, email))
    return sub


# -- create ----------------------------------------------------------------------------------------
async def test_create_validation_idempotency_and_isolation(api, new_account, http, stack):
    await advance(api, at("2027-02-01"))
    refusals = [
        ({"email": None}, "email"),  # neither contact_id nor email
        ({"email": None, "contact_id": "contact_x"}, "email"),  # charged: the e-mail is required
        ({"currency": "EUR"}, "currency"),  # not one of the account's currencies
        ({"currency": "HUF"}, "currency"),  # the processor's minor unit differs
        ({"start_date": "2027-01-31"}, "start_date"),  # before today
        ({"start_date": "2037-02-01"}, "start_date"),  # more than 10 years ahead
        ({"start_date": 20270301}, "start_date"),  # a date is text
        ({"start_date": "2027-03-01", "end_date": "2027-02-15"}, "end_date"),
        ({"payments": 3, "end_date": "2027-12-31"}, "end_date"),
        ({"interval": "daily"}, "interval"),
        ({"collection": {"method": "none", "payment_terms_days": 30}}, "collection.payment_terms_days"),
        ({"collection": {"method": "send_invoice", "payment_terms_days": 10}}, "collection.payment_terms_days"),
        ({"line_items": []}, "line_items"),
        ({"line_items": [{"name": "x", "unit_amount": 10}]}, "line_items"),  # below the minimum charge
        ({"line_items": [{"name": "x", "unit_amount": 1000, "unit_discount": {"amount_off": 1000}}]},
         "line_items[0].unit_discount.amount_off"),
        ({"line_items": [{"name": "x", "unit_amount": 1000, "tax_rate_id": "txr_1"}]}, "line_items[0].tax_percent"),
        ({"line_items": [{"name": "x", "unit_amount": 1000, "tax_percent": "101"}]}, "line_items[0].tax_percent"),
        ({"line_items": [{"name": "x", "unit_amount": 10.5}]}, "line_items[0].unit_amount"),
        ({"status": "active"}, "status"),  # not settable
        ({"amount": 1}, "amount"),
    ]  # fmt: skip
    for overrides, field in refusals:
        body = {k: v for k, v in new_sub(**overrides).items() if v is not None}
        assert_problem(await api.post("/v1/subscriptions", body), 422, field)

    headers = {"Idempotency-Key": f"sub-{uuid.uuid4()}"}
    first = await api.post("/v1/subscriptions", new_sub(), headers=headers)
    again = await api.post("/v1/subscriptions", new_sub(), headers=headers)
    assert first.status == again.status == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert first.body["id"] == again.body["id"]
    assert len(await subscriptions_of(api)) == 1

    sub = first.body
    other = Api(http, stack.config.base_url, new_account("Other shop")["api_key"])
    base = f"/v1/subscriptions/{sub['id']}"
    assert_problem(await other.get(base), 404)
    assert_problem(await other.patch(base, {"metadata": {"a": "b"}}), 404)
    for action in ("cancel", "pause", "resume", "payment_method_link"):
        assert_problem(await other.post(f"{base}/{action}", {}), 404)
    assert (await other.get("/v1/subscriptions")).body["data"] == []
    assert (await api.get(base)).body["status"] == "active"  # untouched


async def test_collection_methods_scheduled_start_and_waiting_for_a_payment_method(api, account, http, stack):
    await advance(api, at("2027-03-01"))
    invoiced = await create(
        api,
        collection={"method": "send_invoice"},
        line_items=[
            {"name": "Support", "quantity": 2, "unit_amount": 1000, "tax_percent": "8.875", "tax_name": "NY"},
            {"name": "Setup", "unit_amount": 1999, "unit_discount": {"percent_off": "10"}},
        ],
        billing_address={"line1": "1 Main St", "city": "Albany", "country": "US"},
        metadata={"ref": "A-1"},
    )
    assert invoiced["status"] == "active" and invoiced["start_date"] == invoiced["next_payment_date"] == "2027-03-01"
    assert invoiced["collection"] == {
        "method": "send_invoice",
        "payment_terms_days": 30,
        "collect_payment_method_on_first_invoice": False,
    }
    # 2 × 10.00 taxed 8.875 % (1.775 → 1.78 half-up); 19.99 − 10 % (2.00 per unit, rounded first)
    assert [(li["amount"], li["tax"], li["unit_discount"]) for li in invoiced["line_items"]] == [
        (2000, 178, 0),
        (1799, 0, 200),
    ]
    assert (invoiced["subtotal"], invoiced["tax"], invoiced["amount"]) == (3799, 178, 3977)
    assert invoiced["source"] == {"type": "api", "id": invoiced["id"]}
    assert invoiced["metadata"] == {"ref": "A-1"} and invoiced["billing_address"]["city"] == "Albany"

    tracked = await create(api, email=None, contact_id="contact_123", collection={"method": "none"})
    assert (tracked["contact_id"], tracked["email"], tracked["status"]) == ("contact_123", None, "active")

    later = await create(api, email="later@example.com", start_date="2027-03-10", deal_ids=["deal_1"],
                         from_deal_id="deal_2")  # fmt: skip
    assert (later["status"], later["next_payment_date"], later["payment_method"]) == ("scheduled", "2027-03-10", None)
    assert later["source"] == {"type": "deal", "id": "deal_2"} and later["deal_ids"] == ["deal_1", "deal_2"]

    fixed = await create(api, email="fixed@example.com", payments=3)  # due today, no payment method yet
    assert (fixed["status"], fixed["payments_total"], fixed["next_payment_date"]) == ("active", 3, "2027-03-01")

    await advance(api, at("2027-04-02"))
    # charge_automatically without a method: nothing is charged (or even scheduled) until the
    # buyer saves one through the update link; the dates that came are not lost (below)
    assert await charges_of(stack, later["id"]) == []
    assert await charges_of(stack, fixed["id"]) == []
    for sub in (invoiced, tracked):  # send_invoice and none are never charged by the scheduler
        assert await charges_of(stack, sub["id"]) == []
    got = (await api.get(f"/v1/subscriptions/{fixed['id']}")).body
    assert (got["status"], got["payments_made"], got["next_payment_date"], got["dunning"]) == (
        "active", 0, "2027-03-01", None)  # fmt: skip
    assert (await api.get(f"/v1/subscriptions/{later['id']}")).body["status"] == "scheduled"
    assert await renewal_intents(http, stack, account["account_id"]) == []

    # a waiting subscription may switch to invoices: its waiting charge goes away
    switched = await api.patch(f"/v1/subscriptions/{fixed['id']}", {"collection": {"method": "send_invoice"}})
    assert switched.status == 200, switched.body
    assert switched.body["collection"]["method"] == "send_invoice" and await charges_of(stack, fixed["id"]) == []
    # paused and resumed: the next date on the anchor (the 10th) after today, nothing owed from before
    assert (await api.post(f"/v1/subscriptions/{later['id']}/pause")).status == 200
    assert await charges_of(stack, later["id"]) == []
    resumed = (await api.post(f"/v1/subscriptions/{later['id']}/resume")).body
    assert (resumed["status"], resumed["next_payment_date"], resumed["payments_made"]) == ("scheduled", "2027-04-10", 0)


async def test_a_waiting_subscription_is_charged_once_the_buyer_saves_a_method(api, buyer, account, http, stack):
    """The buyer's update page saves a method; the date that came while none was saved is
    then charged by the scheduler's next pass."""
    await advance(api, at("2027-03-01"))
    sub = await create(api, email="waits@example.com")
    await advance(api, at("2027-03-02"))
    assert await charges_of(stack, sub["id"]) == []
    await update_payment_method(api, buyer, sub["id"], "4242424242424242")
    charged = await wait_subscription(api, sub["id"], timeout=30, payments_made=1)
    assert (charged["status"], charged["next_payment_date"]) == ("active", "2027-04-01")
    (intent,) = await renewal_intents(http, stack, account["account_id"])
    assert (intent["amount"], intent["status"]) == (1000, "succeeded")


# -- change ----------------------------------------------------------------------------------------
async def test_patch_line_items_applies_to_the_next_charge(api, buyer, account, http, stack):
    await advance(api, at("2027-01-10", 9))
    sub = await bought_monthly(api, buyer, "patch@example.com")
    assert (sub["amount"], sub["next_payment_date"]) == (1000, "2027-02-10")
    base = f"/v1/subscriptions/{sub['id']}"

    for body, field in [
        ({"status": "canceled"}, "status"),
        ({"amount": 1}, "amount"),
        ({"currency": "EUR"}, "currency"),
        ({"line_items": None}, "line_items"),
        ({"end_date": "2027-01-01"}, "end_date"),
        ({"collection": {"method": "none", "payment_terms_days": 7}}, "collection.payment_terms_days"),
    ]:
        assert_problem(await api.patch(base, body), 422, field)

    lines = [{"name": "Plan plus", "quantity": 2, "unit_amount": 1500, "unit_discount": {"percent_off": "10"},
              "tax_percent": "25"}]  # fmt: skip
    changed = await api.patch(base, {"line_items": lines, "metadata": {"tier": "plus"}, "end_date": "2027-03-05"})
    assert changed.status == 200, changed.body
    got = changed.body
    assert (got["subtotal"], got["tax"], got["amount"]) == (2700, 675, 3375)  # (1500 − 150) × 2, 25 % tax
    assert (got["metadata"], got["end_date"], got["next_payment_date"]) == (
        {"tier": "plus"},
        "2027-03-05",
        "2027-02-10",
    )
    assert (got["status"], got["currency"], got["payments_made"]) == ("active", "USD", 1)

    await advance(api, at("2027-02-10", 1))
    # the February payment is the new amount, and it is the last one before the end date
    done = await wait_subscription(api, sub["id"], payments_made=2, status="completed")
    assert done["next_payment_date"] is None
    (intent,) = await renewal_intents(http, stack, account["account_id"])
    assert (intent["amount"], intent["status"]) == (3375, "succeeded")

    async def payment():
        listed = await api.get(f"/v1/payments?subscription_id={sub['id']}")
        return listed.body["data"] or None

    (paid,) = await eventually(payment)
    assert paid["amount"] == 3375
    assert_problem(await api.patch(base, {"metadata": {}}), 409)  # ended: nothing to change


# -- cancel, pause, resume -------------------------------------------------------------------------------
async def test_cancel_now_and_at_period_end(api, buyer, account, http, stack):
    await advance(api, at("2027-01-05", 9))
    now_sub = await bought_monthly(api, buyer, "now@example.com")
    end_sub = await bought_monthly(api, buyer, "end@example.com")

    canceled = await api.post(f"/v1/subscriptions/{now_sub['id']}/cancel", {})
    assert canceled.status == 200, canceled.body
    assert (canceled.body["status"], canceled.body["next_payment_date"]) == ("canceled", None)
    assert canceled.body["canceled_at"] and canceled.body["ended_at"]
    base = f"/v1/subscriptions/{now_sub['id']}"
    for action, body in [("cancel", {}), ("cancel", {"at_period_end": True}), ("pause", None), ("resume", None),
                         ("payment_method_link", {})]:  # fmt: skip
        assert_problem(await api.post(f"{base}/{action}", body), 409)
    assert_problem(await api.post(f"{base}/cancel", {"at_period_end": "yes"}), 422, "at_period_end")

    later = await api.post(f"/v1/subscriptions/{end_sub['id']}/cancel", {"at_period_end": True})
    assert later.status == 200, later.body
    assert (later.body["status"], later.body["cancel_at_period_end"]) == ("active", True)
    assert later.body["next_payment_date"] == "2027-02-05"
    assert_problem(await api.post(f"/v1/subscriptions/{end_sub['id']}/cancel", {"at_period_end": True}), 409)

    await advance(api, at("2027-02-06"))
    ended = await wait_subscription(api, end_sub["id"], status="canceled")
    assert (ended["payments_made"], ended["next_payment_date"]) == (1, None)
    assert (await api.get(base)).body["payments_made"] == 1
    assert await renewal_intents(http, stack, account["account_id"]) == []  # neither was charged again
    assert await charges_of(stack, end_sub["id"]) == []


async def test_pause_charges_nothing_and_resume_keeps_the_anchor(api, buyer, account, http, stack):
    await advance(api, at("2027-03-10", 9))
    sub = await bought_monthly(api, buyer, "pause@example.com")
    base = f"/v1/subscriptions/{sub['id']}"
    assert_problem(await api.post(f"{base}/resume"), 409)  # not paused

    await advance(api, at("2027-03-20"))
    paused = await api.post(f"{base}/pause")
    assert paused.status == 200, paused.body
    assert (paused.body["status"], paused.body["next_payment_date"]) == ("paused", None)
    assert paused.body["paused_at"].startswith("2027-03-20")
    assert_problem(await api.post(f"{base}/pause"), 409)

    await advance(api, at("2027-05-20"))  # 10 April and 10 May pass while paused
    got = (await api.get(base)).body
    assert (got["status"], got["payments_made"]) == ("paused", 1)
    assert await charges_of(stack, sub["id"]) == []

    resumed = await api.post(f"{base}/resume")
    assert resumed.status == 200, resumed.body
    # the first payment date from the anchor (the 10th) on or after the resume day
    assert (resumed.body["status"], resumed.body["next_payment_date"], resumed.body["paused_at"]) == (
        "active", "2027-06-10", None)  # fmt: skip
    assert_problem(await api.post(f"{base}/resume"), 409)

    await advance(api, at("2027-06-10", 1))
    charged = await wait_subscription(api, sub["id"], payments_made=2)
    assert charged["next_payment_date"] == "2027-07-10"
    intents = await renewal_intents(http, stack, account["account_id"])
    assert [(i["amount"], i["status"]) for i in intents] == [(1000, "succeeded")]
    assert [c["period_index"] for c in await charges_of(stack, sub["id"])] == [3]  # April and May skipped


async def test_payment_method_link_and_rotation(api, http, stack):
    await advance(api, at("2027-02-01"))
    sub = await create(api, start_date="2027-02-20")
    base = f"/v1/subscriptions/{sub['id']}/payment_method_link"
    first = await api.post(base, {})
    assert first.status == 200, first.body
    assert first.body["rotated"] is False and "/billing/payment-method/" in first.body["url"]
    assert (await api.post(base)).body["url"] == first.body["url"]  # stable until rotated
    rotated = await api.post(base, {"rotate": True})
    assert rotated.status == 200 and rotated.body["rotated"] is True
    assert rotated.body["url"] != first.body["url"]
    assert (await api.post(base)).body["url"] == rotated.body["url"]
    assert_problem(await api.post(base, {"rotate": 1}), 422, "rotate")

    public = Api(http, stack.config.base_url)

    def token(url: str) -> str:
        return url.rstrip("/").rsplit("/", 1)[1]

    assert (await public.get(f"/api/payment-method/{token(rotated.body['url'])}")).status == 200
    assert (await public.get(f"/api/payment-method/{token(first.body['url'])}")).status == 404  # revoked


# -- analytics and the dry run --------------------------------------------------------------------------
async def test_analytics_of_a_known_set(api):
    await advance(api, at("2027-05-03"))
    none = {"collection": {"method": "none"}}
    await create(api, **none)  # 10.00 a month
    await create(api, interval="annually", line_items=[{"name": "Year", "unit_amount": 12000}], **none)
    await create(api, interval="weekly", line_items=[{"name": "Week", "unit_amount": 700}], **none)
    await create(api, interval="quarterly", line_items=[{"name": "Q", "unit_amount": 999, "tax_percent": "25"}], **none)
    await create(api, start_date="2027-06-01", line_items=[{"name": "Later", "unit_amount": 5000}], **none)
    gone = await create(api, line_items=[{"name": "Gone", "unit_amount": 3000}], **none)
    assert (await api.post(f"/v1/subscriptions/{gone['id']}/cancel", {})).status == 200

    got = await api.get("/v1/analytics/subscriptions")
    assert got.status == 200, got.body
    a = got.body
    assert (a["currency"], a["from"], a["to"]) == ("USD", "2027-05-01", "2027-05-31")
    # monthly: 1000 + 12000/12 + 700·52/12 + 999/3 (before tax) = 5366.33 → 5366; ARR 64396
    assert (a["active"], a["mrr"], a["arr"]) == (4, 5366, 64396)
    # created in May: the six (the scheduled and the canceled ones too), at their MRR
    assert (a["new"], a["new_mrr"], a["churned"], a["churned_mrr"]) == (6, 13366, 1, 3000)
    assert (a["failed_payments"], a["recovered_payments"], a["recovery_rate"], a["renewal_revenue"]) == (
        0, 0, None, 0)  # fmt: skip

    june = (await api.get("/v1/analytics/subscriptions?from=2027-06-01&to=2027-06-30")).body
    assert (june["new"], june["churned"], june["mrr"]) == (0, 0, 5366)  # MRR is as of now
    eur = (await api.get("/v1/analytics/subscriptions?currency=eur")).body
    assert (eur["currency"], eur["mrr"], eur["active"], eur["new"]) == ("EUR", 0, 0, 0)
    assert_problem(await api.get("/v1/analytics/subscriptions?from=2027-06-02&to=2027-06-01"), 422, "to")
    assert_problem(await api.get("/v1/analytics/subscriptions?currency=XXY"), 422, "currency")
    assert_problem(await api.get("/v1/analytics/subscriptions?from=yesterday"), 422, "from")


async def test_recovered_payment_analytics_and_dunning_dry_run(api, buyer, account, http, stack):
    await advance(api, at("2027-03-10", 9))
    sub = await bought_monthly(api, buyer, "dunning@example.com")
    await configure_processor(
        http, processor_url(stack), account["account_id"], force_decline_code="insufficient_funds", decline_count=1
    )
    await advance(api, at("2027-04-10", 1))
    await wait_subscription(api, sub["id"], status="past_due")
    await advance(api, at("2027-04-11", 1))  # the first retry (1 day after) succeeds
    await wait_subscription(api, sub["id"], status="active", payments_made=2)

    april = (await api.get("/v1/analytics/subscriptions?from=2027-04-01&to=2027-04-30")).body
    assert (april["failed_payments"], april["recovered_payments"], april["recovery_rate"]) == (1, 1, "100.00")
    assert (april["renewal_revenue"], april["mrr"], april["active"]) == (1000, 1000, 1)

    await advance(api, at("2027-04-20"))  # a dry run simulates retries up to now
    path = "/v1/analytics/dunning_dry_run"
    none = await api.post(path, {"retry_policy": {"retry_schedule_days": []}})
    assert none.status == 200, none.body
    assert none.body["retry_policy"]["retry_schedule_days"] == []
    assert none.body["summary"] == {
        "failures": 1, "recovered": 0, "canceled": 1, "unpaid": 0, "still_retrying": 0, "hard_declines": 0,
        "retries": 0, "gave_up_before_success": 1,
    }  # fmt: skip
    (result,) = none.body["results"]
    assert (result["subscription_id"], result["due_date"], result["decline_code"]) == (
        sub["id"], "2027-04-10", "insufficient_funds")  # fmt: skip

    later = (await api.post(path, {"retry_policy": {"retry_schedule_days": [2], "after_final_failure": "unpaid"}})).body
    assert (later["summary"]["recovered"], later["summary"]["retries"]) == (1, 1)
    assert later["results"][0]["recovered_at"].startswith("2027-04-12")

    current = (await api.post(path, {})).body  # the account's own policy: 1, 3, 7, 14 days
    assert current["retry_policy"]["retry_schedule_days"] == [1, 3, 7, 14]
    assert current["summary"]["recovered"] == 1
    assert (await api.post(path, {"from": "2027-05-01"})).body["summary"]["failures"] == 0

    assert_problem(await api.post(path, {"retry_policy": {"retry_schedule_days": [3, 1]}}), 422,
                   "retry_policy.retry_schedule_days")  # fmt: skip
    assert_problem(await api.post(path, {"retry_policy": {"every": 2}}), 422, "retry_policy.every")
    assert_problem(await api.post(path, {"summary": {}}), 422, "summary")
