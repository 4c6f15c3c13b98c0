"""TARGETS R13: the SMTP server is down, then back — e-mails wait and are sent once it
returns; none lost, none doubled.

The stack's mail sink is stopped (connections refused) and buyers make purchases; each
purchase is two e-mails (the buyer's receipt and the account recipient's payment
notification). While the server is down every message waits in its send-ledger row:
``queued``, tried again and again with growing waits (the backoff is shortened for the
test: 1 s doubling up to 4 s), never given up, never marked sent. Then the sink is
started again: the workers' sweep sends each message once. The checker counts the sink's
messages by Message-ID against the ledger's rows, and the purchases' other effects
(charge, payment, receipt, CRM…) with the fault suite's effects ledger.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.effects import EmailLedger

pytestmark = pytest.mark.faults

PURCHASES = 12
RECIPIENT = "ops@fault-shop.test"
#: How long the server stays down after every message was tried once.
DOWN_S = 15


async def wait_for(probe, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (found := await probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)
    return found


@pytest.mark.timeout(600)
async def test_R13_smtp_down_then_back_every_email_is_sent_once(fault_stack):
    fs = await asyncio.to_thread(
        fault_stack,
        "r13",
        workers={"notifications": 2},
        env={"NOTIFICATIONS_RETRY_BASE_S": "1", "NOTIFICATIONS_RETRY_MAX_S": "4", "NOTIFICATIONS_SMTP_TIMEOUT_S": "5"},
    )
    account_id = fs.account["account_id"]
    status, body = fs.stack.api("PATCH", "/v1/account", fs.account["api_key"], {"notification_recipients": [RECIPIENT]})
    assert status == 200, body

    async def recipients_known():
        rows = await fs.sql(
            "notifications", "SELECT settings->'notification_recipients' AS r FROM notifications.accounts"
        )
        return rows and RECIPIENT in (rows[0]["r"] or "")

    await wait_for(recipients_known, "the account's recipients to reach notifications")

    sink = fs.stack.processes["mail-sink"]
    await asyncio.to_thread(sink.stop)
    emails = EmailLedger(fs.stack, "R13", account_id, expected=2 * PURCHASES)
    ledger = fs.ledger()
    shoppers = fs.shoppers(ledger)
    await shoppers.run(PURCHASES, concurrency=4)
    assert shoppers.paid == PURCHASES, shoppers.errors[-5:]

    # While it is down: every message waits in its row, retried with backoff, and the
    # events are acknowledged (the rows hold the retries, not the queue).
    await wait_for(
        lambda: _rows_if(emails, lambda rs: len(rs) == 2 * PURCHASES and all(r["attempts"] >= 1 for r in rs)),
        "every message to be tried once",
    )
    await asyncio.sleep(DOWN_S)
    rows = await emails.rows()
    attempts = [r["attempts"] for r in rows]
    assert {r["status"] for r in rows} <= {"queued", "sending"}, {r["status"] for r in rows}
    assert all("Connect" in (r["last_error"] or "") for r in rows if r["status"] == "queued")
    # 1 s doubling to 4 s: about 6 tries in 15 s; a 1 s sweep without backoff would make ~16
    assert 3 <= min(attempts) and max(attempts) <= 9, attempts
    pending = await fs.sql(
        "checkout",
        "SELECT count(*) AS n FROM checkout.outbox WHERE EXISTS "
        "(SELECT 1 FROM unnest(pending) p WHERE p LIKE 'notifications.%')",
    )
    assert pending[0]["n"] == 0, "events are held unacknowledged while SMTP is down"
    print(
        f"\nR13 while down ({DOWN_S} s after the first tries): {len(rows)} e-mails queued, 0 sent, "
        f"{sum(attempts)} attempts in all ({min(attempts)}–{max(attempts)} each, backing off 1 → 4 s), "
        "every event acknowledged"
    )

    # Back: each is sent once.
    started = time.monotonic()
    await asyncio.to_thread(fs.start_process, "mail-sink")
    report = await emails.check_exactly_once(timeout=120)
    print(f"R13 after the server returned: all {report.emails} sent within {time.monotonic() - started:.1f} s")
    assert report.emails == 2 * PURCHASES and report.statuses == {"sent": 2 * PURCHASES}
    await ledger.check_exactly_once(timeout=60, min_purchases=PURCHASES)


async def _rows_if(emails: EmailLedger, condition):
    rows = await emails.rows()
    return rows if rows and condition(rows) else None
