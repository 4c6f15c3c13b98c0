"""The buyer's update-payment-method page in headless Chromium (issue 4, scope 5)."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.e2e.test_dunning import FAILS_WHEN_CHARGED, buy_monthly
from tests.support.browser import fill_card, watched_page
from tests.support.subscriptions import advance, at, update_payment_method, wait_subscription

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def test_a_past_due_buyer_sees_the_timeline_and_pays_with_a_new_card(browser, origins, api, buyer):
    sub = await buy_monthly(api, buyer, "page@example.com")
    await update_payment_method(api, buyer, sub["id"], FAILS_WHEN_CHARGED)
    await advance(api, at("2027-04-10", 1))
    await wait_subscription(api, sub["id"], status="past_due")
    url = (await api.post(f"/v1/subscriptions/{sub['id']}/payment_method_link", {})).body["url"]

    async with watched_page(browser, origins, viewport={"width": 390, "height": 844}, is_mobile=True) as (page, watch):
        await page.goto(url)
        assert await page.get_by_role("heading", name="Payment attempts").is_visible()
        assert "past due" in await page.locator("#status").inner_text()
        assert "2027-04-10: failed" in await page.locator("#attempts").inner_text()
        assert "2027-04-11" in await page.locator("#next-retry").inner_text()
        assert "canceled" in await page.locator("#final-outcome").inner_text()
        await fill_card(page, "4242424242424242")
        await page.get_by_role("button", name="Save and pay").click()
        await expect(page.locator("#message")).to_contain_text("paid", timeout=30_000)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"horizontal overflow: {width}px"
        watch.assert_clean()

    recovered = await wait_subscription(api, sub["id"], status="active")
    assert recovered["payments_made"] == 2 and recovered["next_payment_date"] == "2027-05-10"


async def test_an_unknown_link_is_a_plain_404_page(http, stack):
    async with http.get(f"{stack.config.base_url}/billing/payment-method/not-a-real-token") as r:
        assert r.status == 404 and r.content_type == "text/html"
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
