"""The real checkout page in headless Chromium, against the whole stack (PRODUCT §4.1).

The page loads the test processor's Stripe.js stand-in, whose card element is plain
inputs and whose 3-D Secure step is a modal with "Complete authentication" / "Fail
authentication". Every flow also checks that the console shows no CSP violation, that
no script error escaped, and that the page asked nothing of any origin other than ours
and the test processor's.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.support.browser import (
    DECLINED_WHEN_CHARGED,
    TEST_CARD,
    THREE_D_SECURE,
    card_input,
    fill_card,
    fill_details,
    finish,
    open_link,
    overflow,
    pay_on_page,
    watched_page,
)
from tests.support.client import Api, read_mail
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PHONE = {"viewport": {"width": 375, "height": 667}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PAY = re.compile(r"^Pay\b")


async def only_payment(api) -> dict:
    async def succeeded():
        listed = await api.get("/v1/payments")
        return [p for p in listed.body["data"] if p["status"] == "succeeded"]

    (payment,) = await eventually(succeeded, timeout=30)
    listed = await api.get("/v1/payments")
    assert len(listed.body["data"]) == 1, listed.body
    return payment


async def sent_receipt(api, stack, to: str, payment_id: str) -> None:
    async def sent():
        r = await api.get("/v1/emails?kind=receipt")
        return [e for e in r.body["data"] if e["status"] == "sent"]

    (email,) = await eventually(sent, timeout=45)
    assert email["to"] == to and email["payment_id"] == payment_id
    messages = [m for m in read_mail(stack.config.mail_dir) if m["Message-ID"] == email["message_id"]]
    assert len(messages) == 1, "the receipt is not in the mail sink"
    assert messages[0]["To"] == to
    assert "$25.00" in messages[0]["Subject"]


async def test_buying_with_the_test_card_on_the_real_page(browser, origins, stack, api, link):
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        assert await page.get_by_role("heading", name="Your order").is_visible()
        assert await page.get_by_role("button", name=PAY).inner_text() == "Pay $25.00"
        authentications = await pay_on_page(page, "grace.hopper@example.com", firstname="Grace", lastname="Hopper")
        assert authentications == 0
        assert await page.locator("#pay-form").is_hidden()
        watch.assert_clean()

    payment = await only_payment(api)
    assert payment["amount"] == 2500 and payment["currency"] == "USD"
    assert payment["source"] == {"type": "payment_link", "id": link["id"]}
    await sent_receipt(api, stack, "grace.hopper@example.com", payment["id"])

    async def contact():
        r = await api.get("/v1/contacts?email=grace.hopper@example.com")
        return r.body["data"]

    (person,) = await eventually(contact, timeout=30)
    assert (person["firstname"], person["lastname"]) == ("Grace", "Hopper")


async def test_a_card_declined_when_charged_shows_a_message_and_another_card_pays(browser, origins, api, link):
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        session_url = page.url
        await fill_details(page, "declined@example.com")
        await fill_card(page, DECLINED_WHEN_CHARGED)
        pay = page.get_by_role("button", name=PAY)
        await pay.click()
        alert = page.get_by_role("alert")
        await alert.filter(has_text="try another card").wait_for()
        assert "declined" in (await alert.inner_text()).lower()
        assert await pay.is_enabled()
        assert await page.locator("#confirmation").is_hidden()
        assert (await api.get("/v1/payments")).body["data"] == []

        await card_input(page, "number").fill(TEST_CARD)
        await pay.click()
        assert await finish(page) == 0
        assert page.url == session_url
        assert await page.locator("#form-error").text_content() == ""
        watch.assert_clean()
    await only_payment(api)


async def test_a_three_d_secure_card_completes_after_authentication(browser, origins, api, link):
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        await fill_details(page, "secure@example.com")
        await fill_card(page, THREE_D_SECURE)
        await page.get_by_role("button", name=PAY).click()
        authentications = await finish(page)
        assert authentications >= 1
        watch.assert_clean()
    payment = await only_payment(api)
    assert payment["amount"] == 2500


async def test_a_failed_authentication_can_be_retried(browser, origins, api, link):
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        await fill_details(page, "secure-retry@example.com")
        await fill_card(page, THREE_D_SECURE)
        pay = page.get_by_role("button", name=PAY)
        await pay.click()
        await page.get_by_role("button", name="Fail authentication").click()
        await page.locator("#form-error:not(:empty), #error-card:not(:empty)").first.wait_for()
        assert await pay.is_enabled()
        assert (await api.get("/v1/payments")).body["data"] == []
        await pay.click()
        assert await finish(page) >= 1
        watch.assert_clean()
    await only_payment(api)


LONG_NAMES_LINK = {
    "name": "Long names",
    "currency": "USD",
    "line_items": [
        {
            "name": "Single-origin Yirgacheffe coffee beans (whole bean, roasted this week), 1 kg",
            "description": "Reference YIRGACHEFFE-WASHED-GRADE1-2024-HARVEST-LOT-0042-WHOLEBEAN",
            "quantity": 2,
            "unit_amount": 1250,
        },
        {"name": "Kaffeeröstereibedarfsverpackungsmaterialzuschlag", "quantity": 1, "unit_amount": 500},
    ],
}


async def test_a_phone_sized_viewport_can_buy_without_horizontal_overflow(browser, origins, stack, http, new_account):
    account = new_account("Kaffeeröstereiundkonditoreigesellschaft Müller & Töchter")
    api = Api(http, stack.config.base_url, account["api_key"])
    created = await api.post("/v1/payment_links", LONG_NAMES_LINK)
    assert created.status == 201, created.body
    async with watched_page(browser, origins, **PHONE) as (page, watch):
        await open_link(page, created.body["url"])
        assert await page.evaluate("() => window.innerWidth") == 375
        assert await overflow(page) == {"scroll": 0, "wide": []}
        if shots := os.environ.get("COMMERCE_TEST_SCREENSHOTS"):
            await page.screenshot(path=f"{shots}/checkout-phone.png", full_page=True)
        pay = page.get_by_role("button", name=PAY)
        box = await pay.bounding_box()
        assert box["height"] >= 44 and box["width"] >= 300  # a comfortable target for a thumb
        for name in ("number", "exp_month", "exp_year", "cvc", "postal_code"):
            field_box = await card_input(page, name).bounding_box()
            assert field_box["height"] >= 40, (name, field_box)
        await fill_details(page, "phone@example.com", "Ada", "Lovelace")
        await fill_card(page, TEST_CARD)
        await pay.tap()
        await finish(page)
        assert await overflow(page) == {"scroll": 0, "wide": []}
        if shots := os.environ.get("COMMERCE_TEST_SCREENSHOTS"):
            await page.screenshot(path=f"{shots}/checkout-phone-confirmed.png", full_page=True)
        watch.assert_clean()
    await only_payment(api)


async def test_every_field_and_the_pay_button_are_labelled_and_reachable_with_tab(browser, origins, api, link):
    expected = [
        ("textbox", "Email"),
        ("textbox", "First name"),
        ("textbox", "Last name"),
        ("textbox", "Card number"),
        ("textbox", "Expiry month (MM)"),
        ("textbox", "Expiry year (YY)"),
        ("textbox", "Security code (CVC)"),
        ("textbox", "Postal code"),
        ("button", "Pay $25.00"),
    ]
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        assert await page.get_by_role("group", name="Card").count() == 1
        await page.evaluate("() => document.activeElement && document.activeElement.blur()")
        for role, name in expected:
            await page.keyboard.press("Tab")
            target = page.get_by_role(role, name=name, exact=True)
            assert await target.count() == 1, f"nothing is labelled {name!r}"
            focused = await target.evaluate("el => el === document.activeElement")
            actual = await page.evaluate("() => document.activeElement.outerHTML.slice(0, 160)")
            assert focused, f"Tab should reach {name!r}, is on {actual}"

        # Pay by keyboard alone: type into each field, then Enter on the Pay button.
        await page.get_by_label("Email").focus()
        await page.keyboard.type("keys@example.com")
        for name, value in (("number", TEST_CARD), ("exp_month", "12"), ("exp_year", "34"), ("cvc", "123")):
            await card_input(page, name).focus()
            await page.keyboard.type(value)
        await page.get_by_role("button", name=PAY).focus()
        await page.keyboard.press("Enter")
        await finish(page)
        confirmed = await page.evaluate("() => document.activeElement.id")
        assert confirmed == "confirmation", "focus moves to the confirmation for screen readers"
        watch.assert_clean()
    await only_payment(api)


async def test_the_policy_is_strict_and_a_violation_would_be_seen(browser, origins, stack, link):
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        response = await page.goto(link["url"])
        csp = await response.header_value("content-security-policy")
        assert csp is not None and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if " " in d.strip())
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == f"'self' http://127.0.0.1:{stack.config.ports.test_processor}"
        assert directives["style-src"] == "'self'"
        await card_input(page, "number").wait_for()
        assert watch.csp_violations() == []
        # The detector itself works: an inline script and an inline style are refused and reported.
        await page.evaluate(
            """() => {
              const s = document.createElement("script");
              s.textContent = "window.__inline = 1";
              document.body.appendChild(s);
              const st = document.createElement("style");
              st.textContent = "body { color: red }";
              document.head.appendChild(st);
            }"""
        )
        await page.wait_for_timeout(300)
        assert await page.evaluate("() => window.__inline") is None
        assert len(watch.csp_violations()) >= 2, watch.console
        assert watch.foreign_requests() == []


async def test_errors_are_shown_next_to_their_field(browser, origins, api, link):
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        email = page.get_by_label("Email")
        pay = page.get_by_role("button", name=PAY)

        # Nothing typed into the card fields yet.
        await email.fill("ok@example.com")
        await pay.click()
        card_error = page.locator("#error-card")
        await card_error.filter(has_text=re.compile(r"\S")).wait_for()
        assert "card" in (await card_error.text_content()).lower()
        assert "undefined" not in (await card_error.text_content())

        await fill_card(page, TEST_CARD)
        await email.fill("not-an-email")
        await pay.click()
        slot = page.locator("#error-contact-email")
        await slot.filter(has_text=re.compile(r"\S")).wait_for()
        assert await email.get_attribute("aria-invalid") == "true"
        described = await email.get_attribute("aria-describedby")
        assert "error-contact-email" in described.split()
        assert await card_error.text_content() == ""

        await card_input(page, "number").fill("4242")
        await email.fill("ok@example.com")
        await pay.click()
        await card_error.filter(has_text=re.compile(r"\S")).wait_for()
        assert await slot.text_content() == "" and await email.get_attribute("aria-invalid") is None
        assert (await api.get("/v1/payments")).body["data"] == []

        await fill_card(page, TEST_CARD)
        await pay.click()
        await finish(page)
        watch.assert_clean()
    await only_payment(api)
