"""Subscriptions born from purchases, renewed on the test clock (issue 4, scope 1–3)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.subscriptions import (
    advance,
    at,
    processor_intents,
    recurring_item,
    subscription_link,
    subscriptions_of,
    wait_subscription,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

MONTH_ENDS_2027 = [
    "2027-02-28",
    "2027-03-31",
    "2027-04-30",
    "2027-05-31",
    "2027-06-30",
    "2027-07-31",
    "2027-08-31",
    "2027-09-30",
    "2027-10-31",
    "2027-11-30",
    "2027-12-31",
    "2028-01-31",
]


async def test_monthly_from_31_january_is_charged_on_each_month_end_for_a_year(api, buyer, account, http, stack):
    await advance(api, at("2027-01-31", 10))
    link = await subscription_link(api, recurring_item("monthly", 1000))
    done = await buyer.pay(link["url"], "monthly@example.com")
    assert done.status == 200, done.body

    (sub,) = await eventually(lambda: subscriptions_of(api, "monthly@example.com"))
    assert sub["source"] == {"type": "payment_link", "id": link["id"]}
    assert (sub["status"], sub["payments_made"], sub["start_date"]) == ("active", 1, "2027-01-31")
    assert sub["next_payment_date"] == "2027-02-28" and sub["interval"] == "monthly"
    assert sub["amount"] == 1000 and sub["payments_total"] is None

    for n, day in enumerate(MONTH_ENDS_2027, start=2):
        await advance(api, at(day, 1))
        following = MONTH_ENDS_2027[n - 1] if n - 1 < len(MONTH_ENDS_2027) else "2028-02-29"
        await wait_subscription(api, sub["id"], payments_made=n, next_payment_date=following, status="active")

    intents = await processor_intents(
        http, f"http://127.0.0.1:{stack.config.ports.test_processor}", account["account_id"]
    )
    renewals_at_processor = [i for i in intents if i["metadata"].get("commerce_charge_id")]
    per_charge = Counter(
        i["metadata"]["commerce_charge_id"] for i in renewals_at_processor if i["status"] == "succeeded"
    )
    assert len(per_charge) == 12 and set(per_charge.values()) == {1}, per_charge

    async def payments():
        r = await api.get(f"/v1/payments?subscription_id={sub['id']}&limit=100")
        return r.body["data"] if len(r.body["data"]) == 12 else None

    renewals = await eventually(payments)
    assert {p["status"] for p in renewals} == {"succeeded"} and {p["amount"] for p in renewals} == {1000}


async def test_quarterly_with_four_payments_ends_completed(api, buyer):
    await advance(api, at("2027-01-15", 10))
    link = await subscription_link(api, recurring_item("quarterly", 4500, payments=4))
    assert (await buyer.pay(link["url"], "quarterly@example.com")).status == 200
    (sub,) = await eventually(lambda: subscriptions_of(api, "quarterly@example.com"))
    assert (sub["payments_total"], sub["payments_made"], sub["next_payment_date"]) == (4, 1, "2027-04-15")
    for n, day in enumerate(["2027-04-15", "2027-07-15", "2027-10-15"], start=2):
        await advance(api, at(day, 1))
        await wait_subscription(api, sub["id"], payments_made=n)
    done = await wait_subscription(api, sub["id"], status="completed")
    assert done["next_payment_date"] is None and done["ended_at"] is not None
    await advance(api, at("2028-01-20", 1))  # a fifth date would be 2028-01-15: nothing is charged
    after = (await api.get(f"/v1/subscriptions/{sub['id']}")).body
    assert after["payments_made"] == 4 and after["status"] == "completed"


async def test_annual_plan_reminds_the_buyer_14_days_before_each_charge(api, buyer):
    patched = await api.patch("/v1/account", {"subscription_settings": {"reminders_enabled": True}})
    assert patched.status == 200, patched.body
    await advance(api, at("2027-02-01", 10))
    link = await subscription_link(api, recurring_item("annually", 12000))
    assert (await buyer.pay(link["url"], "annual@example.com")).status == 200
    (sub,) = await eventually(lambda: subscriptions_of(api, "annual@example.com"))
    assert sub["next_payment_date"] == "2028-02-01"

    async def reminders():
        r = await api.get("/v1/emails?kind=upcoming_payment")
        return [e for e in r.body["data"] if e["to"] == "annual@example.com"]

    await advance(api, at("2028-01-17", 1))  # 15 days before: not yet
    assert await reminders() == []
    await advance(api, at("2028-01-18", 1))  # 14 days before
    (reminder,) = await eventually(reminders)
    await advance(api, at("2028-01-25", 1))  # later passes do not remind again
    await advance(api, at("2028-02-01", 1))
    await wait_subscription(api, sub["id"], payments_made=2, next_payment_date="2029-02-01")
    assert [e["id"] for e in await reminders()] == [reminder["id"]]


@pytest.mark.parametrize(
    ("start", "first_charge"),
    [
        ({"date": "2027-03-20"}, "2027-03-20"),
        ({"delay_days": 10}, "2027-03-11"),
        ({"delay_months": 2}, "2027-05-01"),
    ],
)
async def test_a_delayed_start_charges_nothing_at_checkout_and_starts_on_its_date(api, buyer, start, first_charge):
    await advance(api, at("2027-03-01", 10))
    setup_fee = {"name": "Setup", "quantity": 1, "unit_amount": 900}  # something is due at checkout
    link = await subscription_link(api, setup_fee, recurring_item("monthly", 1500, start=start))
    done = await buyer.pay(link["url"], "later@example.com")
    assert done.status == 200, done.body
    (sub,) = await eventually(lambda: subscriptions_of(api, "later@example.com"))
    assert (sub["status"], sub["payments_made"], sub["next_payment_date"]) == ("scheduled", 0, first_charge)
    assert sub["start_date"] == first_charge
    await advance(api, at(first_charge, 1))
    active = await wait_subscription(api, sub["id"], status="active", payments_made=1)
    assert active["next_payment_date"] > first_charge


async def test_monthly_annual_monthly_items_make_two_subscriptions(api, buyer):
    await advance(api, at("2027-01-10", 10))
    link = await subscription_link(
        api,
        recurring_item("monthly", 1000, name="Seat"),
        recurring_item("annually", 9000, name="Support"),
        recurring_item("monthly", 500, name="Storage"),
    )
    assert (await buyer.pay(link["url"], "grouped@example.com")).status == 200
    subs = await eventually(lambda: subscriptions_of(api, "grouped@example.com"), timeout=20)
    by_interval = {s["interval"]: s for s in subs}
    assert len(subs) == 2 and set(by_interval) == {"monthly", "annually"}
    assert sorted(li["name"] for li in by_interval["monthly"]["line_items"]) == ["Seat", "Storage"]
    assert by_interval["monthly"]["amount"] == 1500 and by_interval["annually"]["amount"] == 9000
    await advance(api, at("2027-02-10", 1))
    await wait_subscription(api, by_interval["monthly"]["id"], payments_made=2)
    assert (await api.get(f"/v1/subscriptions/{by_interval['annually']['id']}")).body["payments_made"] == 1


async def test_a_subscription_is_associated_with_the_contact_and_the_links_deal(api, buyer):
    pipelines = (await api.get("/v1/pipelines")).body["data"]
    pipeline = pipelines[0]
    opening = next(s for s in pipeline["stages"] if s["kind"] == "open")
    created = await api.post(
        "/v1/payment_links",
        {
            "name": "Plan with a deal",
            "currency": "USD",
            "line_items": [recurring_item("monthly", 1200)],
            "create_deal": {"pipeline": pipeline["id"], "stage": opening["id"]},
        },
    )
    assert created.status == 201, created.body
    assert (await buyer.pay(created.body["url"], "dealt@example.com", firstname="Dee")).status == 200
    (sub,) = await eventually(lambda: subscriptions_of(api, "dealt@example.com"))

    async def associated():
        body = (await api.get(f"/v1/subscriptions/{sub['id']}")).body
        return body if body["contact_id"] and body["deal_ids"] else None

    linked = await eventually(associated, timeout=20)
    (deal_id,) = linked["deal_ids"]
    contact = (await api.get(f"/v1/contacts/{linked['contact_id']}")).body
    assert contact["email"] == "dealt@example.com"

    async def listed():
        body = (await api.get(f"/v1/contacts/{linked['contact_id']}/associations")).body
        return body if sub["id"] in body.get("subscriptions", []) else None

    associations = await eventually(listed, timeout=20)
    assert deal_id in associations["deals"]
    by_contact = (await api.get(f"/v1/subscriptions?contact_id={linked['contact_id']}")).body["data"]
    assert [s["id"] for s in by_contact] == [sub["id"]]
