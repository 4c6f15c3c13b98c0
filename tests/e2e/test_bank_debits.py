"""Bank debits (PRODUCT §4.2, §11): a SEPA Direct Debit (or US bank account) payment is
``processing`` until the processor settles it; the purchase completes at once, and its
receipt is held until the debit succeeds — and never sent when it fails.

The test processor keeps each account's debits pending until the test settles them
(``bank_debits: manual``), so every intermediate state can be observed.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.client import Api, Buyer, read_mail
from tests.support.processor import (
    FAILING_ACH_ACCOUNT,
    FAILING_IBAN,
    GOOD_ACH_ACCOUNT,
    GOOD_IBAN,
    CheckoutTables,
    TestProcessor,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

EUR_LINK = {
    "name": "Bank debit link",
    "currency": "EUR",
    "payment_methods": ["sepa_debit"],
    "line_items": [{"name": "Kaffeebohnen, 1 kg", "quantity": 2, "unit_amount": 1250}],
}


@pytest.fixture
def processor(http, stack) -> TestProcessor:
    return TestProcessor(http, f"http://127.0.0.1:{stack.config.ports.test_processor}")


@pytest.fixture
async def tables(stack):
    async with CheckoutTables(stack.env["CHECKOUT_DATABASE_OWNER_URL"]) as t:
        yield t


async def debit_account(new_account, http, stack, processor, currency: str) -> tuple[dict, Api]:
    account = new_account("Bank debits", currency)
    await processor.configure(account["account_id"], bank_debits="manual")
    return account, Api(http, stack.config.base_url, account["api_key"])


async def receipts(api: Api, payment_id: str) -> list[dict]:
    r = await api.get("/v1/emails?kind=receipt")
    assert r.status == 200, r.body
    return [e for e in r.body["data"] if e["payment_id"] == payment_id]


def mail_for(stack, message_id: str) -> list:
    return [m for m in read_mail(stack.config.mail_dir) if m["Message-ID"] == message_id]


async def pay_by_bank(buyer: Buyer, processor: TestProcessor, link: dict, email: str, confirm) -> dict:
    """Open, submit, confirm the bank account as Stripe.js would, complete."""
    await buyer.open(link["url"])
    submitted = await buyer.submit({"email": email})
    assert submitted.status == 200, submitted.body
    assert submitted.body["payment"]["intent_type"] == "setup_intent"
    setup = await processor.setup_intent(submitted.body["payment"]["intent_id"])
    confirmed = await confirm(submitted.body["payment"]["client_secret"])
    assert confirmed["http_status"] == 200 and confirmed["status"] == "succeeded", confirmed
    done = await buyer.complete()
    assert done.status == 200 and done.body["status"] == "complete", done.body
    return {"setup": setup, "payment_id": done.body["payment_id"]}


async def test_sepa_debit_is_processing_until_it_settles_and_only_then_sends_the_receipt(
    stack, http, new_account, buyer, processor, tables
):
    account, api = await debit_account(new_account, http, stack, processor, "EUR")
    created = await api.post("/v1/payment_links", EUR_LINK)
    assert created.status == 201, created.body
    assert created.body["payment_methods"] == ["sepa_debit"]

    paid = await pay_by_bank(
        buyer, processor, created.body, "iban.buyer@example.com", lambda s: processor.confirm_sepa(s, GOOD_IBAN)
    )
    assert paid["setup"]["payment_method_types"] == ["sepa_debit"]  # the SetupIntent is for a bank debit
    payment_id = paid["payment_id"]

    payment = (await api.get(f"/v1/payments/{payment_id}")).body
    assert (payment["status"], payment["method_type"], payment["amount"], payment["currency"]) == (
        "processing",
        "sepa_debit",
        2500,
        "EUR",
    )
    assert (await buyer.view()).body["status"] == "complete"  # the session is done: the debit is submitted
    (purchase,) = await tables.events(account["account_id"], "purchase.completed")
    assert purchase["data"]["payment_id"] == payment_id and purchase["data"]["payment_status"] == "processing"

    # The receipt is rendered but held: nothing reaches the buyer before the outcome.
    (held,) = await eventually(lambda: _with_status(api, payment_id, "held"), timeout=60)
    await asyncio.sleep(2)
    (still,) = await receipts(api, payment_id)
    assert still["status"] == "held" and mail_for(stack, held["message_id"]) == []

    assert await processor.settle(account["account_id"]) == 1

    async def settled():
        body = (await api.get(f"/v1/payments/{payment_id}")).body
        return body if body["status"] == "succeeded" and body["fee"] is not None else None

    payment = await eventually(settled, timeout=60)
    assert (payment["fee"], payment["net"]) == (20, 2480)  # the test processor's 0.8 % for bank debits
    (sent,) = await eventually(lambda: _with_status(api, payment_id, "sent"), timeout=60)
    assert len(mail_for(stack, sent["message_id"])) == 1
    succeeded = await tables.events(account["account_id"], "payment.succeeded")
    assert [e["data"]["payment_id"] for e in succeeded] == [payment_id]
    assert await tables.events(account["account_id"], "payment.failed") == []
    print(f"\nSEPA: payment {payment_id} processing -> succeeded, receipt held -> sent once, fee 20 net 2480")


async def test_a_failing_iban_fails_the_payment_and_never_sends_the_receipt(
    stack, http, new_account, buyer, processor, tables
):
    account, api = await debit_account(new_account, http, stack, processor, "EUR")
    link = (await api.post("/v1/payment_links", EUR_LINK)).body
    paid = await pay_by_bank(
        buyer, processor, link, "failing.iban@example.com", lambda s: processor.confirm_sepa(s, FAILING_IBAN)
    )
    payment_id = paid["payment_id"]
    assert (await api.get(f"/v1/payments/{payment_id}")).body["status"] == "processing"
    await eventually(lambda: _with_status(api, payment_id, "held"), timeout=60)

    assert await processor.settle(account["account_id"]) == 1

    async def failed():
        body = (await api.get(f"/v1/payments/{payment_id}")).body
        return body if body["status"] == "failed" else None

    await eventually(failed, timeout=60)
    (dropped,) = await eventually(lambda: _with_status(api, payment_id, "dropped"), timeout=60)
    (event,) = await tables.events(account["account_id"], "payment.failed")
    assert event["data"]["payment_id"] == payment_id and event["data"]["decline_code"] == "insufficient_funds"
    assert await tables.events(account["account_id"], "payment.succeeded") == []
    await eventually(lambda: _quiet(tables, account["account_id"]), timeout=60)
    await asyncio.sleep(1)
    assert [e["status"] for e in await receipts(api, payment_id)] == ["dropped"]
    assert mail_for(stack, dropped["message_id"]) == []
    print(f"\nSEPA failing IBAN: payment {payment_id} processing -> failed, receipt dropped, nothing sent")


async def test_us_bank_account_debits_settle_like_sepa(stack, http, new_account, buyer, processor, tables):
    """ACH through the test processor's ``us_bank_account`` support (devtools/test_processor.py)."""
    account, api = await debit_account(new_account, http, stack, processor, "USD")
    created = await api.post(
        "/v1/payment_links",
        {**EUR_LINK, "currency": "USD", "payment_methods": ["us_bank_account"]},
    )
    assert created.status == 201, created.body
    ok = await pay_by_bank(
        buyer,
        processor,
        created.body,
        "ach.ok@example.com",
        lambda s: processor.confirm_us_bank_account(s, GOOD_ACH_ACCOUNT),
    )
    bad = await pay_by_bank(
        Buyer(buyer.session, stack.config.base_url, processor.base_url),
        processor,
        created.body,
        "ach.bad@example.com",
        lambda s: processor.confirm_us_bank_account(s, FAILING_ACH_ACCOUNT),
    )
    assert ok["setup"]["payment_method_types"] == ["us_bank_account"]
    for paid in (ok, bad):
        body = (await api.get(f"/v1/payments/{paid['payment_id']}")).body
        assert (body["status"], body["method_type"]) == ("processing", "us_bank_account")
    assert await processor.settle(account["account_id"]) == 2

    async def outcomes():
        got = {}
        for paid in (ok, bad):
            got[paid["payment_id"]] = (await api.get(f"/v1/payments/{paid['payment_id']}")).body["status"]
        return got if "processing" not in got.values() else None

    assert await eventually(outcomes, timeout=60) == {ok["payment_id"]: "succeeded", bad["payment_id"]: "failed"}
    await eventually(lambda: _with_status(api, ok["payment_id"], "sent"), timeout=60)
    await eventually(lambda: _with_status(api, bad["payment_id"], "dropped"), timeout=60)
    print("\nACH: one debit settled succeeded (receipt sent), one failed (receipt dropped)")


async def test_the_checkout_page_offers_an_iban_field_for_sepa_links(stack, http, new_account, processor):
    _account, api = await debit_account(new_account, http, stack, processor, "EUR")
    link = (await api.post("/v1/payment_links", {**EUR_LINK, "payment_methods": ["card", "sepa_debit"]})).body
    async with http.get(link["url"]) as r:
        html = await r.text()
    assert 'value="sepa_debit"' in html and 'id="iban"' in html and "SEPA Direct Debit mandate" in html
    card_only = (await api.post("/v1/payment_links", {**EUR_LINK, "payment_methods": ["card"]})).body
    async with http.get(card_only["url"]) as r:
        assert 'id="iban"' not in await r.text()


@pytest.mark.browser
async def test_a_buyer_pays_by_sepa_debit_on_the_real_page(stack, http, new_account, processor):
    from tests.support.browser import fill_details, launch_chromium, open_link, watched_page

    _account, api = await debit_account(new_account, http, stack, processor, "EUR")
    link = (await api.post("/v1/payment_links", {**EUR_LINK, "payment_methods": ["card", "sepa_debit"]})).body
    origins = {stack.config.base_url, processor.base_url}
    async with launch_chromium() as browser, watched_page(browser, origins) as (page, watch):
        await open_link(page, link["url"])
        await fill_details(page, "sepa.page@example.com", "Sepa", "Buyer")
        assert await page.locator("#iban").is_hidden()
        await page.get_by_label("SEPA Direct Debit", exact=True).check()
        assert await page.locator("#iban").is_visible()
        assert await page.locator("#card-element").is_hidden()
        await page.get_by_role("button", name="Pay").click()
        assert await page.locator("#error-iban").text_content() == "Enter your IBAN."
        await page.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 00")
        await page.get_by_role("button", name="Pay").click()
        await page.locator("#confirmation").wait_for(timeout=60_000)
        watch.assert_clean()

    async def processing():
        listed = (await api.get("/v1/payments")).body["data"]
        return listed if listed and listed[0]["status"] == "processing" else None

    (payment,) = await eventually(processing, timeout=60)
    assert payment["method_type"] == "sepa_debit"


async def _with_status(api: Api, payment_id: str, status: str) -> list[dict]:
    return [e for e in await receipts(api, payment_id) if e["status"] == status]


async def _quiet(tables: CheckoutTables, account_id: str) -> bool:
    return await tables.unprocessed(account_id) == 0 and await tables.undelivered(account_id) == 0
