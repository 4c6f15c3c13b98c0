"""The effects checker itself: it must see what it is there to see.

A checker that cannot fail proves nothing. Three purchases complete normally, then their
effects are tampered with behind the system's back — one ledger entry deleted, one
payment's CRM contact cleared, one receipt delivered a second time, one purchase charged
again at the processor, one event deleted and one event without a payment inserted — and
the checker must count exactly those as lost and doubled.
"""

from __future__ import annotations

import asyncio
import shutil

import aiohttp
import pytest

from shared.processor.registry import TEST_SECRET_KEY

pytestmark = pytest.mark.faults


async def test_the_checker_counts_lost_and_doubled_effects(fault_stack):
    fs = await asyncio.to_thread(fault_stack, "checker")
    ledger = fs.ledger()
    shoppers = fs.shoppers(ledger)
    first, second, third = await shoppers.run(3, concurrency=1)
    clean = await ledger.settle(timeout=60, quiet=0.5)
    assert clean.ok and clean.purchases == 3, clean.details()

    # lost: a ledger entry
    await fs.sql("billing", "DELETE FROM billing.ledger_entries WHERE payment_id = $1", first)
    # lost: the second payment's link to its CRM contact
    await fs.sql("checkout", "UPDATE checkout.payments SET contact_id = NULL WHERE id = $1", second)
    # doubled: the second receipt delivered twice
    (row,) = await fs.sql(
        "notifications", "SELECT message_id FROM notifications.emails WHERE related->>'payment_id' = $1", second
    )
    (eml,) = [p for p in fs.config.mail_dir.glob("*.eml") if row["message_id"].encode() in p.read_bytes()]
    shutil.copy(eml, eml.with_name("9" + eml.name))
    # doubled: the third purchase charged a second time at the processor
    (pay,) = await fs.sql("checkout", "SELECT session_id, amount FROM checkout.payments WHERE id = $1", third)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TEST_SECRET_KEY}"}) as http:
        async with http.post(
            f"{fs.processor_url}/v1/payment_intents",
            data={
                "amount": str(pay["amount"]),
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "confirm": "true",
                "metadata[session_id]": pay["session_id"],
            },
        ) as r:
            assert r.status == 200 and (await r.json())["status"] == "succeeded"
    # lost: the third purchase's event; and an event naming no payment
    await fs.sql("checkout", "DELETE FROM checkout.outbox WHERE envelope->'data'->>'payment_id' = $1", third)
    await fs.sql(
        "checkout",
        """INSERT INTO checkout.outbox (event_id, account_id, type, version, envelope, pending, delivered_at)
           SELECT 'evt_forged', account_id, type, version,
                  jsonb_set(jsonb_set(envelope, '{data,payment_id}', '"pay_forged"'),
                            '{data,session_id}', '"cs_forged"'), '{}', now()
           FROM checkout.outbox WHERE type = 'purchase.completed' LIMIT 1""",
    )

    report = await ledger.observe()
    print("\n" + report.details())
    assert (report.purchases, report.lost, report.doubled) == (3, 4, 2), report.details()
