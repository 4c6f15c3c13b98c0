"""TARGETS R3: the processor commits a charge but the response is lost.

The test processor's ``lose_responses`` control: it creates (and confirms) the
PaymentIntent and stores its answer under the idempotency key, then drops the answer
(an HTTP 500 instead); a retry with the same key gets the stored answer replayed — and
lost again while losses remain. The Stripe client retries twice on its own
(``max_network_retries``), so one call of the charge job sees three answers lost.

- **The job's own retries** (one subscription due): four answers lost. The job's first
  call loses three, the job fails (outcome unknown) and dramatiq retries it; the retry
  resumes the pending attempt with its stored key and the second answer of that call
  gets through. One attempt, one charge, the key replayed four times.
- **The reconciler** (four subscriptions due): every answer lost. The jobs keep failing
  and retrying with the same keys; once the attempts are older than
  ``BILLING_RECONCILE_AFTER_S`` (set to 10 s here, 60 s by default) the scheduler's
  reconciler asks the processor for the intent carrying each attempt's id, finds it
  succeeded and records it; the jobs' later retries find their charges settled.

Then the checker (`tests.support.effects.ChargeLedger`): per due charge one succeeded
PaymentIntent at the processor, one payment, one receipt, one CRM association.
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest

from tests.support.client import Api
from tests.support.effects import ChargeLedger
from tests.support.load import Shoppers
from tests.support.subscriptions import advance, at, configure_processor, recurring_item, subscription_link

pytestmark = pytest.mark.faults

RECONCILE_AFTER_S = 10
NETWORK_RETRIES = 2  # COMMERCE_PROCESSOR_MAX_NETWORK_RETRIES (the default)
LOST_FOR_THE_JOB = NETWORK_RETRIES + 2  # a whole call, then one more: the job's retry gets through
RECONCILED = 4
EVERY_ANSWER = 1_000_000


async def _attempts(fs, account_id: str) -> list:
    return await fs.sql(
        "billing",
        """SELECT a.id, a.charge_id, a.number, a.status, a.idempotency_key, c.subscription_id,
                  extract(epoch FROM a.written_at) AS written
           FROM billing.charge_attempts a JOIN billing.charges c ON c.id = a.charge_id
           WHERE a.account_id = $1 ORDER BY a.written_at""",
        account_id,
    )


async def _wait_succeeded(fs, account_id: str, subscriptions: set[str], timeout: float) -> float:
    started = time.monotonic()
    while True:
        rows = await fs.sql(
            "billing",
            "SELECT subscription_id FROM billing.charges WHERE account_id = $1 AND status = 'succeeded'",
            account_id,
        )
        if subscriptions <= {r["subscription_id"] for r in rows}:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"{len(rows)} charges succeeded"
        await asyncio.sleep(0.2)


def _reconciled(fs) -> dict[str, str]:
    """attempt id -> how, from the scheduler's "reconciled attempt" log lines."""
    found: dict[str, str] = {}
    with open(fs.config.run_dir / "logs" / "billing-scheduler.log", errors="replace") as log:
        for line in log:
            if "reconciled attempt" in line:
                attempt = re.search(r'"attempt_id": "([^"]+)"', line)
                how = re.search(r'"how": "([^"]+)"', line)
                if attempt:
                    found[attempt.group(1)] = how.group(1) if how else "?"
    return found


@pytest.mark.timeout(600)
async def test_r3_lost_processor_responses_are_resolved_with_the_stored_key(fault_stack):
    fs = await asyncio.to_thread(fault_stack, "R3", env={"BILLING_RECONCILE_AFTER_S": str(RECONCILE_AFTER_S)})
    account_id = fs.account["account_id"]
    async with aiohttp.ClientSession() as http:
        api = Api(http, fs.config.base_url, fs.account["api_key"])
        link = await subscription_link(api, recurring_item("monthly", 990, name="Tea of the month"))
        purchases = fs.ledger()
        shoppers = Shoppers(fs.config.base_url, fs.processor_url, link["url"], purchases)
        await advance(api, at("2027-03-10", 12))  # one subscription renews on the 10th ...
        await shoppers.run(1)
        await advance(api, at("2027-03-20", 12))  # ... the others on the 20th
        await shoppers.run(RECONCILED, concurrency=RECONCILED, start=1)
        assert shoppers.paid == 1 + RECONCILED, shoppers.errors[-5:]
        charges = await ChargeLedger.next_payments(fs.stack, "R3", account_id, 1 + RECONCILED)
        await purchases.check_exactly_once(timeout=120, min_purchases=1 + RECONCILED)
        subs = await fs.sql(
            "billing", "SELECT id, next_payment_date FROM billing.subscriptions WHERE account_id = $1", account_id
        )
        (first,) = [s["id"] for s in subs if s["next_payment_date"].day == 10]
        others = {s["id"] for s in subs} - {first}

        # -- 1. lost answers, resolved by the job's own retries -----------------------------
        await configure_processor(http, fs.processor_url, account_id, lose_responses=LOST_FOR_THE_JOB)
        await advance(api, at("2027-04-10", 12))
        by_job_s = await _wait_succeeded(fs, account_id, {first}, timeout=RECONCILE_AFTER_S + 60)
        left = await configure_processor(http, fs.processor_url, account_id)
        assert left["lose_responses"] == 0, left

        # -- 2. every answer lost: the reconciler asks the processor -------------------------
        await configure_processor(http, fs.processor_url, account_id, lose_responses=EVERY_ANSWER)
        await advance(api, at("2027-04-20", 12))
        by_reconciler_s = await _wait_succeeded(fs, account_id, others, timeout=RECONCILE_AFTER_S * 3 + 60)
        left = await configure_processor(http, fs.processor_url, account_id)
        lost_in_phase_2 = EVERY_ANSWER - left["lose_responses"]
        await configure_processor(http, fs.processor_url, account_id, lose_responses=0)

        report = await charges.check_exactly_once(timeout=120)
        replays = await charges.replays("commerce:ch_")

    attempts = await _attempts(fs, account_id)
    reconciled = _reconciled(fs)
    per_charge: dict[str, list] = {}
    for a in attempts:
        per_charge.setdefault(a["charge_id"], []).append(a)
    (job_attempt,) = [a for a in attempts if a["subscription_id"] == first]
    late = [a for a in attempts if a["subscription_id"] in others]
    print(
        f"R3 job retries: {LOST_FOR_THE_JOB} answers lost for one charge; resolved by the charge job in "
        f"{by_job_s:.1f} s with its one attempt's key {job_attempt['idempotency_key']} replayed "
        f"{replays.get(job_attempt['idempotency_key'], 0)} times; reconciled: "
        f"{'yes' if job_attempt['id'] in reconciled else 'no'}"
    )
    print(
        f"R3 reconciler: every answer lost for {len(late)} charges ({lost_in_phase_2} answers lost in all, keys "
        f"replayed {sorted(replays.get(a['idempotency_key'], 0) for a in late)} times); resolved "
        f"{by_reconciler_s:.1f} s after the clock moved (BILLING_RECONCILE_AFTER_S={RECONCILE_AFTER_S}) by the "
        f"reconciler: {sorted(reconciled.get(a['id'], 'not reconciled') for a in late)}"
    )
    print(
        f"R3: {report.charges} due charges, {len(attempts)} attempts (one per charge, each with its own key), "
        f"{sum(1 for a in attempts if a['status'] == 'succeeded')} resolved succeeded"
    )
    # one attempt per charge: every retry reused the stored attempt and its key
    assert all(len(rows) == 1 and rows[0]["number"] == 0 for rows in per_charge.values()), per_charge
    assert all(a["status"] == "succeeded" for a in attempts)
    assert replays.get(job_attempt["idempotency_key"], 0) == LOST_FOR_THE_JOB
    assert job_attempt["id"] not in reconciled, "the job's own retry should have resolved it"
    assert all(replays.get(a["idempotency_key"], 0) >= NETWORK_RETRIES for a in late)
    assert all(reconciled.get(a["id"]) == "found" for a in late), reconciled
    assert lost_in_phase_2 >= len(late) * (NETWORK_RETRIES + 1)

    # The charge checker can fail (as tests/faults/test_effects_checker.py shows for the
    # purchase checker): one settlement deleted (lost), one receipt delivered twice and
    # one due charge charged again at the processor (doubled) — exactly those are counted.
    await _tamper(fs, account_id, job_attempt, late[0])
    tampered = await charges.observe()
    print("R3 checker after tampering: " + tampered.details())
    assert (tampered.lost, tampered.doubled) == (1, 2), tampered.details()


async def _tamper(fs, account_id: str, first: dict, second: dict) -> None:
    import shutil

    from shared.processor.registry import TEST_SECRET_KEY

    (pay_1,) = await fs.sql("billing", "SELECT payment_id FROM billing.charge_attempts WHERE id = $1", first["id"])
    (pay_2,) = await fs.sql("billing", "SELECT payment_id FROM billing.charge_attempts WHERE id = $1", second["id"])
    await fs.sql(
        "billing",
        "DELETE FROM billing.ledger_entries WHERE kind = 'settlement' AND payment_id = $1",
        pay_1["payment_id"],
    )
    (receipt,) = await fs.sql(
        "notifications",
        "SELECT message_id FROM notifications.emails WHERE kind = 'receipt' AND related->>'payment_id' = $1",
        pay_2["payment_id"],
    )
    (eml,) = [p for p in fs.config.mail_dir.glob("*.eml") if receipt["message_id"].encode() in p.read_bytes()]
    shutil.copy(eml, eml.with_name("9" + eml.name))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TEST_SECRET_KEY}"}) as http:
        async with http.post(
            f"{fs.processor_url}/v1/payment_intents",
            data={
                "amount": "990",
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "confirm": "true",
                "metadata[commerce_account_id]": account_id,
                "metadata[commerce_charge_id]": second["charge_id"],
            },
        ) as r:
            assert r.status == 200 and (await r.json())["status"] == "succeeded", await r.text()
