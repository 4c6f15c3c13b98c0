"""Invoices of subscriptions collected by invoice (PRODUCT §6.5, §6.6, §11), on the test
clock, through the real services: issued on the payment date with a gapless number,
overdue after the due date, paid online through the public page's checkout, voided,
marked paid, printed in English and Swedish.

The subscriptions are inserted with billing's own `subscriptions.service.create` (the
subscription admin API is built separately); everything after that is the running
system: the test-clock hook issues the invoice, checkout learns of it from
``invoice.updated``, the buyer pays it, billing hears ``purchase.completed``.
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from tests.support.invoices import create_subscription, invoices_of, open_checkout, page_path, pay_online, wait_invoice
from tests.support.subscriptions import advance, at, processor_intents, wait_subscription
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

NUMBER = re.compile(r"^([A-Z2-7]{8})-(\d{4})$")


def _plain(text: str) -> str:
    """CLDR writes no-break spaces (and narrow ones) in numbers and dates."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")


async def test_send_invoice_net_30_is_issued_goes_overdue_and_is_paid_online(api, buyer, account, stack, http):
    await advance(api, at("2027-03-01"))
    sub = await create_subscription(stack, account["account_id"], api, start_date=date(2027, 3, 10))
    assert sub["status"] == "scheduled" and sub["collection"]["method"] == "send_invoice"
    assert await invoices_of(api, sub["id"]) == []

    # issued on the payment date, by the clock hook (before the advance returns)
    await advance(api, at("2027-03-10", 1))
    (invoice,) = await invoices_of(api, sub["id"])
    assert NUMBER.match(invoice["number"]) and invoice["number"].endswith("-0001"), invoice["number"]
    assert (invoice["status"], invoice["overdue"]) == ("open", False)
    assert (invoice["issue_date"], invoice["due_date"], invoice["payment_terms_days"]) == (
        "2027-03-10",
        "2027-04-09",
        30,
    )
    assert (invoice["subtotal"], invoice["discount"], invoice["tax"], invoice["total"]) == (12345, 0, 0, 12345)
    assert (invoice["amount_paid"], invoice["amount_due"], invoice["currency"]) == (0, 12345, "USD")
    assert invoice["lines"][0]["period_start"] == "2027-03-10" and invoice["lines"][0]["period_end"] == "2028-03-09"
    sub = (await api.get(f"/v1/subscriptions/{sub['id']}")).body
    assert (sub["status"], sub["payments_made"], sub["next_payment_date"]) == ("active", 0, "2028-03-10")

    # overdue is shown after the due date (the due date itself is on time); status stays open
    await advance(api, at("2027-04-09", 23))
    assert (await api.get(f"/v1/invoices/{invoice['id']}")).body["overdue"] is False
    await advance(api, at("2027-04-10", 1))
    overdue = (await api.get(f"/v1/invoices/{invoice['id']}")).body
    assert (overdue["status"], overdue["overdue"]) == ("open", True)
    listed = await api.get("/v1/invoices?status=open")
    assert [i["id"] for i in listed.body["data"]] == [invoice["id"]]

    # the public page: the invoice and a Pay online button posting to checkout
    page = await api.request("GET", page_path(invoice), key="")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert invoice["number"] in page.body and "Overdue" in page.body and "Pay online" in page.body
    assert f'action="/api/invoices/{page_path(invoice).rsplit("/", 1)[1]}/checkout"' in page.body
    # the form post of that button lands on the checkout page
    form = await api.request(
        "POST",
        page_path(invoice).replace("/invoices/", "/api/invoices/") + "/checkout",
        key="",
        data=b"",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status == 303 and form.headers["Location"].startswith("/checkout/"), form.body

    paid = await pay_online(buyer, api, overdue)
    invoice = await wait_invoice(api, invoice["id"], status="paid")
    assert (invoice["amount_paid"], invoice["amount_due"], invoice["overdue"]) == (12345, 0, False)
    assert invoice["payment_id"] == paid["payment_id"] and invoice["paid_at"]
    payment = await api.get(f"/v1/payments/{paid['payment_id']}")
    assert payment.status == 200, payment.body
    assert (payment.body["status"], payment.body["amount"]) == ("succeeded", 12345)
    assert payment.body["source"] == {"type": "invoice", "id": invoice["id"]}
    await wait_subscription(api, sub["id"], payments_made=1, status="active", next_payment_date="2028-03-10")

    # paid: no more paying, voiding or marking
    assert (await open_checkout(api, invoice)).status == 409
    assert (await api.post(f"/v1/invoices/{invoice['id']}/void")).status == 409
    assert (await api.post(f"/v1/invoices/{invoice['id']}/mark_paid")).status == 409
    page = await api.request("GET", page_path(invoice), key="")
    assert "Pay online" not in page.body and ">Paid<" in page.body
    missing = await api.request("POST", "/api/invoices/not-a-token/checkout", key="")
    assert missing.status == 404
    assert (await api.request("GET", "/invoices/not-a-token", key="")).status == 404


async def test_numbers_are_gapless_and_a_voided_invoice_keeps_its_number(api, account, stack):
    await advance(api, at("2027-04-20"))
    sub = await create_subscription(
        stack, account["account_id"], api, start_date=date(2027, 5, 1), interval="monthly", payment_terms_days=0
    )
    # one jump makes three payment dates due: three invoices, numbered in date order
    await advance(api, at("2027-07-01", 6))
    first, second, third = await invoices_of(api, sub["id"])
    prefixes = {NUMBER.match(i["number"]).group(1) for i in (first, second, third)}
    assert len(prefixes) == 1
    assert [i["number"][-4:] for i in (first, second, third)] == ["0001", "0002", "0003"]
    assert [i["issue_date"] for i in (first, second, third)] == ["2027-05-01", "2027-06-01", "2027-07-01"]
    assert [i["due_date"] for i in (first, second, third)] == ["2027-05-01", "2027-06-01", "2027-07-01"]  # on receipt

    voided = await api.post(f"/v1/invoices/{second['id']}/void", headers={"Idempotency-Key": "void-2"})
    assert voided.status == 200, voided.body
    assert (voided.body["status"], voided.body["number"], voided.body["amount_due"]) == ("void", second["number"], 0)
    assert voided.body["voided_at"]
    replay = await api.post(f"/v1/invoices/{second['id']}/void", headers={"Idempotency-Key": "void-2"})
    assert replay.status == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    assert (await api.post(f"/v1/invoices/{second['id']}/void")).status == 409
    assert (await api.post(f"/v1/invoices/{second['id']}/mark_paid")).status == 409

    async def refused():  # once checkout's copy has the void (an event, milliseconds later)
        return (await open_checkout(api, voided.body)).status == 409

    await eventually(refused, timeout=15)

    marked = await api.post(f"/v1/invoices/{first['id']}/mark_paid")
    assert marked.status == 200, marked.body
    assert (marked.body["status"], marked.body["amount_paid"], marked.body["payment_id"]) == ("paid", 12345, None)
    await wait_subscription(api, sub["id"], payments_made=1)

    # still 1..3 (2 void), and the next one is 4
    numbers = [(i["number"][-4:], i["status"]) for i in await invoices_of(api, sub["id"])]
    assert numbers == [("0001", "paid"), ("0002", "void"), ("0003", "open")]
    await advance(api, at("2027-08-01", 6))
    latest = (await invoices_of(api, sub["id"]))[-1]
    assert latest["number"] == f"{prefixes.pop()}-0004" and latest["issue_date"] == "2027-08-01"
    voided_list = await api.get(f"/v1/invoices?subscription_id={sub['id']}&status=void")
    assert [i["id"] for i in voided_list.body["data"]] == [second["id"]]
    assert (await api.get("/v1/invoices/inv_doesnotexist")).status == 404


async def test_the_document_prints_in_english_and_swedish_with_locale_formats(api, account, stack):
    await advance(api, at("2027-03-01"))
    sub = await create_subscription(
        stack,
        account["account_id"],
        api,
        start_date=date(2027, 3, 10),
        currency="SEK",
        unit_amount=98760,
        tax=24690,
        invoice_settings={
            "language": "sv",
            "comments": "Tack för att du handlar hos oss!",
            "tax_ids": ["SE556677889901"],
        },
        billing_address={"line1": "Drottninggatan 1", "postal_code": "111 51", "city": "Stockholm", "country": "SE"},
    )
    await advance(api, at("2027-03-10", 8))
    (invoice,) = await invoices_of(api, sub["id"])
    assert (invoice["total"], invoice["tax"], invoice["language"], invoice["locale"]) == (123450, 24690, "sv", "sv_SE")

    swedish = await api.request("GET", f"/v1/invoices/{invoice['id']}/document")
    assert swedish.status == 200 and swedish.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in swedish.headers["Content-Security-Policy"]
    text = _plain(swedish.body)
    for expected in ("Faktura", invoice["number"], "1 234,50 kr", "987,60 kr", "246,90 kr", "10 mars 2027",
                     "9 april 2027", "30 dagar netto", "Moms", "SE556677889901", "Tack för att du handlar hos oss!",
                     "111 51 Stockholm", "Sverige"):  # fmt: skip
        assert expected in text, expected

    english = await api.request("GET", f"/v1/invoices/{invoice['id']}/document?lang=en")
    assert english.status == 200
    text = _plain(english.body)
    for expected in ("Invoice", invoice["number"], "SEK 1,234.50".replace(" ", ""), "March 10, 2027", "April 9, 2027",
                     "Net 30 days", "111 51 Stockholm", "Sweden"):  # fmt: skip
        assert expected in text, expected
    assert "Faktura" not in text
    assert (await api.request("GET", f"/v1/invoices/{invoice['id']}/document?lang=de")).status == 422


async def test_collecting_the_payment_method_on_the_first_invoice_charges_later_periods(
    api, buyer, account, stack, http
):
    await advance(api, at("2027-09-01"))
    sub = await create_subscription(
        stack,
        account["account_id"],
        api,
        start_date=date(2027, 9, 5),
        interval="monthly",
        collection_method="charge_automatically",
        collect_method_on_first_invoice=True,
        payment_terms_days=7,
    )
    await advance(api, at("2027-09-05", 6))
    (invoice,) = await invoices_of(api, sub["id"])
    assert (invoice["collect_payment_method"], invoice["due_date"]) == (True, "2027-09-12")
    await pay_online(buyer, api, invoice, email="first@example.com")
    await wait_invoice(api, invoice["id"], status="paid")
    saved = await wait_subscription(api, sub["id"], payments_made=1)
    assert saved["payment_method"] is not None, saved

    # the next period is charged automatically with the saved method, not invoiced
    await advance(api, at("2027-10-05", 6))
    await wait_subscription(api, sub["id"], payments_made=2, next_payment_date="2027-11-05")
    assert len(await invoices_of(api, sub["id"])) == 1
    intents = await processor_intents(
        http, f"http://127.0.0.1:{stack.config.ports.test_processor}", account["account_id"]
    )
    charges = [i for i in intents if i["metadata"].get("commerce_subscription_id") == sub["id"]]
    assert [i["status"] for i in charges] == ["succeeded"] and charges[0]["amount"] == 12345
