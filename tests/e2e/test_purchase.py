"""The walking skeleton: one real purchase through all four services (issue 2, scope 6)."""

from __future__ import annotations

import pytest

from tests.support.client import read_mail
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def test_purchase_flows_through_all_four_services(stack, api, buyer, link):
    done = await buyer.pay(link["url"], "Ada.Lovelace@Example.com", firstname="Ada", lastname="Lovelace")
    assert done.status == 200, done.body
    assert done.body["status"] == "complete"
    payment_id = done.body["payment_id"]

    payment = await api.get(f"/v1/payments/{payment_id}")
    assert payment.status == 200
    assert payment.body["status"] == "succeeded"
    assert payment.body["amount"] == 2500 and payment.body["currency"] == "USD"
    assert payment.body["source"] == {"type": "payment_link", "id": link["id"]}
    listed = await api.get("/v1/payments")
    assert [p["id"] for p in listed.body["data"]] == [payment_id]

    async def ledger():
        r = await api.get(f"/v1/ledger_entries?payment_id={payment_id}")
        return r.body["data"]

    (entry,) = await eventually(ledger)
    assert entry["amount"] == 2500

    async def contact():
        r = await api.get("/v1/contacts?email=ada.lovelace@example.com")
        return r.body["data"]

    (person,) = await eventually(contact)
    assert person["email"] == "Ada.Lovelace@Example.com"
    assert (person["firstname"], person["lastname"]) == ("Ada", "Lovelace")

    async def linked():  # crm_sync's contact.upserted tells checkout whose payment it was
        r = await api.get(f"/v1/payments?contact_id={person['id']}")
        return r.body["data"]

    (by_contact,) = await eventually(linked)
    assert by_contact["id"] == payment_id and by_contact["contact_id"] == person["id"]
    associations = await api.get(f"/v1/contacts/{person['id']}/associations")
    assert associations.body["payments"] == [payment_id] and associations.body["payment_links"] == [link["id"]]

    async def sent():
        r = await api.get("/v1/emails?kind=receipt")
        return [e for e in r.body["data"] if e["status"] == "sent"]

    (email,) = await eventually(sent)
    assert email["to"] == "Ada.Lovelace@Example.com" and email["payment_id"] == payment_id

    messages = [m for m in read_mail(stack.config.mail_dir) if m["Message-ID"] == email["message_id"]]
    assert len(messages) == 1
    message = messages[0]
    assert message["To"] == "Ada.Lovelace@Example.com"
    assert "$25.00" in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "2 × $12.50 = $25.00" in text
    assert "Coffee beans, 1 kg" in html and "$25.00" in html


async def test_a_paid_session_cannot_be_paid_again(api, buyer, link):
    first = await buyer.pay(link["url"], "buyer@example.com")
    assert first.status == 200
    again = await buyer.complete()
    assert again.status == 200 and again.body["payment_id"] == first.body["payment_id"]  # idempotent
    resubmit = await buyer.submit({"email": "buyer@example.com"})
    assert resubmit.status == 410
    assert resubmit.headers["Content-Type"].startswith("application/problem+json")
    page = await buyer.api.get(f"/checkout/{buyer.token}")
    assert page.status == 410
    payments = await api.get("/v1/payments")
    assert len(payments.body["data"]) == 1


async def test_an_expired_session_is_a_410_page_and_takes_no_payment(api, buyer, link):
    from datetime import datetime, timedelta

    await buyer.open(link["url"])
    submitted = await buyer.submit({"email": "late@example.com"})
    assert submitted.status == 200, submitted.body
    assert (await buyer.confirm_card(submitted.body["payment"]["client_secret"]))["http_status"] == 200
    now = datetime.fromisoformat((await api.get("/v1/test_clock")).body["now"].replace("Z", "+00:00"))
    later = (now + timedelta(hours=24, minutes=5)).isoformat()  # sessions live 24 h by default
    assert (await api.post("/v1/test_clock/advance", {"to": later})).status == 200
    page = await buyer.api.get(f"/checkout/{buyer.token}")
    assert page.status == 410 and page.headers["Content-Type"].startswith("text/html")
    assert "expired" in page.body
    for attempt in (buyer.complete(), buyer.submit({"email": "late@example.com"})):
        refused = await attempt
        assert refused.status == 410, refused.body
        assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert (await buyer.view()).body["status"] == "expired"
    assert (await api.get("/v1/payments")).body["data"] == []


async def test_each_visit_of_the_link_opens_a_new_session(buyer, link):
    first = await buyer.open(link["url"])
    second = await buyer.open(link["url"])
    assert first != second and len(first) >= 22


async def test_a_declined_card_can_be_replaced_in_the_same_session(api, buyer, link):
    await buyer.open(link["url"])
    submitted = await buyer.submit({"email": "decline@example.com"})
    confirmed = await buyer.confirm_card(submitted.body["payment"]["client_secret"], "4000000000000341")
    assert confirmed["http_status"] == 200  # attaches, fails when charged
    declined = await buyer.complete()
    assert declined.status == 402 and declined.body["status"] == "declined"
    retry = await buyer.submit({"email": "decline@example.com"})
    assert retry.body["payment"]["intent_id"] != submitted.body["payment"]["intent_id"]
    await buyer.confirm_card(retry.body["payment"]["client_secret"], "4242424242424242")
    paid = await buyer.complete()
    assert paid.status == 200 and paid.body["status"] == "complete"
    assert len((await api.get("/v1/payments")).body["data"]) == 1
