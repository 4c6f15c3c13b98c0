"""The processor customer of a purchase (PRODUCT §4.2): found by the buyer's e-mail, or
created with the e-mail and the company name — or, without a company, first + last name.
Checked at the test processor itself (the Stripe API the adapter talks to)."""

from __future__ import annotations

import uuid

import pytest

from tests.support.client import Buyer
from tests.support.processor import TestProcessor

pytestmark = pytest.mark.e2e


def unique_email(tag: str) -> str:
    return f"{tag}.{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def processor(http, stack) -> TestProcessor:
    return TestProcessor(http, f"http://127.0.0.1:{stack.config.ports.test_processor}")


@pytest.fixture
async def link(api) -> dict:
    created = await api.post(
        "/v1/payment_links",
        {
            "name": "Customer link",
            "currency": "USD",
            "line_items": [{"name": "Tea", "quantity": 1, "unit_amount": 1500}],
            "contact_fields": [{"property": p} for p in ("firstname", "lastname", "company")],
        },
    )
    assert created.status == 201, created.body
    return created.body


async def customers_with(processor: TestProcessor, email: str) -> list[dict]:
    return (await processor.get(f"/v1/customers?email={email}&limit=10"))["data"]


async def customer_of(api, processor: TestProcessor, payment_id: str) -> str:
    payment = (await api.get(f"/v1/payments/{payment_id}")).body
    return (await processor.intent(payment["processor_payment_id"]))["customer"]


async def test_a_returning_buyer_is_found_by_email_and_a_new_one_is_created_with_a_name(
    api, link, http, stack, processor
):
    def new_buyer() -> Buyer:
        return Buyer(http, stack.config.base_url, processor.base_url)

    buyer = new_buyer()
    company_buyer = unique_email("company")
    paid = await buyer.pay(link["url"], company_buyer, firstname="Ann", lastname="Lind", company="Lind & Co")
    assert paid.status == 200, paid.body
    (created,) = await customers_with(processor, company_buyer)
    assert (created["email"], created["name"]) == (company_buyer, "Lind & Co")  # the company's name wins
    assert await customer_of(api, processor, paid.body["payment_id"]) == created["id"]

    # the same buyer again, under another name: the existing customer is charged, none is added
    again = await new_buyer().pay(link["url"], company_buyer, firstname="Annie")
    assert again.status == 200, again.body
    assert [c["id"] for c in await customers_with(processor, company_buyer)] == [created["id"]]
    assert await customer_of(api, processor, again.body["payment_id"]) == created["id"]

    person = unique_email("person")
    paid = await new_buyer().pay(link["url"], person, firstname="Bo", lastname="Ek")
    assert paid.status == 200, paid.body
    (made,) = await customers_with(processor, person)
    assert (made["email"], made["name"]) == (person, "Bo Ek")
    assert made["id"] != created["id"]
    assert await customer_of(api, processor, paid.body["payment_id"]) == made["id"]
