"""Processor webhooks: ``POST /webhooks/stripe/{account_id}`` (PRODUCT §7, TARGETS R7, R8).

R8: forged or replayed requests are refused (400, 413 for size, 404 for an unknown
account) and leave nothing behind — counted in checkout's tables as their owner; two
``v1`` signatures during a secret rotation are accepted.

R7: the real events of several purchases (cards, 3-D Secure completed only by the
webhook, SEPA debits that succeed or fail) are held back by the test processor, then
delivered 1–5 times each, shuffled, concurrently — a first wave while the debits are
still processing (racing the 3-D Secure buyers' late ``/complete``), the rest and the
early ones again after they settled; the end state must equal that of an account whose
identical purchases received each event once, in order; a succeeded payment is never
seen going back; each payment has exactly one receipt (or, for a failed debit, none sent).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from collections import Counter

import aiohttp
import pytest

from tests.support.client import Api, Buyer, read_mail
from tests.support.processor import (
    FAILING_IBAN,
    GOOD_IBAN,
    THREE_D_SECURE_CARD,
    CheckoutTables,
    TestProcessor,
    fake_event,
    sign,
    signature,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

LINK = {
    "name": "Webhook link",
    "currency": "EUR",
    "payment_methods": ["card", "sepa_debit"],
    "line_items": [{"name": "Kaffeebohnen, 1 kg", "quantity": 2, "unit_amount": 1250}],
}


@pytest.fixture
def processor(http, stack) -> TestProcessor:
    return TestProcessor(http, f"http://127.0.0.1:{stack.config.ports.test_processor}")


@pytest.fixture
async def tables(stack):
    async with CheckoutTables(stack.env["CHECKOUT_DATABASE_OWNER_URL"]) as t:
        yield t


async def webhook_secret(api: Api) -> str:
    r = await api.get("/v1/account/processor")
    assert r.status == 200 and r.body["webhook_secret"], r.body
    return r.body["webhook_secret"]


async def post(http: aiohttp.ClientSession, url: str, body, headers: dict) -> tuple[int, dict | str, dict]:
    async with http.post(url, data=body, headers=headers) as r:
        raw = await r.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        return r.status, parsed, dict(r.headers)


# -- R8 ------------------------------------------------------------------------------------------
async def test_r8_forged_replayed_or_oversize_webhooks_are_refused_and_leave_nothing(stack, http, api, account, tables):
    acct = account["account_id"]
    secret = await webhook_secret(api)
    via_gateway = f"{stack.config.base_url}/webhooks/stripe/{acct}"
    direct = f"http://127.0.0.1:{stack.config.ports.checkout}/webhooks/stripe/{acct}"
    body = fake_event(acct)
    now = int(time.time())
    good = signature(body, secret, now)

    async def chunked(data: bytes):
        for i in range(0, len(data), 16 * 1024):
            yield data[i : i + 16 * 1024]

    big = fake_event(acct, size=300 * 1024)
    cases: list[tuple[str, str, object, str | None, int]] = [
        ("bad signature", via_gateway, body, sign(body, "whsec_not_the_secret", now), 400),
        ("signature of another body", via_gateway, body + b" ", f"t={now},v1={good}", 400),
        ("old timestamp (> 5 min)", via_gateway, body, sign(body, secret, now - 301 - 30), 400),
        ("far-future timestamp", via_gateway, body, sign(body, secret, now + 301 + 30), 400),
        ("v0 only", via_gateway, body, f"t={now},v0={good}", 400),
        ("no header", via_gateway, body, None, 400),
        ("malformed header", via_gateway, body, "this is not a signature", 400),
        ("no timestamp", via_gateway, body, f"v1={good}", 400),
        ("non-numeric timestamp", via_gateway, body, f"t=yesterday,v1={good}", 400),
        ("empty v1", via_gateway, body, f"t={now},v1=", 400),
        ("huge header", via_gateway, body, f"t={now}," + ",".join(["v1=" + "0" * 64] * 70), 400),
        ("signed but not an event", via_gateway, b'{"hello": "world"}', sign(b'{"hello": "world"}', secret), 400),
        ("signed but not UTF-8", via_gateway, b"\xff\xfe{}", sign(b"\xff\xfe{}", secret), 400),
        ("oversize, Content-Length", direct, big, sign(big, secret), 413),
        ("oversize, chunked through the router", via_gateway, "chunked", sign(big, secret), 413),
    ]
    event_ids = [json.loads(body)["id"], json.loads(big)["id"]]
    before = await tables.counts(acct, event_ids)
    for name, url, payload, header, expected in cases:
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers["Stripe-Signature"] = header
        data = chunked(big) if payload == "chunked" else payload
        status, problem, response_headers = await post(http, url, data, headers)
        assert status == expected, (name, status, problem)
        assert response_headers["Content-Type"].startswith("application/problem+json"), name
        assert problem["status"] == expected and problem["detail"], (name, problem)
        print(f"R8 {name}: {status} {problem['detail']}")

    unknown = f"{stack.config.base_url}/webhooks/stripe/acct_doesnotexist0000000000000000"
    status, problem, _ = await post(http, unknown, body, {"Stripe-Signature": sign(body, secret)})
    assert status == 404, problem
    await asyncio.sleep(0.5)
    after = await tables.counts(acct, event_ids)
    assert after == before, (before, after)
    print(f"R8: refused={len(cases) + 1} side effects={sum(after[k] - before[k] for k in after)}")

    # Secret rotation: the processor signs with the old and the new secret; either matches.
    rotated = f"t={now},v1={signature(body, 'whsec_previous_secret', now)},v1={good}"
    status, answer, _ = await post(http, via_gateway, body, {"Stripe-Signature": rotated})
    assert status == 200 and answer["duplicate"] is False, answer
    status, answer, _ = await post(http, via_gateway, body, {"Stripe-Signature": sign(body, secret)})
    assert status == 200 and answer["duplicate"] is True, answer  # a repeat: 2xx, nothing new
    stored = await tables.counts(acct)
    assert stored["processor_events"] == before["processor_events"] + 1
    assert stored["outbox"] == before["outbox"] + 1  # one processing job, not two

    async def processed():
        return await tables.unprocessed(acct) == 0

    await eventually(processed, timeout=60)  # an intent the processor does not know: ignored


async def test_webhook_only_completion_when_the_buyer_closes_the_tab(stack, http, new_account, processor, tables):
    """3-D Secure confirmed in the browser, then the tab closed before ``/complete``: the
    processor's ``payment_intent.succeeded`` completes the purchase; a late ``/complete``
    finds the same payment."""
    account = new_account("Tab closer", "EUR")
    api = Api(http, stack.config.base_url, account["api_key"])
    link = (await api.post("/v1/payment_links", LINK)).body
    buyer = Buyer(http, stack.config.base_url, processor.base_url)
    started = await purchase("card_3ds_tab_closed", buyer, processor, link, "closed.tab@example.com")
    assert started["payment_id"] is None

    async def paid():
        listed = (await api.get("/v1/payments")).body["data"]
        return listed if listed and listed[0]["status"] == "succeeded" else None

    (payment,) = await eventually(paid, timeout=60)
    assert (await buyer.view()).body["status"] == "complete"
    late = await buyer.complete()
    assert late.status == 200 and late.body["payment_id"] == payment["id"], late.body
    (purchased,) = await tables.events(account["account_id"], "purchase.completed")
    assert purchased["data"]["payment_id"] == payment["id"]

    async def sent():
        r = await api.get("/v1/emails?kind=receipt")
        return [e for e in r.body["data"] if e["status"] == "sent"]

    (receipt,) = await eventually(sent, timeout=60)
    assert receipt["payment_id"] == payment["id"]
    assert len([m for m in read_mail(stack.config.mail_dir) if m["Message-ID"] == receipt["message_id"]]) == 1
    print(f"\nwebhook-only completion: payment {payment['id']} recorded from payment_intent.succeeded")


# -- R7 ------------------------------------------------------------------------------------------
KINDS = ("card", "card_3ds_tab_closed", "sepa_ok", "sepa_fail")
CHAOS_PER_KIND = 2


async def purchase(kind: str, buyer: Buyer, processor: TestProcessor, link: dict, email: str) -> dict:
    await buyer.open(link["url"])
    submitted = await buyer.submit({"email": email})
    assert submitted.status == 200, submitted.body
    secret = submitted.body["payment"]["client_secret"]
    if kind.startswith("sepa"):
        confirmed = await processor.confirm_sepa(secret, GOOD_IBAN if kind == "sepa_ok" else FAILING_IBAN, email)
    else:
        number = THREE_D_SECURE_CARD if kind == "card_3ds_tab_closed" else "4242424242424242"
        confirmed = await processor.confirm_card_setup(secret, number)
    assert confirmed["http_status"] == 200 and confirmed["status"] == "succeeded", confirmed
    done = await buyer.complete()
    if kind == "card_3ds_tab_closed":
        assert done.status == 402 and done.body["status"] == "requires_action", done.body
        authenticated = await processor.authenticate(done.body["client_secret"])
        assert authenticated["status"] == "succeeded", authenticated
        return {"kind": kind, "token": buyer.token, "csrf": buyer.csrf, "payment_id": None}  # the tab is closed
    assert done.status == 200, done.body
    return {"kind": kind, "token": buyer.token, "csrf": buyer.csrf, "payment_id": done.body["payment_id"]}


async def shop(stack, http, processor, account: dict, copies: int) -> list[dict]:
    api = Api(http, stack.config.base_url, account["api_key"])
    link = (await api.post("/v1/payment_links", LINK)).body
    made = []
    for n in range(copies):
        for kind in KINDS:
            buyer = Buyer(http, stack.config.base_url, processor.base_url)
            email = f"{kind.replace('_', '.')}.{n}.{secrets.token_hex(3)}@example.com"
            made.append({**await purchase(kind, buyer, processor, link, email), "email": email})
    return made


async def end_state(stack, api: Api, tables: CheckoutTables, account_id: str, bought: list[dict]) -> list[tuple]:
    """Per purchase, everything that must not depend on how its webhooks arrived."""
    payments = {p["id"]: p for p in await tables.payments(account_id)}
    sessions = {p["token"]: await _session(api, p["token"]) for p in bought}
    emails = (await api.get("/v1/emails?kind=receipt&limit=100")).body["data"]
    events = await tables.events(account_id, "purchase.completed", "payment.succeeded", "payment.failed")
    mail = Counter(m["Message-ID"] for m in read_mail(stack.config.mail_dir))
    states = []
    for p in bought:
        session = sessions[p["token"]]
        payment = payments.get(session["payment_id"])
        pid = payment["id"] if payment else None
        receipts = [e for e in emails if e["payment_id"] == pid]
        published = Counter(
            (e["type"], e["data"].get("payment_status")) for e in events if e["data"]["payment_id"] == pid
        )
        states.append(
            (
                p["kind"],
                session["status"],
                sum(1 for q in payments.values() if payment and q["session_id"] == payment["session_id"]),
                payment["status"] if payment else None,
                (payment["fee"], payment["net"]) if payment else None,
                tuple(sorted(e["status"] for e in receipts)),
                sum(mail[e["message_id"]] for e in receipts),
                tuple(sorted(published.items())),
            )
        )
    return states


async def _session(api: Api, token: str) -> dict:
    r = await api.get(f"/api/checkout/{token}")
    return {"token": token, "status": r.body["status"], "payment_id": r.body["payment_id"]}


async def test_r7_duplicated_shuffled_concurrent_webhooks_reach_the_in_order_end_state(
    stack, http, new_account, processor, tables
):
    control, chaos = new_account("R7 in order", "EUR"), new_account("R7 chaos", "EUR")
    await processor.configure(control["account_id"], bank_debits="manual")
    await processor.configure(chaos["account_id"], bank_debits="manual", webhooks="hold")
    bought_control = await shop(stack, http, processor, control, 1)
    bought_chaos = await shop(stack, http, processor, chaos, CHAOS_PER_KIND)
    secret = await webhook_secret(Api(http, stack.config.base_url, chaos["api_key"]))
    url = f"{stack.config.base_url}/webhooks/stripe/{chaos['account_id']}"
    gate = asyncio.Semaphore(16)
    statuses: Counter = Counter()
    sent: Counter = Counter()  # deliveries per event: 1–5 each in all

    async def deliver(event: dict) -> None:
        payload = event["payload"].encode()
        async with gate:
            status, body, _ = await post(http, url, payload, {"Stripe-Signature": sign(payload, secret)})
            statuses[status] += 1
            assert status == 200, body

    async def wave(events: list[dict], most: int) -> None:
        copies = []
        for event in events:
            n = random.randint(1, min(most, 5 - sent[event["id"]]))
            sent[event["id"]] += n
            copies += [event] * n
        random.shuffle(copies)
        await asyncio.gather(*(deliver(e) for e in copies))

    downgrades: list[str] = []
    watching = asyncio.Event()

    async def watch() -> None:  # a succeeded payment must never be seen in another state
        seen: dict[str, str] = {}
        async with CheckoutTables(stack.env["CHECKOUT_DATABASE_OWNER_URL"]) as own:
            while not watching.is_set():
                for p in await own.payments(chaos["account_id"]):
                    if seen.get(p["id"]) == "succeeded" and p["status"] != "succeeded":
                        downgrades.append(f"{p['id']}: succeeded -> {p['status']}")
                    seen[p["id"]] = p["status"]
                await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())

    # Wave 1, while the debits are still processing: what the processor has sent so far
    # (cards, 3-D Secure, "processing"), each up to 4 times, shuffled, concurrently — and
    # the 3-D Secure buyers coming back to /complete at the same moment.
    await asyncio.sleep(1.5)  # the test processor holds each event 1 s before "sending" it
    early = await processor.held_events(chaos["account_id"])
    returning = [
        Buyer(http, stack.config.base_url, processor.base_url) for p in bought_chaos if p["payment_id"] is None
    ]
    for buyer, p in zip(returning, [p for p in bought_chaos if p["payment_id"] is None], strict=True):
        buyer.token, buyer.csrf = p["token"], p["csrf"]
    results = await asyncio.gather(wave(early, 4), *(b.complete() for b in returning))
    late_completions = results[1:]
    assert all(r.status == 200 and r.body["status"] == "complete" for r in late_completions), late_completions

    # Settle the debits; wave 2: every event (the early ones again), shuffled, concurrently.
    assert await processor.settle(control["account_id"]) == 2
    assert await processor.settle(chaos["account_id"]) == 2 * CHAOS_PER_KIND
    per_purchase = {"card": 2, "card_3ds_tab_closed": 2, "sepa_ok": 5, "sepa_fail": 5}
    expected = sum(per_purchase.values()) * CHAOS_PER_KIND

    async def all_held():
        held = await processor.held_events(chaos["account_id"])
        return held if len(held) >= expected else None

    held = await eventually(all_held, timeout=60)
    await wave(held, 5)
    assert all(1 <= sent[e["id"]] <= 5 for e in held)
    deliveries = sum(sent.values())

    async def settled(account: dict, bought: list[dict]) -> bool:
        acct = account["account_id"]
        if await tables.unprocessed(acct) or await tables.undelivered(acct):
            return False
        payments = await tables.payments(acct)
        if len(payments) != len(bought) or any(p["status"] == "processing" for p in payments):
            return False
        api = Api(http, stack.config.base_url, account["api_key"])
        emails = (await api.get("/v1/emails?kind=receipt&limit=100")).body["data"]
        return len(emails) == len(bought) and all(e["status"] in ("sent", "dropped") for e in emails)

    await eventually(lambda: settled(control, bought_control), timeout=120, interval=0.5)
    await eventually(lambda: settled(chaos, bought_chaos), timeout=120, interval=0.5)
    await asyncio.sleep(1)  # anything late would show now
    watching.set()
    await watcher

    reference = {
        s[0]: s
        for s in await end_state(
            stack, Api(http, stack.config.base_url, control["api_key"]), tables, control["account_id"], bought_control
        )
    }
    chaos_states = await end_state(
        stack, Api(http, stack.config.base_url, chaos["api_key"]), tables, chaos["account_id"], bought_chaos
    )
    mismatches = [(s, reference[s[0]]) for s in chaos_states if s != reference[s[0]]]
    doubled = [s for s in chaos_states + list(reference.values()) if s[6] > 1 or s[5].count("sent") > 1]
    print(
        f"\nR7: purchases={len(bought_chaos)} events={len(held)} deliveries={deliveries} "
        f"end-state mismatches={len(mismatches)} receipts doubled={len(doubled)} downgrades={len(downgrades)}"
    )
    for kind, state in sorted(reference.items()):
        print(f"R7 end state {kind}: {state[1:]}")
    assert statuses == Counter({200: deliveries})
    assert not mismatches, mismatches
    assert not doubled and not downgrades, (doubled, downgrades)
    # What "in order" must mean, per kind.
    assert reference["card"][3] == reference["card_3ds_tab_closed"][3] == reference["sepa_ok"][3] == "succeeded"
    assert reference["sepa_fail"][3] == "failed" and reference["sepa_fail"][5] == ("dropped",)
    assert reference["sepa_ok"][4] == (20, 2480) and reference["card"][4] == (103, 2397)  # fees synced
    for kind in ("card", "card_3ds_tab_closed", "sepa_ok"):
        assert reference[kind][5] == ("sent",) and reference[kind][6] == 1
