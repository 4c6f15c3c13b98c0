"""Discount-code redemptions at checkout (PRODUCT §3.1, decisions "Discount codes are
reserved before the charge").

A code's redemption is reserved in the transaction that claims the charge, so a code
with one redemption left is never sold twice; a declined card gives the reservation
back; the paid session's redemption carries its payment.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.client import Buyer
from tests.support.processor import THREE_D_SECURE_CARD, TestProcessor

pytestmark = pytest.mark.e2e

DECLINED_WHEN_CHARGED = "4000000000000341"


def new_buyer(http, stack) -> Buyer:
    return Buyer(http, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")


@pytest.fixture
async def shop(api) -> dict:
    link = await api.post(
        "/v1/payment_links",
        {
            "name": "Code shop",
            "currency": "USD",
            "line_items": [{"name": "Lamp", "quantity": 1, "unit_amount": 10_000}],
            "allow_discount_codes": True,
        },
    )
    assert link.status == 201, link.body
    code_name = "ONCE" + uuid.uuid4().hex[:6].upper()
    code = await api.post("/v1/discount_codes", {"code": code_name, "percent_off": "25", "max_redemptions": 1})
    assert code.status == 201, code.body
    return {"link": link.body, "code": code.body}


async def submit_with_code(buyer: Buyer, link: dict, code: str | None, email: str):
    await buyer.open(link["url"])
    extra = {"discount_code": code} if code else {}
    submitted = await buyer.submit({"email": email}, **extra)
    assert submitted.status == 200, submitted.body
    return submitted


async def times_redeemed(api, code: dict) -> int:
    r = await api.get(f"/v1/discount_codes/{code['id']}")
    assert r.status == 200, r.body
    return r.body["times_redeemed"]


async def test_the_last_redemption_is_sold_once_and_the_other_buyer_pays_full_price(api, http, stack, shop):
    first, second = new_buyer(http, stack), new_buyer(http, stack)
    code = shop["code"]["code"]
    # Both buyers applied the code while it had one redemption left.
    s1 = await submit_with_code(first, shop["link"], code, "first@example.com")
    s2 = await submit_with_code(second, shop["link"], code, "second@example.com")
    assert s1.body["summary"]["total_due_now"] == s2.body["summary"]["total_due_now"] == 7_500
    for buyer, submitted in ((first, s1), (second, s2)):
        confirmed = await buyer.confirm_card(submitted.body["payment"]["client_secret"])
        assert confirmed["http_status"] == 200, confirmed

    paid = await first.complete()
    assert paid.status == 200, paid.body
    refused = await second.complete()
    assert refused.status == 422, refused.body
    assert [e["field"] for e in refused.body["errors"]] == ["discount_code"]
    assert "used up" in refused.body["errors"][0]["message"]
    assert await times_redeemed(api, shop["code"]) == 1

    # Nothing was charged for the refused attempt: the only payment is the first buyer's.
    payments = await api.get("/v1/payments?limit=100")
    assert [p["amount"] for p in payments.body["data"]] == [7_500]

    # The second buyer checks out again without the code and pays the full price.
    again = await second.submit({"email": "second@example.com"})
    assert again.status == 200 and again.body["summary"]["total_due_now"] == 10_000, again.body
    confirmed = await second.confirm_card(again.body["payment"]["client_secret"])
    assert confirmed["http_status"] == 200, confirmed
    done = await second.complete()
    assert done.status == 200, done.body
    full = await api.get(f"/v1/payments/{done.body['payment_id']}")
    assert full.body["amount"] == 10_000
    assert await times_redeemed(api, shop["code"]) == 1


async def test_a_declined_card_gives_the_redemption_back(api, http, stack, shop):
    declined, other = new_buyer(http, stack), new_buyer(http, stack)
    code = shop["code"]["code"]
    s1 = await submit_with_code(declined, shop["link"], code, "declined@example.com")
    confirmed = await declined.confirm_card(s1.body["payment"]["client_secret"], DECLINED_WHEN_CHARGED)
    assert confirmed["http_status"] == 200, confirmed
    refused = await declined.complete()
    assert refused.status == 402 and refused.body["status"] == "declined", refused.body
    assert await times_redeemed(api, shop["code"]) == 0

    # Another buyer can now use the code...
    s2 = await submit_with_code(other, shop["link"], code, "other@example.com")
    await other.confirm_card(s2.body["payment"]["client_secret"])
    paid = await other.complete()
    assert paid.status == 200, paid.body
    assert (await api.get(f"/v1/payments/{paid.body['payment_id']}")).body["amount"] == 7_500
    assert await times_redeemed(api, shop["code"]) == 1

    # ...and the declined buyer, trying another card in the same session, is told it is gone.
    retry = await declined.submit({"email": "declined@example.com"}, discount_code=code)
    assert retry.status == 422, retry.body
    assert [e["field"] for e in retry.body["errors"]] == ["discount_code"]


async def test_completing_twice_redeems_once(api, http, stack, shop):
    buyer = new_buyer(http, stack)
    submitted = await submit_with_code(buyer, shop["link"], shop["code"]["code"], "twice@example.com")
    await buyer.confirm_card(submitted.body["payment"]["client_secret"])
    first = await buyer.complete()
    second = await buyer.complete()
    assert first.status == second.status == 200, (first.body, second.body)
    assert first.body["payment_id"] == second.body["payment_id"]
    assert await times_redeemed(api, shop["code"]) == 1


async def test_a_session_abandoned_during_authentication_gives_its_redemption_back_once_expired(api, http, stack, shop):
    from datetime import UTC, datetime, timedelta

    gone, later = new_buyer(http, stack), new_buyer(http, stack)
    code = shop["code"]["code"]
    s1 = await submit_with_code(gone, shop["link"], code, "gone@example.com")
    secret = s1.body["payment"]["client_secret"]
    processor = TestProcessor(http, gone.processor_url)
    confirmed = await processor.confirm_card_setup(secret, THREE_D_SECURE_CARD)
    assert confirmed["status"] == "succeeded", confirmed
    waiting = await gone.complete()
    assert waiting.status == 402 and waiting.body["status"] == "requires_action", waiting.body
    assert await times_redeemed(api, shop["code"]) == 1  # reserved while the buyer authenticates

    # Before the abandoned session expires, the code is taken.
    await later.open(shop["link"]["url"])
    assert (await later.submit({"email": "later@example.com"}, discount_code=code)).status == 422

    # The buyer never comes back; once the session has expired, the code is usable again.
    now = datetime.fromisoformat((await api.get("/v1/test_clock")).body["now"].replace("Z", "+00:00"))
    moved = await api.post("/v1/test_clock/advance", {"to": (now + timedelta(hours=25)).astimezone(UTC).isoformat()})
    assert moved.status == 200, moved.body
    s2 = await submit_with_code(later, shop["link"], code, "later@example.com")
    await later.confirm_card(s2.body["payment"]["client_secret"])
    paid = await later.complete()
    assert paid.status == 200, paid.body
    assert (await api.get(f"/v1/payments/{paid.body['payment_id']}")).body["amount"] == 7_500
    assert await times_redeemed(api, shop["code"]) == 1
