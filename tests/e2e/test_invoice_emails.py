"""Invoice e-mails through the running system (PRODUCT §6.6, §8, §11; issue 5): billing
issues an invoice on the test clock, marks it overdue once after its due date, and
marks it paid when the buyer pays it online — each ``invoice.updated`` reaches
notifications, which sends the buyer one message per fact, in the account's language
(Swedish here), to the SMTP sink; the payment also tells the account's recipients, and
the buyer gets no second receipt for it. ``GET /v1/emails`` is the log."""

from __future__ import annotations

from datetime import date

import pytest

from tests.support.client import read_mail
from tests.support.invoices import create_subscription, invoices_of, pay_online, wait_invoice
from tests.support.subscriptions import advance, at
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

PAYER = "payer@example.com"
OPS = "ops@shop.test"
NBSP = "\xa0"


async def sent(api, kind: str, count: int = 1) -> list[dict]:
    async def probe():
        listed = await api.get(f"/v1/emails?kind={kind}&limit=100")
        assert listed.status == 200, listed.body
        done = [e for e in listed.body["data"] if e["status"] == "sent"]
        return done if len(done) >= count else None

    return await eventually(probe, timeout=30)


def delivered(stack, email: dict):
    (message,) = [m for m in read_mail(stack.config.mail_dir) if m["Message-ID"] == email["message_id"]]
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content()
    return message, text, html


async def test_an_invoice_is_announced_issued_overdue_and_paid_once_each(api, buyer, account, stack):
    patched = await api.patch("/v1/account", {"language": "sv", "notification_recipients": [OPS]})
    assert patched.status == 200, patched.body
    await advance(api, at("2027-03-01"))  # (waits until every service has the new settings)
    sub = await create_subscription(stack, account["account_id"], api, start_date=date(2027, 3, 10), unit_amount=123450)

    # issued on its payment date: "Faktura … förfaller 9 april 2027", the line math, the link
    await advance(api, at("2027-03-10", 1))
    (invoice,) = await invoices_of(api, sub["id"])
    (issued,) = await sent(api, "invoice_issued")
    assert (issued["to"], issued["locale"]) == (PAYER, "sv")
    assert issued["related"] == {
        "invoice_id": invoice["id"],
        "invoice_number": invoice["number"],
        "subscription_id": sub["id"],
    }
    message, text, html = delivered(stack, issued)
    amount = f"1{NBSP}234,50{NBSP}US$"
    subject = f"Faktura {invoice['number']} från Shop (1 234,50 US$, förfaller 9 april 2027)"
    assert str(message["Subject"]).strip() == subject
    assert message["To"] == PAYER and message["From"].addresses[0].display_name == "Shop"
    assert f"Support plan (10 mars 2027 – 9 mars 2028): 1 × {amount} = {amount}" in text
    assert f"Att betala: {amount}" in text and "30 dagar netto" in text
    assert "som debiteras varje år från och med den 10 mars 2027, tills den sägs upp" in text
    assert "Nästa betalning: 10 mars 2028." in text
    assert f"Betala online: {invoice['url']}" in text and f'href="{invoice["url"]}"' in html

    # overdue the day after its due date — once, however often the clock moves on
    await advance(api, at("2027-04-10", 1))
    (overdue,) = await sent(api, "invoice_overdue")
    await advance(api, at("2027-04-12", 1))
    _, text, _ = delivered(stack, overdue)
    assert f"förföll den 9 april 2027 och är ännu inte betald. Att betala: {amount}." in text
    assert (await api.get(f"/v1/invoices/{invoice['id']}")).body["overdue"] is True

    # paid online: the invoice's receipt to the buyer, the payment to the recipients
    paid = await pay_online(buyer, api, invoice)
    await wait_invoice(api, invoice["id"], status="paid")
    (receipt,) = await sent(api, "invoice_paid")
    assert receipt["related"]["payment_id"] == paid["payment_id"]
    message, text, _ = delivered(stack, receipt)
    assert str(message["Subject"]).strip() == f"Kvitto för faktura {invoice['number']} från Shop (1 234,50 US$)"
    assert f"Betalt: {amount}" in text and f"Betalningsreferens {paid['payment_id']}" in text
    (notice,) = await sent(api, "payment_notification")
    assert notice["to"] == OPS and notice["related"]["payment_id"] == paid["payment_id"]

    emails = (await api.get("/v1/emails?limit=100")).body["data"]
    assert sorted(e["kind"] for e in emails) == [
        "invoice_issued",
        "invoice_overdue",
        "invoice_paid",
        "payment_notification",
    ]  # one each: no purchase receipt beside the invoice's, no second overdue notice
    assert all(e["status"] == "sent" and e["sent_at"] for e in emails)
    for_payer = (await api.get("/v1/emails?to=PAYER@Example.com")).body["data"]
    assert {e["kind"] for e in for_payer} == {"invoice_issued", "invoice_overdue", "invoice_paid"}
    refused = await api.get("/v1/emails?kind=invoice_lost")
    assert refused.status in (400, 422) and any(e["field"] == "kind" for e in refused.body["errors"])
