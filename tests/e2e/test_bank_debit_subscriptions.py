"""Subscriptions paid by bank debit (PRODUCT §6.1, §4.2 point 4): born when the debit is
authorised, renewed by debits whose outcome arrives later (the reconciler reads it from
the processor), ended if the first debit fails."""

from __future__ import annotations

import pytest

from tests.e2e.test_bank_debits import debit_account, pay_by_bank, processor  # noqa: F401 (fixture)
from tests.support.processor import FAILING_IBAN, GOOD_IBAN
from tests.support.subscriptions import advance, at, subscriptions_of, wait_subscription
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

MONTHLY_SEPA = {
    "name": "Monatsabo",
    "currency": "EUR",
    "payment_methods": ["sepa_debit"],
    "line_items": [
        {
            "name": "Kaffee-Abo",
            "quantity": 1,
            "unit_amount": 1900,
            "recurring": {"interval": "monthly", "payments": None},
        }
    ],
}


async def test_a_sepa_subscription_is_born_on_authorisation_and_renewed_by_debit(
    stack,
    http,
    new_account,
    buyer,
    processor,  # noqa: F811
):
    account, api = await debit_account(new_account, http, stack, processor, "EUR")
    await advance(api, at("2027-05-03", 9))
    link = (await api.post("/v1/payment_links", MONTHLY_SEPA)).body
    paid = await pay_by_bank(buyer, processor, link, "abo@example.com", lambda s: processor.confirm_sepa(s, GOOD_IBAN))
    assert (await api.get(f"/v1/payments/{paid['payment_id']}")).body["status"] == "processing"

    # authorised, not settled: the subscription exists already, its first payment counted
    (sub,) = await eventually(lambda: subscriptions_of(api, "abo@example.com"), timeout=30)
    assert (sub["status"], sub["payments_made"], sub["next_payment_date"]) == ("active", 1, "2027-06-03")
    assert sub["payment_method"]["type"] == "sepa_debit"
    assert await processor.settle(account["account_id"]) == 1

    await advance(api, at("2027-06-03", 2))

    async def renewal_processing():
        r = await api.get(f"/v1/payments?subscription_id={sub['id']}")
        return r.body["data"] if r.body["data"] else None

    await eventually(lambda: _charge_status(stack, sub["id"], "processing"), timeout=30)
    assert (await api.get(f"/v1/subscriptions/{sub['id']}")).body["payments_made"] == 1  # not yet
    assert await processor.settle(account["account_id"]) == 1
    renewed = await wait_subscription(api, sub["id"], timeout=30, payments_made=2)
    assert renewed["next_payment_date"] == "2027-07-03"
    (payment,) = await eventually(renewal_processing, timeout=30)
    assert (payment["status"], payment["amount"], payment["method_type"]) == ("succeeded", 1900, "sepa_debit")


async def test_a_subscription_whose_first_debit_fails_never_starts(stack, http, new_account, buyer, processor):  # noqa: F811
    account, api = await debit_account(new_account, http, stack, processor, "EUR")
    await advance(api, at("2027-05-03", 9))
    link = (await api.post("/v1/payment_links", MONTHLY_SEPA)).body
    await pay_by_bank(buyer, processor, link, "bounce@example.com", lambda s: processor.confirm_sepa(s, FAILING_IBAN))
    (sub,) = await eventually(lambda: subscriptions_of(api, "bounce@example.com"), timeout=30)
    assert sub["status"] == "active"
    assert await processor.settle(account["account_id"]) == 1
    ended = await wait_subscription(api, sub["id"], timeout=30, status="canceled")
    assert ended["next_payment_date"] is None
    await advance(api, at("2027-06-10", 2))
    assert (await api.get(f"/v1/payments?subscription_id={sub['id']}")).body["data"] == []


async def _charge_status(stack, subscription_id: str, status: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(stack.env["BILLING_DATABASE_OWNER_URL"])
    try:
        rows = await conn.fetch("SELECT status FROM billing.charges WHERE subscription_id = $1", subscription_id)
    finally:
        await conn.close()
    return any(r["status"] == status for r in rows)
