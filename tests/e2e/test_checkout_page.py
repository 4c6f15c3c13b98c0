"""Every control of the checkout page (PRODUCT §4.1) in headless Chromium, against the
whole stack: optional items, quantity steppers, buyer-chosen amounts, contact fields from
the link, billing and shipping addresses, discount codes, the checkout text and both
kinds of confirmation — by mouse, by keyboard and on a phone.

The page shows only numbers the server computed (``POST /api/checkout/{token}/summary``
while the buyer changes a choice); each test then reads the result through the API: the
payment (``GET /v1/payments/{id}``: amount, addresses), the priced lines the session was
paid for (``GET /api/checkout/{token}``) and, where it says more, the receipt.
"""

from __future__ import annotations

import os
import re
import socket

import pytest
from aiohttp import web
from playwright.async_api import expect

from tests.support.browser import TEST_CARD, card_input, fill_card, finish, open_link, overflow, watched_page
from tests.support.client import Api, read_mail
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 3}
PAY = re.compile(r"^Pay\b")


# -- helpers -------------------------------------------------------------------------------
async def new_link(api: Api, body: dict) -> dict:
    created = await api.post("/v1/payment_links", {"currency": "USD", **body})
    assert created.status == 201, created.body
    return created.body


def token_of(page) -> str:
    return page.url.rsplit("/checkout/", 1)[1].split("?", 1)[0]


def total(page):
    return page.locator('[data-summary="total_due_now"]')


def row(page, name: str):
    return page.locator("[data-item]").filter(has_text=name)


async def pay(page, email: str | None = None) -> None:
    """Fill the e-mail (when given) and the test card, press Pay, see the confirmation."""
    if email is not None:
        await page.get_by_label("Email").fill(email)
    await fill_card(page, TEST_CARD)
    await page.get_by_role("button", name=PAY).click()
    await finish(page)


async def paid(api: Api, token: str) -> tuple[dict, dict]:
    """The payment of a completed session, and the summary it was charged for."""
    view = await api.get(f"/api/checkout/{token}")
    assert view.status == 200 and view.body["status"] == "complete", view.body
    payment = await api.get(f"/v1/payments/{view.body['payment_id']}")
    assert payment.status == 200, payment.body
    assert payment.body["status"] == "succeeded"
    return payment.body, view.body["summary"]


def lines(summary: dict) -> dict[str, tuple[int, int]]:
    """name -> (quantity, unit amount) of the lines charged."""
    return {line["name"]: (line["quantity"], line["unit_amount"]) for line in summary["lines"]}


async def receipt(api: Api, stack, payment_id: str) -> str:
    """The text of the receipt e-mail of a payment, as the mail sink received it."""

    async def sent():
        r = await api.get("/v1/emails?kind=receipt")
        return [e for e in r.body["data"] if e["status"] == "sent" and e["payment_id"] == payment_id]

    (email,) = await eventually(sent, timeout=45)
    (message,) = [m for m in read_mail(stack.config.mail_dir) if m["Message-ID"] == email["message_id"]]
    return message.get_body(preferencelist=("plain",)).get_content()


async def error_text(page, slot_id: str) -> str:
    slot = page.locator(f"#{slot_id}")
    await expect(slot).to_have_text(re.compile(r"\S"))
    return (await slot.text_content()).strip()


async def focused_id(page) -> str:
    return await page.evaluate("() => document.activeElement && document.activeElement.id")


# -- (a) optional items and quantities ---------------------------------------------------------
CHOICES_LINK = {
    "name": "Coffee with extras",
    "line_items": [
        {"name": "Coffee beans, 1 kg", "unit_amount": 1250, "adjustable_quantity": {"minimum": 1, "maximum": 5}},
        {"name": "Gift wrap", "unit_amount": 300, "optional": True},
        {"name": "Enamel mug", "unit_amount": 800, "optional": True},
    ],
}


async def test_an_optional_item_left_out_and_a_quantity_changed(browser, origins, stack, api):
    link = await new_link(api, CHOICES_LINK)
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        token = token_of(page)
        # The optional items start unselected, each with its (server-formatted) price.
        await expect(total(page)).to_have_text("$12.50")
        for name in ("Gift wrap", "Enamel mug"):
            assert not await page.get_by_role("checkbox", name=re.compile(name)).is_checked()
            await expect(row(page, name).locator("[data-line-amount]")).to_have_text("Not added")

        await page.get_by_role("checkbox", name=re.compile("Enamel mug")).check()
        await expect(total(page)).to_have_text("$20.50")
        await expect(row(page, "Enamel mug").locator("[data-line-amount]")).to_have_text("$8.00")

        quantity = page.get_by_role("spinbutton", name="Quantity of Coffee beans, 1 kg")
        assert await quantity.input_value() == "1"
        assert (await quantity.get_attribute("min"), await quantity.get_attribute("max")) == ("1", "5")
        increase = page.get_by_role("button", name="Increase quantity of Coffee beans, 1 kg")
        decrease = page.get_by_role("button", name="Decrease quantity of Coffee beans, 1 kg")
        assert await decrease.get_attribute("aria-disabled") == "true"  # at the minimum
        await increase.click()
        await increase.click()
        await expect(quantity).to_have_value("3")
        await expect(total(page)).to_have_text("$45.50")
        await expect(row(page, "Coffee beans").locator("[data-line-amount]")).to_have_text("$37.50")
        await expect(page.get_by_role("button", name=PAY)).to_have_text("Pay $45.50")

        # Past the maximum: the buttons stop at it; a typed value is refused by the server.
        await increase.click()
        await increase.click()
        await expect(quantity).to_have_value("5")
        assert await increase.get_attribute("aria-disabled") == "true"
        await increase.click(force=True)  # at the maximum: nothing happens
        await expect(quantity).to_have_value("5")
        await quantity.fill("9")
        message = await error_text(page, "error-item-0-quantity")
        assert "between 1 and 5" in message
        assert await quantity.get_attribute("aria-invalid") == "true"
        await quantity.fill("3")
        await expect(page.locator("#error-item-0-quantity")).to_have_text("")
        await expect(total(page)).to_have_text("$45.50")

        await pay(page, "extras@example.com")
        watch.assert_clean()

    payment, summary = await paid(api, token)
    assert payment["amount"] == 4550 and payment["currency"] == "USD"
    assert lines(summary) == {"Coffee beans, 1 kg": (3, 1250), "Enamel mug": (1, 800)}
    assert summary["total_due_now"] == 4550
    text = await receipt(api, stack, payment["id"])
    assert "Coffee beans, 1 kg: 3 × $12.50 = $37.50" in text
    assert "Enamel mug" in text and "Gift wrap" not in text


# -- (b) a price the buyer chooses --------------------------------------------------------------
DONATION = {
    "name": "Donation",
    "line_items": [{"name": "Donation", "unit_amount": 2500, "custom_amount": {"minimum": 500, "maximum": 50000}}],
}


async def test_a_custom_amount_is_typed_in_major_units_and_charged_exactly(browser, origins, http, stack, api):
    link = await new_link(api, DONATION)
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        token = token_of(page)
        amount = page.get_by_role("textbox", name="Your amount (USD) for Donation")
        assert await amount.input_value() == "25.00"  # the suggested amount
        help_id = "help-item-0-amount"
        assert help_id in (await amount.get_attribute("aria-describedby")).split()
        await expect(page.locator(f"#{help_id}")).to_have_text("Between $5.00 and $500.00")
        await expect(total(page)).to_have_text("$25.00")

        # Converted on the page without floating point; too many decimals never leave it.
        await amount.fill("12.345")
        assert "at most 2 decimals" in await error_text(page, "error-item-0-amount")
        # Out of the bounds: the server says so, beside the field.
        await amount.fill("600")
        assert "between $5.00 and $500.00" in await error_text(page, "error-item-0-amount")
        assert await amount.get_attribute("aria-invalid") == "true"
        await amount.fill("42,5")  # either decimal separator
        await expect(total(page)).to_have_text("$42.50")
        await expect(page.locator("#error-item-0-amount")).to_have_text("")
        await amount.fill("19.99")  # 19.99 * 100 is 1998.9999… in floating point
        await expect(total(page)).to_have_text("$19.99")

        await pay(page, "donor@example.com")
        watch.assert_clean()

    payment, summary = await paid(api, token)
    assert payment["amount"] == 1999
    assert lines(summary) == {"Donation": (1, 1999)}

    # A zero-decimal currency: whole amounts only, exactly as typed.
    assert (await api.patch("/v1/account", {"currencies": ["USD", "JPY"]})).status == 200
    yen = await new_link(
        api,
        {
            "currency": "JPY",
            "line_items": [{"name": "Tip", "unit_amount": 1000, "custom_amount": {"minimum": 100, "maximum": 100000}}],
        },
    )
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, yen["url"])
        amount = page.get_by_role("textbox", name="Your amount (JPY) for Tip")
        assert await amount.input_value() == "1000"
        await amount.fill("1500.5")
        assert "whole amount" in await error_text(page, "error-item-0-amount")
        await amount.fill("1500")
        await expect(total(page)).to_have_text("¥1,500")
        await expect(page.get_by_role("button", name=PAY)).to_have_text("Pay ¥1,500")
        watch.assert_clean()


# -- (c) discount codes ----------------------------------------------------------------------------
async def test_a_discount_code_lowers_the_total_shown_and_charged(browser, origins, stack, api):
    code = await api.post("/v1/discount_codes", {"code": "ROAST10", "percent_off": "10"})
    assert code.status == 201, code.body
    link = await new_link(
        api,
        {
            "allow_discount_codes": True,
            "line_items": [{"name": "Coffee beans, 1 kg", "quantity": 2, "unit_amount": 1250}],
        },
    )
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        token = token_of(page)
        field = page.get_by_role("textbox", name="Discount code")
        apply = page.get_by_role("button", name="Apply")
        await expect(total(page)).to_have_text("$25.00")

        await field.fill("NOPE")
        await apply.click()
        message = await error_text(page, "error-discount-code")
        assert "unknown" in message.lower()
        assert await field.get_attribute("aria-invalid") == "true"
        assert "error-discount-code" in (await field.get_attribute("aria-describedby")).split()
        assert await focused_id(page) == "discount-code"
        await expect(total(page)).to_have_text("$25.00")

        await field.fill("roast10")  # matched without regard to case
        await field.press("Enter")  # applies the code; does not pay
        await expect(total(page)).to_have_text("$22.50")
        await expect(page.locator("#summary-discounts")).to_have_text(re.compile(r"ROAST10\s*−\$2\.50"))
        await expect(page.locator("#discount-status")).to_have_text("Code roast10 applied.")
        assert await field.get_attribute("aria-invalid") is None
        await expect(page.get_by_role("button", name=PAY)).to_have_text("Pay $22.50")
        assert await page.locator("#confirmation").is_hidden()

        await pay(page, "saver@example.com")
        watch.assert_clean()

    payment, summary = await paid(api, token)
    assert payment["amount"] == 2250
    assert summary["subtotal_due_now"] == 2500
    assert summary["discounts_due_now"] == [{"name": "ROAST10", "amount": 250}]
    text = await receipt(api, stack, payment["id"])
    assert "Discounts: −$2.50" in text and "Total paid: $22.50" in text


async def test_a_code_typed_but_not_applied_is_priced_before_paying(browser, origins, api):
    code = {"code": "FIVEOFF", "amount_off": 500, "currency": "USD"}
    assert (await api.post("/v1/discount_codes", code)).status == 201
    link = await new_link(api, {"allow_discount_codes": True, "line_items": [{"name": "Grinder", "unit_amount": 4000}]})
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        token = token_of(page)
        await page.get_by_label("Email").fill("typed@example.com")
        await fill_card(page, TEST_CARD)
        await page.get_by_role("textbox", name="Discount code").fill("FIVEOFF")
        pay_button = page.get_by_role("button", name=PAY)
        await pay_button.click()
        # The total moved: the buyer sees it before anything is charged.
        await expect(pay_button).to_have_text("Pay $35.00")
        await expect(page.get_by_role("alert")).to_have_text(re.compile(r"total is now \$35\.00"))
        assert (await api.get("/v1/payments")).body["data"] == []
        await pay_button.click()
        await finish(page)
        watch.assert_clean()
    payment, _ = await paid(api, token)
    assert payment["amount"] == 3500


# -- (d) addresses ----------------------------------------------------------------------------------
ADDRESS_LABELS = {
    "line1": "Address line 1",
    "line2": "Address line 2",
    "city": "City",
    "state": "State / region",
    "postal_code": "Postal code",
}


async def fill_address(page, block: str, **parts) -> None:
    scope = page.locator(f"#{block}")
    for part, value in parts.items():
        if part == "country":
            await scope.get_by_role("combobox", name="Country", exact=True).select_option(value)
        else:
            await scope.get_by_role("textbox", name=ADDRESS_LABELS[part], exact=True).fill(value)


async def test_billing_and_shipping_addresses_are_collected_and_stored(browser, origins, api):
    assert (await api.patch("/v1/account", {"shipping_enabled": True})).status == 200
    link = await new_link(
        api,
        {
            "collect_billing_address": True,
            "collect_shipping_address": True,
            "line_items": [{"name": "Espresso machine", "unit_amount": 45000}],
        },
    )
    billing = {"line1": "1 Infinite Loop", "city": "Cupertino", "state": "CA", "postal_code": "95014", "country": "US"}
    shipping = {"line1": "Drottninggatan 1", "line2": "3 tr", "city": "Stockholm", "postal_code": "111 51"}
    shipping["country"] = "SE"
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        token = token_of(page)
        assert await page.get_by_role("group", name="Billing address").count() == 1
        assert await page.get_by_role("group", name="Shipping address").count() == 1
        country = page.locator("#shipping_address").get_by_role("combobox", name="Country")
        assert await country.locator("option[value=SE]").text_content() == "Sweden"

        # The billing postal code left out: the server's error shows beside it, focused.
        await page.get_by_label("Email").fill("addresses@example.com")
        await fill_address(page, "billing_address", **{k: v for k, v in billing.items() if k != "postal_code"})
        await fill_address(page, "shipping_address", **shipping)
        await fill_card(page, TEST_CARD)
        await page.get_by_role("button", name=PAY).click()
        assert await error_text(page, "error-billing_address-postal_code") == "Postal code is required."
        postal = page.locator("#billing_address-postal_code")
        assert await postal.get_attribute("aria-invalid") == "true"
        assert await focused_id(page) == "billing_address-postal_code"
        assert await page.locator("#error-shipping_address-postal_code").text_content() == ""
        assert (await api.get("/v1/payments")).body["data"] == []

        await postal.fill(billing["postal_code"])
        await page.get_by_role("button", name=PAY).click()
        await finish(page)
        watch.assert_clean()

    payment, _ = await paid(api, token)
    assert payment["amount"] == 45000
    assert payment["billing_address"] == billing
    assert payment["shipping_address"] == shipping


# -- (e) redirect and message confirmations ------------------------------------------------------------
@pytest.fixture
async def merchant_site():
    """The merchant's own "thank you" page, on a local port."""

    async def thanks(request: web.Request) -> web.Response:
        order = request.query.get("order", "")
        html = f'<!doctype html><link rel="icon" href="data:,"><title>Merchant</title><h1>Thanks, order {order}</h1>'
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/thanks", thanks)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_redirect_confirmation_ends_on_the_merchants_page(browser, origins, api, merchant_site):
    target = f"{merchant_site}/thanks?order=42"
    link = await new_link(
        api,
        {
            "after_completion": {"type": "redirect", "url": target},
            "line_items": [{"name": "Filter papers", "unit_amount": 600}],
        },
    )
    async with watched_page(browser, origins | {merchant_site}, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        token = token_of(page)
        await page.get_by_label("Email").fill("redirected@example.com")
        await fill_card(page, TEST_CARD)
        await page.get_by_role("button", name=PAY).click()
        await page.wait_for_url(target)
        assert await page.get_by_role("heading", name="Thanks, order 42").is_visible()
        watch.assert_clean()
    payment, _ = await paid(api, token)
    assert payment["amount"] == 600


# -- (f) contact fields and the checkout text --------------------------------------------------------------
CONTACT_LINK = {
    "line_items": [{"name": "Cupping class", "unit_amount": 3500}],
    "contact_fields": [
        {"property": "firstname", "label": "Given name", "required": True},
        {"property": "email"},
        {"property": "phone", "label": "Mobile", "required": True, "help_text": "Only for questions about a booking."},
        {"property": "company", "help_text": "Leave empty for a private booking."},
    ],
    "checkout_text": (
        '<p>Classes are held at <strong>the roastery</strong>. <a href="https://example.com/terms">Terms</a></p>'
        '<script>window.__injected = 1</script><img src=x onerror="window.__injected = 2">'
    ),
    "after_completion": {"type": "message", "message": "See you at the roastery!"},
}


async def test_contact_fields_follow_the_link_and_a_required_one_left_empty_is_shown(browser, origins, api):
    link = await new_link(api, CONTACT_LINK)
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        token = token_of(page)
        # In the link's order, with its labels; the e-mail is always there and required.
        fields = page.locator("#pay-form [data-contact]")
        assert await fields.evaluate_all("els => els.map(e => e.dataset.contact)") == [
            "firstname",
            "email",
            "phone",
            "company",
        ]
        required = {"Given name": True, "Email": True, "Mobile": True, "Company name": False}
        for label, is_required in required.items():
            field = page.get_by_role("textbox", name=label, exact=True)
            assert await field.count() == 1, label
            assert (await field.get_attribute("required") is not None) == is_required, label
        phone = page.get_by_role("textbox", name="Mobile", exact=True)
        assert await phone.get_attribute("type") == "tel"
        assert await phone.get_attribute("autocomplete") == "tel"
        described = (await phone.get_attribute("aria-describedby")).split()
        assert described == ["help-contact-phone", "error-contact-phone"]
        await expect(page.locator("#help-contact-phone")).to_have_text("Only for questions about a booking.")
        assert await page.get_by_label("Last name").count() == 0  # not collected by this link

        # The checkout text, sanitised: its markup, no script.
        text = page.locator(".checkout-text")
        await expect(text.locator("strong")).to_have_text("the roastery")
        assert await text.locator("a").get_attribute("rel") == "noopener noreferrer nofollow"
        assert await text.locator("script, img").count() == 0
        assert await page.evaluate("() => window.__injected") is None

        await page.get_by_role("textbox", name="Given name", exact=True).fill("Ada")
        await page.get_by_label("Email").fill("ada@example.com")
        await fill_card(page, TEST_CARD)
        await page.get_by_role("button", name=PAY).click()
        assert await error_text(page, "error-contact-phone") == "Mobile is required."
        if shots := os.environ.get("COMMERCE_TEST_SCREENSHOTS"):
            await page.screenshot(path=f"{shots}/checkout-page-contact-error.png", full_page=True)
        assert await phone.get_attribute("aria-invalid") == "true"
        assert await focused_id(page) == "contact-phone"
        assert await page.locator("#error-contact-company").text_content() == ""
        assert (await api.get("/v1/payments")).body["data"] == []

        await phone.fill("+46 70 123 45 67")
        await page.get_by_role("button", name=PAY).click()
        await finish(page)
        await expect(page.locator("#confirmation")).to_contain_text("See you at the roastery!")
        watch.assert_clean()

    payment, _ = await paid(api, token)
    assert payment["amount"] == 3500 and payment["email"] == "ada@example.com"

    async def contact():
        r = await api.get("/v1/contacts?email=ada@example.com")
        return r.body["data"]

    (person,) = await eventually(contact, timeout=30)
    assert (person["firstname"], person["phone"]) == ("Ada", "+46 70 123 45 67")


# -- (g) the keyboard ------------------------------------------------------------------------------------
KEYBOARD_LINK = {
    "allow_discount_codes": True,
    "line_items": [
        {"name": "Beans", "unit_amount": 1000, "adjustable_quantity": {"minimum": 1, "maximum": 4}},
        {"name": "Scoop", "unit_amount": 200, "optional": True},
    ],
}


async def test_the_controls_are_reachable_with_tab_and_the_stepper_works_with_keys(browser, origins, api):
    link = await new_link(api, KEYBOARD_LINK)
    expected = [
        ("button", "Decrease quantity of Beans"),
        ("spinbutton", "Quantity of Beans"),
        ("button", "Increase quantity of Beans"),
        ("checkbox", "Scoop optional"),
        ("textbox", "Discount code"),
        ("button", "Apply"),
        ("textbox", "Email"),
        ("textbox", "First name"),
        ("textbox", "Last name"),
        ("textbox", "Card number"),
    ]
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        token = token_of(page)
        await page.evaluate("() => document.activeElement && document.activeElement.blur()")
        for role, name in expected:
            await page.keyboard.press("Tab")
            target = page.get_by_role(role, name=name, exact=True)
            assert await target.count() == 1, f"nothing is labelled {name!r}"
            actual = await page.evaluate("() => document.activeElement.outerHTML.slice(0, 160)")
            assert await target.evaluate("el => el === document.activeElement"), f"Tab should reach {name!r}: {actual}"

        quantity = page.get_by_role("spinbutton", name="Quantity of Beans")
        await quantity.focus()
        await page.keyboard.press("ArrowUp")
        await page.keyboard.press("ArrowUp")
        await expect(quantity).to_have_value("3")
        await expect(total(page)).to_have_text("$30.00")
        for _ in range(3):  # the number field's own bounds hold
            await page.keyboard.press("ArrowUp")
        await expect(quantity).to_have_value("4")
        await page.keyboard.press("Shift+Tab")  # to "−"
        decrease = page.get_by_role("button", name="Decrease quantity of Beans")
        assert await decrease.evaluate("el => el === document.activeElement")
        await page.keyboard.press("Enter")
        await page.keyboard.press("Space")
        await expect(quantity).to_have_value("2")
        await expect(total(page)).to_have_text("$20.00")

        await page.get_by_role("checkbox", name="Scoop optional").focus()
        await page.keyboard.press("Space")
        await expect(total(page)).to_have_text("$22.00")

        await page.get_by_label("Email").focus()
        await page.keyboard.type("keyboard@example.com")
        for name, value in (("number", TEST_CARD), ("exp_month", "12"), ("exp_year", "34"), ("cvc", "123")):
            await card_input(page, name).focus()
            await page.keyboard.type(value)
        await page.get_by_role("button", name="Pay $22.00").focus()
        await page.keyboard.press("Enter")
        await finish(page)
        assert await focused_id(page) == "confirmation"
        watch.assert_clean()

    payment, summary = await paid(api, token)
    assert payment["amount"] == 2200
    assert lines(summary) == {"Beans": (2, 1000), "Scoop": (1, 200)}


# -- (h) a phone ------------------------------------------------------------------------------------------
async def test_a_phone_can_use_every_control_without_horizontal_overflow(browser, origins, api):
    assert (await api.patch("/v1/account", {"shipping_enabled": True})).status == 200
    assert (await api.post("/v1/discount_codes", {"code": "PHONE5", "percent_off": "5"})).status == 201
    link = await new_link(
        api,
        {
            "allow_discount_codes": True,
            "collect_billing_address": True,
            "collect_shipping_address": True,
            "checkout_text": "<p>Versandkostenfreie Lieferung innerhalb Deutschlands ab zweihundertfünfzig Euro "
            "Bestellwert: Kaffeeröstereibedarfsverpackungsmaterialzuschlagsbefreiung.</p>",
            "contact_fields": [
                {"property": "email"},
                {"property": "phone", "help_text": "For the courier", "required": True},
            ],
            "line_items": [
                {
                    "name": "Single-origin Yirgacheffe beans (whole bean, roasted this week), 1 kg",
                    "unit_amount": 1250,
                    "adjustable_quantity": {"minimum": 1, "maximum": 10},
                },
                {"name": "Kaffeeröstereibedarfsverpackungsmaterialzuschlag", "unit_amount": 500, "optional": True},
                {"name": "Tip for the roaster", "unit_amount": 300, "custom_amount": {"minimum": 100}},
            ],
        },
    )
    async with watched_page(browser, origins, **PHONE) as (page, watch):
        await open_link(page, link["url"])
        token = token_of(page)
        assert await page.evaluate("() => window.innerWidth") == 390
        assert await overflow(page) == {"scroll": 0, "wide": []}
        for name in ("Increase quantity of", "Decrease quantity of"):
            box = await page.get_by_role("button", name=re.compile(name)).bounding_box()
            assert box["width"] >= 44 and box["height"] >= 44, (name, box)
        check_box = await page.get_by_role("checkbox").bounding_box()
        assert check_box["width"] >= 20, check_box

        await page.get_by_role("button", name=re.compile("Increase quantity")).tap()
        await page.get_by_role("checkbox").tap()
        await page.get_by_role("textbox", name=re.compile("Your amount")).fill("4.50")
        await expect(total(page)).to_have_text("$34.50")
        await page.get_by_role("textbox", name="Discount code").fill("PHONE5")
        await page.get_by_role("button", name="Apply").tap()
        await expect(total(page)).to_have_text("$32.77")  # 5 % of $34.50 is $1.725, rounded half-up
        await page.get_by_label("Email").fill("phone@example.com")
        await page.get_by_role("textbox", name="Phone", exact=True).fill("+49 30 1234567")
        address = {"line1": "Unter den Linden 1", "city": "Berlin", "postal_code": "10117", "country": "DE"}
        await fill_address(page, "billing_address", **address)
        await fill_address(page, "shipping_address", **address)
        await fill_card(page, TEST_CARD)
        assert await overflow(page) == {"scroll": 0, "wide": []}
        if shots := os.environ.get("COMMERCE_TEST_SCREENSHOTS"):
            await page.screenshot(path=f"{shots}/checkout-page-phone.png", full_page=True)
            await page.get_by_role("region", name="Your order").screenshot(
                path=f"{shots}/checkout-page-phone-order.png"
            )
        await page.get_by_role("button", name=PAY).tap()
        await finish(page)
        assert await overflow(page) == {"scroll": 0, "wide": []}
        watch.assert_clean()

    payment, summary = await paid(api, token)
    assert payment["amount"] == 3277
    assert lines(summary) == {
        "Single-origin Yirgacheffe beans (whole bean, roasted this week), 1 kg": (2, 1250),
        "Kaffeeröstereibedarfsverpackungsmaterialzuschlag": (1, 500),
        "Tip for the roaster": (1, 450),
    }
    assert payment["shipping_address"] == payment["billing_address"] == address


# -- later payments, and the merchant's preview -------------------------------------------------------------
async def test_later_payments_are_listed_and_the_preview_shows_the_controls(browser, origins, api):
    link = await new_link(
        api,
        {
            "allow_discount_codes": True,
            "line_items": [
                {"name": "Coffee club", "unit_amount": 1500, "recurring": {"interval": "monthly", "payments": 6}},
                {"name": "Scoop", "unit_amount": 200, "optional": True},
            ],
        },
    )
    async with watched_page(browser, origins, **DESKTOP) as (page, watch):
        await open_link(page, link["url"])
        await expect(total(page)).to_have_text("$15.00")
        later = page.locator("#later-payments li")
        await expect(later).to_have_count(3)  # five more payments: three listed, the rest counted
        for text in await later.all_inner_texts():
            assert text.endswith("$15.00"), text
        await expect(page.locator("#later-more")).to_have_text("and 2 more")
        await expect(page.locator(".item-note").first).to_have_text("Billed monthly")
        await page.get_by_role("checkbox", name=re.compile("Scoop")).check()
        await expect(total(page)).to_have_text("$17.00")
        await expect(later).to_have_count(3)
        watch.assert_clean()

    preview = await api.get(f"/v1/payment_links/{link['id']}/preview")
    assert preview.status == 200
    for control in ('id="item-1-selected"', 'id="discount-code"', "Later payments", "Pay $15.00"):
        assert control in preview.body, control
    assert "checkout.js" not in preview.body  # nothing can be paid from a preview


# -- the summary endpoint itself ---------------------------------------------------------------------------
async def test_the_summary_endpoint_prices_choices_without_saving_or_charging(api, buyer):
    assert (await api.post("/v1/discount_codes", {"code": "API10", "percent_off": "10"})).status == 201
    link = await new_link(api, {**CHOICES_LINK, "allow_discount_codes": True})
    await buyer.open(link["url"])
    beans, wrap, mug = (li["id"] for li in link["line_items"])
    path = f"/api/checkout/{buyer.token}/summary"
    csrf = {"X-CSRF-Token": buyer.csrf}
    before = (await buyer.view()).body["summary"]

    choices = [{"line_item_id": beans, "quantity": 2}, {"line_item_id": mug, "selected": True}]
    r = await buyer.api.post(path, {"items": choices, "discount_code": "api10"}, headers=csrf)
    assert r.status == 200, r.body
    assert r.headers["Cache-Control"] == "no-store"
    summary = r.body["summary"]
    assert [(line["name"], line["quantity"]) for line in summary["lines"]] == [
        ("Coffee beans, 1 kg", 2),
        ("Enamel mug", 1),
    ]
    assert (summary["subtotal_due_now"], summary["total_due_now"]) == (3300, 2970)
    assert summary["discounts_due_now"] == [{"name": "API10", "amount": 330}]
    assert r.body["display"]["total_due_now"] == "$29.70" and r.body["display"]["pay_label"] == "Pay $29.70"
    assert r.body["display"]["lines"] == {beans: "$25.00", mug: "$8.00"}

    # The same checks as a submission, errors naming the field; the contact is optional.
    bad = [{"line_item_id": beans, "quantity": 6}, {"line_item_id": wrap, "amount": 100}]
    r = await buyer.api.post(path, {"items": bad}, headers=csrf)
    assert r.status == 422
    assert {e["field"] for e in r.body["errors"]} == {"items[0].quantity", "items[1].amount"}
    r = await buyer.api.post(
        path, {"items": [], "discount_code": "NOPE", "contact": {"email": "a@example.com"}}, headers=csrf
    )
    assert r.status == 422 and [e["field"] for e in r.body["errors"]] == ["discount_code"]
    assert (await buyer.api.post(path, {"items": []})).status == 403  # no CSRF token
    assert (await buyer.api.post(path, {"items": []}, headers={"X-CSRF-Token": "wrong"})).status == 403

    # Nothing was saved: the session still shows its first summary; no payment exists.
    view = (await buyer.view()).body
    assert view["summary"] == before and view["status"] == "open"
    assert (await api.get("/v1/payments")).body["data"] == []

    # Once paid, the session is closed to pricing too.
    assert (await buyer.pay(link["url"], "api@example.com")).status == 200
    closed = await buyer.api.post(
        f"/api/checkout/{buyer.token}/summary", {"items": []}, headers={"X-CSRF-Token": buyer.csrf}
    )
    assert closed.status == 410
