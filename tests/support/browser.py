"""Driving the real checkout page in headless Chromium (Debian's, never a downloaded one).

``launch_chromium()`` starts /usr/bin/chromium through Playwright; ``Watch`` records, for
one browser context, the console (CSP violations), uncaught page errors and every
request the pages make; ``buy()`` fills the page the way a buyer does and waits for the
confirmation, completing the test processor's 3-D Secure modals on the way.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CHROMIUM = os.environ.get("COMMERCE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
TEST_CARD = "4242424242424242"
DECLINED_WHEN_CHARGED = "4000000000000341"
THREE_D_SECURE = "4000002500003155"

#: Every CSP violation is also reported through the console API, so that it cannot be
#: missed whatever the browser logs by itself (``Refused to ...`` messages).
_CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline")
    + " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


@asynccontextmanager
async def launch_chromium():
    from playwright.async_api import async_playwright

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's 'chromium' package (scripts/setup.sh --browser)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=120_000)
        try:
            yield browser
        finally:
            await browser.close()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Watch:
    """What the pages of one browser context did: console, errors, requests."""

    allowed_origins: set[str]
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def attach(self, context) -> None:
        context.on("request", lambda request: self.requests.append(request.url))
        context.on("response", lambda response: response.status == 404 and self.missing.append(response.url))
        context.on("page", self._attach_page)
        for page in context.pages:
            self._attach_page(page)

    def _attach_page(self, page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def _on_console(self, message) -> None:
        where = message.location.get("url") if message.type == "error" else None
        self.console.append(f"{message.type}: {message.text}" + (f" ({where})" if where else ""))
        if message.type == "error" and "status of 404" in message.text:
            self.missing.append(where or "?")

    def csp_violations(self) -> list[str]:
        pattern = re.compile(r"Content Security Policy|CSP violation", re.IGNORECASE)
        return [line for line in self.console if pattern.search(line)]

    def foreign_requests(self) -> list[str]:
        return [
            url
            for url in self.requests
            if not url.startswith(("data:", "blob:", "about:")) and origin(url) not in self.allowed_origins
        ]

    def assert_clean(self) -> None:
        assert self.requests, "no request was recorded: the watch is not attached"
        assert self.csp_violations() == [], self.console
        assert self.page_errors == [], self.page_errors
        assert self.foreign_requests() == [], self.foreign_requests()
        assert self.missing == [], f"requests answered 404: {self.missing}"


@asynccontextmanager
async def watched_page(browser, allowed_origins: set[str], **context_options):
    context = await browser.new_context(**context_options)
    await context.add_init_script(_CSP_REPORTER)
    watch = Watch(set(allowed_origins))
    watch.attach(context)
    page = await context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page, watch
    finally:
        await context.close()


def card_input(page, field_name: str):
    """One input of the card element (the test processor's stand-in: plain inputs)."""
    return page.locator(f'#card-element input[placeholder="{field_name}"]')


async def fill_details(page, email: str, firstname: str | None = None, lastname: str | None = None) -> None:
    await page.get_by_label("Email").fill(email)
    if firstname is not None:
        await page.get_by_label("First name").fill(firstname)
    if lastname is not None:
        await page.get_by_label("Last name").fill(lastname)


async def fill_card(page, number: str, exp_month: str = "12", exp_year: str = "34", cvc: str = "123") -> None:
    for name, value in (
        ("number", number),
        ("exp_month", exp_month),
        ("exp_year", exp_year),
        ("cvc", cvc),
        ("postal_code", "94107"),
    ):
        await card_input(page, name).fill(value)


async def finish(page, *, authenticate: bool = True, timeout: float = 60.0) -> int:
    """After Pay: answer 3-D Secure modals until the confirmation shows; returns how many."""
    confirmation = page.locator("#confirmation")
    modal_button = page.get_by_role("button", name="Complete authentication" if authenticate else "Fail authentication")
    answered = 0
    deadline = time.monotonic() + timeout
    while not await confirmation.is_visible():
        if await modal_button.is_visible():
            await modal_button.click()
            answered += 1
        elif time.monotonic() > deadline:
            error = await page.locator("#form-error, #error-card").all_inner_texts()
            raise AssertionError(f"no confirmation within {timeout}s; errors shown: {error}")
        await page.wait_for_timeout(100)
    return answered


async def open_link(page, link_url: str) -> None:
    response = await page.goto(link_url)
    assert response is not None and response.status == 200, response and response.status
    assert "/checkout/" in page.url
    await card_input(page, "number").wait_for()


async def buy(page, link_url: str, email: str, card: str = TEST_CARD, **names) -> int:
    """Open the link, pay with ``card``, see the confirmation; returns the 3-D Secure steps."""
    await open_link(page, link_url)
    return await pay_on_page(page, email, card, **names)


async def pay_on_page(page, email: str, card: str = TEST_CARD, **names) -> int:
    await fill_details(page, email, names.get("firstname"), names.get("lastname"))
    await fill_card(page, card)
    await page.get_by_role("button", name=re.compile(r"^Pay\b")).click()
    answered = await finish(page)
    assert await page.get_by_role("heading", name="Thank you!").is_visible()
    return answered


async def overflow(page) -> dict:
    """How far the document, or any visible element, reaches past the viewport's width."""
    return await page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const wide = [];
          for (const el of document.querySelectorAll("body *")) {
            const box = el.getBoundingClientRect();
            if (box.width && box.height && (box.right > width + 0.5 || box.left < -0.5)) {
              wide.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + " " + Math.round(box.left)
                + ".." + Math.round(box.right));
            }
          }
          return {scroll: document.documentElement.scrollWidth - width, wide: wide};
        }"""
    )
