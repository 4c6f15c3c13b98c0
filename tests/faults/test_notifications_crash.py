"""A notifications worker SIGKILLed mid-send (issue 5): after its restart every e-mail of
the catalogue it was sending — receipts and the recipients' payment notifications of a
burst of purchases — is sent exactly once.

The SMTP sink is frozen (SIGSTOP), so the worker's sends hang in the SMTP greeting with
their rows claimed (``sending``, a 30 s lease); the worker is SIGKILLed while it holds
them, the sink resumed and the worker started again. The messages the dead worker held
must wait for their lease (no second sender while one may still be talking to the
server), then go out once, by the sweep of the new worker; the events the dead worker had
not acknowledged come back from the broker and add nothing. Counted by Message-ID in the
sink against the send ledger.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.support.effects import EmailLedger

pytestmark = pytest.mark.faults

PURCHASES = 6
LEASE_S = 30
RECIPIENT = "ops@fault-shop.test"


@pytest.mark.timeout(600)
async def test_a_notifications_worker_killed_mid_send_sends_each_email_once(fault_stack):
    fs = await asyncio.to_thread(
        fault_stack,
        "notifycrash",
        env={"NOTIFICATIONS_SENDING_LEASE_S": str(LEASE_S), "NOTIFICATIONS_RETRY_BASE_S": "1"},
    )
    account_id = fs.account["account_id"]
    status, body = await asyncio.to_thread(
        fs.stack.api, "PATCH", "/v1/account", fs.account["api_key"], {"notification_recipients": [RECIPIENT]}
    )
    assert status == 200, body
    deadline = time.monotonic() + 30
    while RECIPIENT not in str(await fs.sql("notifications", "SELECT settings FROM notifications.accounts")):
        assert time.monotonic() < deadline, "the account's recipients never reached notifications"
        await asyncio.sleep(0.2)

    sink, worker = fs.stack.processes["mail-sink"], fs.stack.processes["notifications-worker-0"]
    emails = EmailLedger(fs.stack, "notifications crash", account_id, expected=2 * PURCHASES)
    ledger = fs.ledger()
    shoppers = fs.shoppers(ledger)
    sink.signal(signal.SIGSTOP)
    try:
        await shoppers.run(PURCHASES, concurrency=3)
        assert shoppers.paid == PURCHASES, shoppers.errors[-5:]
        deadline = time.monotonic() + 60
        while len(sending := [r for r in await emails.rows() if r["status"] == "sending"]) < PURCHASES:
            assert time.monotonic() < deadline, f"only {len(sending)} messages are being sent"
            await asyncio.sleep(0.1)
        killed = time.monotonic()
        await asyncio.to_thread(worker.kill)
    finally:
        sink.signal(signal.SIGCONT)
    held = {r["id"] for r in await emails.rows() if r["status"] == "sending"}
    await asyncio.to_thread(worker.start)

    report = await emails.check_exactly_once(timeout=LEASE_S + 120)
    rows = await emails.rows()
    reclaimed = [r for r in rows if r["id"] in held]
    print(
        f"notifications crash: {len(held)} messages held by the SIGKILLed worker were sent once each after "
        f"their lease ({LEASE_S} s; all sent {time.monotonic() - killed:.1f} s after the kill); "
        f"{sum(r['attempts'] for r in rows)} attempts for {report.emails} e-mails"
    )
    assert report.emails == 2 * PURCHASES
    assert all(r["attempts"] >= 2 for r in reclaimed)  # claimed by the dead worker, then by the new one
    await ledger.check_exactly_once(timeout=60, min_purchases=PURCHASES)
