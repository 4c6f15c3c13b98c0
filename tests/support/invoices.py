"""Invoices on the test clock through the real services: a subscription collected by
invoice, its invoices, and paying one online as a buyer does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.config import CommonSettings
from shared.db import create_pool, tenant_tx
from shared.ids import new_id
from tests.support.sources import pay_through_button
from tests.support.waiting import eventually


async def create_subscription(stack, account_id: str, api, **overrides: Any) -> dict:
    """A subscription made the way the API will make one: `service.create` in a tenant
    transaction (publishes ``subscription.updated``), then read back through the API."""
    from services.billing.subscriptions import service as subscriptions

    clock = await api.get("/v1/test_clock")
    now = datetime.fromisoformat(clock.body["now"].replace("Z", "+00:00")).astimezone(UTC)
    unit = overrides.pop("unit_amount", 12345)
    tax = overrides.pop("tax", 0)
    start = overrides.pop("start_date")
    row = {
        "id": new_id("sub"),
        "account_id": account_id,
        "status": "scheduled" if start > now.date() else "active",
        "currency": "USD",
        "interval": "annually",
        "start_date": start,
        "payments_total": None,
        "payments_made": 0,
        "end_date": None,
        "next_index": 0,
        "next_payment_date": start,
        "amount": unit + tax,
        "subtotal": unit,
        "tax": tax,
        "line_items": [
            {
                "name": "Support plan",
                "description": None,
                "quantity": 1,
                "unit_amount": unit,
                "unit_discount": 0,
                "amount": unit,
                "tax": tax,
                "tax_rate": {"id": "txr_test", "name": "VAT", "percentage": "25"} if tax else None,
            }
        ],
        "email": "payer@example.com",
        "contact": {"email": "payer@example.com", "firstname": "Pat", "lastname": "Payer"},
        "billing_address": {
            "line1": "1 Main St",
            "city": "Springfield",
            "state": "IL",
            "postal_code": "62701",
            "country": "US",
        },
        "collection_method": "send_invoice",
        "payment_terms_days": 30,
        "invoice_settings": {},
        "source_type": "api",
        "source_id": "",
        "metadata": {},
        "test_mode": True,
        "created_at": now,
        "updated_at": now,
        **overrides,
    }
    settings = CommonSettings(
        secret_key=stack.env["COMMERCE_SECRET_KEY"], public_base_url=stack.config.base_url, environment="test"
    )
    pool = await create_pool(stack.env["BILLING_DATABASE_URL"], application_name="e2e-invoices", min_size=1, max_size=1)
    try:
        async with tenant_tx(pool, account_id) as conn:
            created = await subscriptions.create(conn, settings, row, now)
    finally:
        await pool.close()
    assert created is not None
    got = await api.get(f"/v1/subscriptions/{created['id']}")
    assert got.status == 200, got.body
    return got.body


async def invoices_of(api, sub_id: str) -> list[dict]:
    listed = await api.get(f"/v1/invoices?subscription_id={sub_id}&limit=100")
    assert listed.status == 200, listed.body
    return sorted(listed.body["data"], key=lambda i: i["number"])


async def wait_invoice(api, invoice_id: str, timeout: float = 20.0, **expected: Any) -> dict:
    async def probe():
        body = (await api.get(f"/v1/invoices/{invoice_id}")).body
        return body if all(body.get(k) == v for k, v in expected.items()) else None

    try:
        return await eventually(probe, timeout=timeout)
    except AssertionError:
        current = (await api.get(f"/v1/invoices/{invoice_id}")).body
        raise AssertionError(f"invoice never reached {expected}; now {current}") from None


def page_path(invoice: dict) -> str:
    path = "/" + invoice["url"].split("://", 1)[1].split("/", 1)[1]
    assert path.startswith("/invoices/")
    return path


async def open_checkout(api, invoice: dict):
    token = page_path(invoice).rsplit("/", 1)[1]
    return await api.request("POST", f"/api/invoices/{token}/checkout", key="")


async def pay_online(buyer, api, invoice: dict, email: str = "payer@example.com") -> dict:
    """The buyer presses "Pay online" on the page (the JSON form of it) and pays with a card."""
    token = page_path(invoice).rsplit("/", 1)[1]
    view, done = await pay_through_button(api, buyer, f"/api/invoices/{token}/checkout", email)
    assert view["summary"]["total_due_now"] == invoice["amount_due"]
    return done
