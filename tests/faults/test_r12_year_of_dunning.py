"""TARGETS R12: a year of renewals and dunning on the test clock, in the real services.

Five accounts, each with one monthly subscription bought through a link on 2027-01-05,
each living a different year (their clocks move independently, concurrently):

- ``healthy``: every renewal succeeds — 12 charges, 12 receipts, no failure e-mail;
- ``recovers``: the March renewal is declined twice (``insufficient_funds``, soft): the
  due charge and retry 1 fail, retry 2 (3 days after the due date) succeeds;
- ``exhausts``: a card that attaches but is declined when charged (4000000000000341, set
  through the update link) from April: the due charge and the 4 default retries
  (1, 3, 7, 14 days) fail, then ``canceled``, and nothing is ever tried again;
- ``hard``: a stolen card (a hard decline) in February: one attempt, ``canceled`` at once;
- ``unpaid``: a custom schedule (retries 2 and 5 days after) with ``unpaid`` as the final
  outcome, the declining card from February: 3 attempts, ``unpaid``, no charge after it.

The clock of each account visits every payment date and retry date of its year (and the
days just after), waiting at each stop until billing has nothing runnable left. Then the
ledger: for every account, the attempts billing made equal the policy's exactly; at the
processor each attempt is one request with its own idempotency key and each period has at
most one succeeded charge; each attempt is one payment record; one receipt per success;
one failed-payment e-mail per failure with a retry to come; nothing lost or doubled.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

import aiohttp
import pytest

from shared.schedule import nth_date
from tests.support.client import Api, Buyer
from tests.support.subscriptions import (
    advance,
    at,
    configure_processor,
    recurring_item,
    subscription_link,
    subscriptions_of,
    update_payment_method,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.faults

ANCHOR = date(2027, 1, 5)
FAILS_WHEN_CHARGED = "4000000000000341"


@dataclass
class Scenario:
    name: str
    #: period index -> what happens to its charge: number of declines before success;
    #: None = every attempt declines.
    declines: dict[int, int | None]
    retry_days: tuple[int, ...] = (1, 3, 7, 14)
    final: str = "canceled"
    hard: bool = False
    #: Expected, filled by `expect`.
    attempts: int = 0
    succeeded: int = 0
    failure_mails: int = 0
    status: str = "active"
    made: dict = field(default_factory=dict)

    def expect(self) -> None:
        """The policy's exact consequences over the year (12 renewal dates)."""
        for index in range(1, 13):
            outcome = self.declines.get(index, 0)
            if outcome == 0:
                self.attempts += 1
                self.succeeded += 1
                continue
            if self.hard:
                self.attempts += 1
                self.status = self.final
                return
            if outcome is None:  # every attempt fails: the due charge and each retry
                self.attempts += 1 + len(self.retry_days)
                self.failure_mails += len(self.retry_days)  # one per failure with a retry to come
                if self.final == "unpaid":  # and the last: an unpaid subscription can still be saved
                    self.failure_mails += 1
                self.status = self.final
                return
            self.attempts += outcome + 1
            self.failure_mails += outcome
            self.succeeded += 1

    def stops(self) -> list[date]:
        """Every day the clock visits: each payment date, each retry day, the day after."""
        days: set[date] = set()
        for index in range(1, 13):
            due = nth_date(ANCHOR, "monthly", index)
            days |= {due, due + timedelta(days=1)}
            days |= {due + timedelta(days=d) for d in self.retry_days}
        return [*sorted(days), date(2028, 1, 20)]


SCENARIOS = [
    Scenario("healthy", {}),
    Scenario("recovers", {2: 2}),
    Scenario("exhausts", {3: None}),
    Scenario("hard", {1: None}, hard=True),
    Scenario("unpaid", {1: None}, retry_days=(2, 5), final="unpaid"),
]


async def _quiet(fs, account_id: str, timeout: float = 60.0) -> None:
    """Billing has nothing runnable for the account on its own clock."""
    deadline = time.monotonic() + timeout
    while True:
        busy = await fs.sql(
            "billing",
            """SELECT count(*) AS n FROM billing.charges c JOIN billing.accounts a ON a.id = c.account_id
               WHERE c.account_id = $1
                 AND (c.status IN ('scheduled', 'processing')
                      OR (c.status = 'retrying'
                          AND c.run_at <= now() + a.clock_offset_us * interval '1 microsecond'))""",
            account_id,
        )
        if busy[0]["n"] == 0:
            return
        assert time.monotonic() < deadline, f"{account_id}: charges still runnable after {timeout} s"
        await asyncio.sleep(0.1)


async def _live_a_year(fs, http, scenario: Scenario) -> dict:
    account = await asyncio.to_thread(fs.stack.create_account, f"R12 {scenario.name}", "USD", True)
    account_id = account["account_id"]
    api = Api(http, fs.config.base_url, account["api_key"])
    settings = {"retry_schedule_days": list(scenario.retry_days), "after_final_failure": scenario.final}
    patched = await api.patch("/v1/account", {"subscription_settings": settings})
    assert patched.status == 200, patched.body
    await advance(api, at(ANCHOR, 9))
    link = await subscription_link(api, recurring_item("monthly", 1990, name=f"{scenario.name} plan"))
    buyer = Buyer(http, fs.config.base_url, fs.processor_url)
    email = f"r12-{scenario.name}@example.com"
    paid = await buyer.pay(link["url"], email)
    assert paid.status == 200, paid.body
    (sub,) = await eventually(lambda: subscriptions_of(api, email), timeout=30)

    failing = next(iter(scenario.declines), None)
    for day in scenario.stops():
        if failing is not None and day == nth_date(ANCHOR, "monthly", failing):
            count = scenario.declines[failing]
            if scenario.hard:
                await configure_processor(http, fs.processor_url, account_id, force_decline_code="stolen_card")
            elif count is None:
                await update_payment_method(api, buyer, sub["id"], FAILS_WHEN_CHARGED)
            else:
                await configure_processor(
                    http, fs.processor_url, account_id, force_decline_code="insufficient_funds", decline_count=count
                )
        await advance(api, at(day, 2))
        await _quiet(fs, account_id)
    final = (await api.get(f"/v1/subscriptions/{sub['id']}")).body
    return {"account_id": account_id, "api": api, "sub": final, "email": email}


async def _emails(api: Api, kind: str, to: str) -> list[dict]:
    r = await api.get(f"/v1/emails?kind={kind}&to={to}&limit=100")
    return r.body["data"]


@pytest.mark.timeout(900)
async def test_r12_a_year_of_renewals_and_dunning_makes_exactly_the_configured_attempts(fault_stack):
    fs = await asyncio.to_thread(fault_stack, "R12")
    for scenario in SCENARIOS:
        scenario.expect()
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        lives = await asyncio.gather(*(_live_a_year(fs, http, s) for s in SCENARIOS))
        lost = doubled = 0
        lines = []
        for scenario, life in zip(SCENARIOS, lives, strict=True):
            account_id, api, sub = life["account_id"], life["api"], life["sub"]
            attempts = await fs.sql(
                "billing",
                """SELECT a.id, a.charge_id, a.number, a.status, a.idempotency_key, a.payment_id, c.period_index
                   FROM billing.charge_attempts a JOIN billing.charges c ON c.id = a.charge_id
                   WHERE a.account_id = $1""",
                account_id,
            )
            async with http.get(f"{fs.processor_url}/_config/accounts/{account_id}/charge_requests") as r:
                requests = (await r.json())["data"]
            async with http.get(f"{fs.processor_url}/_config/accounts/{account_id}/payment_intents") as r:
                intents = (await r.json())["data"]
            made = len(attempts)
            ok = [a for a in attempts if a["status"] == "succeeded"]
            keys = Counter(q["idempotency_key"] for q in requests)
            succeeded_per_period = Counter(
                i["metadata"].get("commerce_charge_id") for i in intents if i["status"] == "succeeded"
            )
            doubled += sum(n - 1 for n in keys.values() if n > 1)  # a key sent twice: a blind retry
            doubled += sum(n - 1 for n in succeeded_per_period.values() if n > 1)
            doubled += max(0, made - scenario.attempts) + max(0, len(ok) - scenario.succeeded)
            lost += max(0, scenario.attempts - made) + max(0, scenario.succeeded - len(ok))
            assert len(keys) == made, (scenario.name, len(keys), made)  # every attempt reached the processor once

            async def records(api=api, sub=sub, made=made):
                r = await api.get(f"/v1/payments?subscription_id={sub['id']}&limit=100")
                return r.body["data"] if len(r.body["data"]) >= made else None

            payments = await eventually(records, timeout=60)
            assert Counter(p["status"] for p in payments) == Counter(
                {"succeeded": len(ok), "failed": made - len(ok)} if made - len(ok) else {"succeeded": len(ok)}
            ), scenario.name

            async def receipts(api=api, life=life, want=scenario.succeeded + 1):  # + the purchase's own
                got = [e for e in await _emails(api, "receipt", life["email"]) if e["status"] == "sent"]
                return got if len(got) >= want else None

            sent_receipts = await eventually(receipts, timeout=90)
            failure_mails = [e for e in await _emails(api, "payment_failed", life["email"])]
            if scenario.failure_mails:
                failure_mails = await eventually(
                    lambda api=api, life=life, want=scenario.failure_mails: _at_least(
                        _emails(api, "payment_failed", life["email"]), want
                    ),
                    timeout=60,
                )
            doubled += max(0, len(sent_receipts) - (scenario.succeeded + 1))
            doubled += max(0, len(failure_mails) - scenario.failure_mails)
            assert sub["status"] == scenario.status, (scenario.name, sub["status"])
            lines.append(
                f"  {scenario.name}: attempts={made}/{scenario.attempts} charged={len(ok)}/{scenario.succeeded} "
                f"receipts={len(sent_receipts) - 1} failure e-mails={len(failure_mails)}/{scenario.failure_mails} "
                f"status={sub['status']}"
            )
    print(
        f"\nR12 a year on the test clock ({time.monotonic() - started:.0f} s):\n" + "\n".join(lines) + "\n"
        f"R12 effects: subscriptions={len(SCENARIOS)} attempts={sum(s.attempts for s in SCENARIOS)} "
        f"lost={lost} doubled={doubled}"
    )
    assert lost == 0 and doubled == 0


async def _at_least(coro, want: int):
    got = await coro
    return got if len(got) >= want else None
