"""Quotes paid online (PRODUCT §5) through the running services, on the test clock:
publish → the page with Check out at the top and bottom → checkout → paid (the deal's
quote card, the payment on the deal) → subscriptions from the recurring items with fixed
terms and taxes, anchored on the payment day; expiry at the end of ``expires_on``;
recall, edit and publish again at the same address; validation at publish; conversion
to subscriptions without online payment."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.support.client import read_mail
from tests.support.sources import pay_through_button
from tests.support.subscriptions import advance, at, subscriptions_of, wait_subscription
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def _email(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:8]}@example.com"


async def crm_parties(api) -> dict[str, Any]:
    contact = await api.post("/v1/contacts", {"email": _email("buyer"), "firstname": "Quinn", "lastname": "Buyer"})
    assert contact.status == 201, contact.body
    company = await api.post("/v1/companies", {"name": f"Quinn AB {uuid.uuid4().hex[:6]}"})
    assert company.status == 201, company.body
    deal = await api.post("/v1/deals", {"name": "Website care", "contact_ids": [contact.body["id"]]})
    assert deal.status == 201, deal.body
    return {"contact": contact.body, "company": company.body, "deal": deal.body}


async def tax_rate(api, percentage: str = "25") -> str:
    created = await api.post("/v1/tax_rates", {"name": "VAT", "percentage": percentage, "inclusive": False})
    assert created.status == 201, created.body
    return created.body["id"]


def quote_body(parties: dict, **overrides: Any) -> dict:
    return {
        "title": "Website care, 2027",
        "currency": "USD",
        "deal_id": parties["deal"]["id"],
        "contact_id": parties["contact"]["id"],
        "company_id": parties["company"]["id"],
        "owner_email": "owner@example.com",
        "expires_on": "2027-03-31",
        "line_items": [{"name": "Set-up", "quantity": 1, "unit_amount": 50000}],
        **overrides,
    }


async def publish(api, quote_id: str):
    """Publish once checkout has heard of the CRM records (crm_record.updated)."""

    async def probe():
        got = await api.post(f"/v1/quotes/{quote_id}/publish")
        if got.status == 422 and all(e["message"].startswith("no such") for e in got.body.get("errors", [])):
            return None
        return got

    return await eventually(probe, timeout=20)


def token_of(quote: dict) -> str:
    match = re.search(r"/quotes/([^/?#]+)$", quote["url"])
    assert match, quote["url"]
    return match.group(1)


async def pay(buyer, api, quote: dict, email: str) -> dict:
    view, _ = await pay_through_button(api, buyer, f"/api/quotes/{token_of(quote)}/checkout", email)
    return view


async def test_a_published_quote_is_paid_online_and_its_recurring_items_become_subscriptions(api, buyer, stack):
    await advance(api, at("2027-03-10"))
    parties = await crm_parties(api)
    vat = await tax_rate(api)
    body = quote_body(
        parties,
        discount={"name": "Welcome", "percent_off": "10"},
        line_items=[
            {"name": "Set-up", "quantity": 1, "unit_amount": 50000, "tax_rate_id": vat},
            {
                "name": "Care plan",
                "quantity": 2,
                "unit_amount": 4950,
                "tax_rate_id": vat,
                "recurring": {"interval": "monthly", "payments": 6},
            },
            {"name": "Hosting", "quantity": 1, "unit_amount": 12000, "recurring": {"interval": "annually"}},
        ],
    )
    created = await api.post("/v1/quotes", body)
    assert created.status == 201, created.body
    quote = created.body
    assert (quote["status"], quote["url"], quote["version"]) == ("draft", None, 0)

    published = await publish(api, quote["id"])
    assert published.status == 200, published.body
    quote = published.body
    assert (quote["status"], quote["version"]) == ("published", 1) and quote["url"].startswith("http")
    assert quote["summary"]["total_due_now"] > 0

    page = await api.request("GET", f"/quotes/{token_of(quote)}", key="")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html"), page.body
    assert page.body.count("Check out</button>") == 2  # at the top and at the bottom
    assert "Every month, 6 payments" in page.body and "Website care, 2027" in page.body
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]

    email = parties["contact"]["email"]
    view = await pay(buyer, api, quote, email)
    # 500.00 + 99.00 + 120.00 = 719.00, −10 % = 647.10, VAT 25 % on the first two lines' share
    assert view["summary"]["total_due_now"] == quote["summary"]["total_due_now"]

    async def paid():
        got = (await api.get(f"/v1/quotes/{quote['id']}")).body
        return got if got["status"] == "paid" else None

    paid_quote = await eventually(paid, timeout=20)
    assert paid_quote["paid_at"].startswith("2027-03-10") and paid_quote["payment_id"].startswith("pay_")
    payment = (await api.get(f"/v1/payments/{paid_quote['payment_id']}")).body
    assert payment["source"] == {"type": "quote", "id": quote["id"]}
    assert payment["amount"] == quote["summary"]["total_due_now"]

    # the owner is told, once, by e-mail (notifications, from the purchase's quote reference)
    async def owner_mail():
        listed = (await api.get("/v1/emails?kind=quote_paid&limit=100")).body["data"]
        mine = [e for e in listed if e["related"].get("quote_id") == quote["id"] and e["status"] == "sent"]
        return mine or None

    (told,) = await eventually(owner_mail, timeout=30)
    assert told["to"] == "owner@example.com" and told["related"]["payment_id"] == paid_quote["payment_id"]
    (message,) = [m for m in read_mail(stack.config.mail_dir) if m["Message-ID"] == told["message_id"]]
    text = message.get_body(("plain",)).get_content()
    assert "Website care, 2027" in text and message["To"] == "owner@example.com"

    # the quote can be paid only once
    again = await api.request("POST", f"/api/quotes/{token_of(quote)}/checkout", key="")
    assert again.status == 409, again.body
    page = await api.request("GET", f"/quotes/{token_of(quote)}", key="")
    assert "Paid on" in page.body and "Check out</button>" not in page.body

    # the deal's quote card and associations
    async def card():
        deal = (await api.get(f"/v1/deals/{parties['deal']['id']}")).body
        cards = [c for c in deal.get("quotes", []) if c["id"] == quote["id"] and c["status"] == "paid"]
        return cards[0] if cards else None

    quote_card = await eventually(card, timeout=20)
    assert quote_card["paid_at"].startswith("2027-03-10") and quote_card["payment_id"] == paid_quote["payment_id"]

    async def deal_has_payment():
        assoc = (await api.get(f"/v1/deals/{parties['deal']['id']}/associations")).body
        return assoc if paid_quote["payment_id"] in assoc["payments"] and quote["id"] in assoc["quotes"] else None

    await eventually(deal_has_payment, timeout=20)

    # the recurring items: one subscription per group, anchored on the payment day
    async def two_subscriptions():
        subs = [s for s in await subscriptions_of(api, email) if s["source"] == {"type": "quote", "id": quote["id"]}]
        return subs if len(subs) == 2 else None

    subs = {s["interval"]: s for s in await eventually(two_subscriptions, timeout=20)}
    monthly, annual = subs["monthly"], subs["annually"]
    assert (monthly["payments_total"], monthly["payments_made"], monthly["start_date"]) == (6, 1, "2027-03-10")
    assert monthly["next_payment_date"] == "2027-04-10" and annual["next_payment_date"] == "2028-03-10"
    assert parties["deal"]["id"] in monthly["deal_ids"]
    # taxes on every charge, not only the first: 2 × 49.50 = 99.00 + 25 % = 123.75
    assert monthly["line_items"][0]["tax"] == 2475 and monthly["amount"] == 12375
    await advance(api, at("2027-04-10", 13))
    await wait_subscription(api, monthly["id"], payments_made=2, next_payment_date="2027-05-10")


async def test_a_quote_expires_at_the_end_of_its_last_day(api):
    await advance(api, at("2027-03-10"))
    parties = await crm_parties(api)
    created = (await api.post("/v1/quotes", quote_body(parties, expires_on="2027-03-12"))).body
    quote = (await publish(api, created["id"])).body
    assert quote["status"] == "published"

    await advance(api, at("2027-03-12", 23))
    assert (await api.get(f"/v1/quotes/{quote['id']}")).body["status"] == "published"
    page = await api.request("GET", f"/quotes/{token_of(quote)}", key="")
    assert "Valid until" in page.body and page.body.count("Check out</button>") == 2

    await advance(api, at("2027-03-13", 1))
    assert (await api.get(f"/v1/quotes/{quote['id']}")).body["status"] == "expired"
    listed = await api.get("/v1/quotes?status=expired")
    assert quote["id"] in [q["id"] for q in listed.body["data"]]
    page = await api.request("GET", f"/quotes/{token_of(quote)}", key="")
    assert page.status == 200 and "expired" in page.body and "Check out</button>" not in page.body
    refused = await api.request("POST", f"/api/quotes/{token_of(quote)}/checkout", key="")
    assert refused.status == 410 and refused.body["type"].endswith("quote-expired"), refused.body
    form = await api.request(
        "POST",
        f"/api/quotes/{token_of(quote)}/checkout",
        key="",
        data=b"",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status == 410 and "expired" in form.body


async def test_recall_edit_and_publish_again_at_the_same_address(api, buyer):
    await advance(api, at("2027-03-10"))
    parties = await crm_parties(api)
    created = (await api.post("/v1/quotes", quote_body(parties))).body
    first = (await publish(api, created["id"])).body
    token = token_of(first)
    opened = await api.request("POST", f"/api/quotes/{token}/checkout", key="")
    assert opened.status == 201

    # a published quote is not edited in place
    refused = await api.patch(f"/v1/quotes/{first['id']}", {"title": "Changed"})
    assert refused.status == 409, refused.body

    recalled = await api.post(f"/v1/quotes/{first['id']}/recall")
    assert recalled.status == 200 and recalled.body["status"] == "draft", recalled.body
    page = await api.request("GET", f"/quotes/{token}", key="")
    assert "being revised" in page.body and "Check out</button>" not in page.body
    assert (await api.request("POST", f"/api/quotes/{token}/checkout", key="")).status == 409
    buyer.token = opened.body["session_token"]
    closed = await buyer.view()  # the old session was closed with the recall
    assert closed.status == 200 and closed.body["status"] == "expired", closed.body

    edited = await api.patch(
        f"/v1/quotes/{first['id']}",
        {"line_items": [{"name": "Set-up, extended", "quantity": 1, "unit_amount": 65000}], "title": "Revised"},
    )
    assert edited.status == 200, edited.body
    second = (await publish(api, first["id"])).body
    assert (second["status"], second["version"], second["url"]) == ("published", 2, first["url"])
    page = await api.request("GET", f"/quotes/{token}", key="")
    assert "Set-up, extended" in page.body and "Revised" in page.body and "version 2" in page.body
    assert second["summary"]["total_due_now"] == 65000


async def test_publishing_validates_the_quote(api):
    await advance(api, at("2027-03-10"))
    parties = await crm_parties(api)
    # once checkout knows the parties (a valid quote publishes), each publish answers at once
    valid = (await api.post("/v1/quotes", quote_body(parties))).body
    assert (await publish(api, valid["id"])).status == 200

    async def problems(**overrides: Any) -> list[dict]:
        created = await api.post("/v1/quotes", quote_body(parties, **overrides))
        assert created.status == 201, created.body
        got = await api.post(f"/v1/quotes/{created.body['id']}/publish")
        assert got.status == 422, got.body
        return got.body["errors"]

    missing = await problems(owner_email=None, deal_id=None, expires_on=None)
    assert {e["field"] for e in missing} == {"owner_email", "deal_id", "expires_on"}
    past = await problems(expires_on="2027-03-09")
    assert past[0]["field"] == "expires_on"
    unknown = await problems(contact_id="contact_doesnotexist000000000")
    assert unknown == [{"field": "contact_id", "message": "no such contact"}]
    below = await problems(line_items=[{"name": "Sticker", "quantity": 1, "unit_amount": 10}])
    assert "must be at least $0.50" in below[0]["message"]
    later = await problems(
        line_items=[
            {
                "name": "Plan",
                "quantity": 1,
                "unit_amount": 900,
                "recurring": {"interval": "monthly", "start": {"delay_days": 30}},
            }
        ]
    )
    assert "nothing would be" in later[0]["message"]
    discounted = await problems(discount={"name": "All of it", "percent_off": "100"})
    assert "must be at least $0.50" in discounted[0]["message"]
    # items are validated as they are saved: a zero net price and a refused currency
    zero = await api.post(
        "/v1/quotes",
        quote_body(
            parties,
            line_items=[{"name": "Free", "quantity": 1, "unit_amount": 500, "unit_discount": {"amount_off": 500}}],
        ),
    )
    assert zero.status == 422 and zero.body["errors"][0]["field"] == "line_items[0].unit_discount.amount_off"
    refused = await api.post("/v1/quotes", quote_body(parties, currency="XXX"))
    assert refused.status == 422 and refused.body["errors"][0]["field"] == "currency"


async def test_a_published_quote_converts_to_subscriptions_without_online_payment(api):
    await advance(api, at("2027-03-10"))
    parties = await crm_parties(api)
    body = quote_body(
        parties,
        line_items=[
            {
                "name": "Care plan",
                "quantity": 1,
                "unit_amount": 9900,
                "recurring": {"interval": "monthly", "payments": 12},
            },
            {
                "name": "Backup",
                "quantity": 1,
                "unit_amount": 1900,
                "recurring": {"interval": "monthly", "payments": 12},
            },
        ],
    )
    quote = (await publish(api, (await api.post("/v1/quotes", body)).body["id"])).body
    converted = await api.post(
        f"/v1/quotes/{quote['id']}/convert_to_subscription",
        {"collection_method": "send_invoice", "payment_terms_days": 15},
    )
    assert converted.status == 200, converted.body
    assert converted.body["conversion"] == {
        "collection_method": "send_invoice",
        "payment_terms_days": 15,
        "start_date": "2027-03-10",
    }
    assert (await api.post(f"/v1/quotes/{quote['id']}/convert_to_subscription", {})).status == 409
    assert (await api.request("POST", f"/api/quotes/{token_of(quote)}/checkout", key="")).status == 409

    async def subscription():
        subs = [s for s in await subscriptions_of(api) if s["source"] == {"type": "quote", "id": quote["id"]}]
        return subs if subs else None

    (sub,) = await eventually(subscription, timeout=20)
    assert sub["collection"] == {"method": "send_invoice", "payment_terms_days": 15} or (
        sub["collection"]["method"] == "send_invoice" and sub["collection"]["payment_terms_days"] == 15
    )
    assert (sub["amount"], sub["payments_total"], sub["contact_id"]) == (11800, 12, parties["contact"]["id"])
    assert sub["email"] == parties["contact"]["email"] and parties["deal"]["id"] in sub["deal_ids"]
    assert [li["name"] for li in sub["line_items"]] == ["Care plan", "Backup"]
    # one-time items are not turned into subscriptions: such a quote is refused
    mixed = quote_body(parties)
    mixed["line_items"].append(
        {"name": "Plan", "quantity": 1, "unit_amount": 900, "recurring": {"interval": "monthly"}}
    )
    other = (await publish(api, (await api.post("/v1/quotes", mixed)).body["id"])).body
    refused = await api.post(f"/v1/quotes/{other['id']}/convert_to_subscription", {})
    assert refused.status == 409 and "one-time" in refused.body["detail"]
