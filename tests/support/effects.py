"""The effects ledger and checker of the fault suite (TARGETS "Reliability", Jepsen-style).

A fault test records what its buyers did (`EffectsLedger.attempt` when a checkout session
was opened, `EffectsLedger.accepted` when ``/complete`` answered ``complete``), then the
checker counts every effect of every purchase where it really lives:

==============  ==================================================================
charge          succeeded PaymentIntents at the test processor whose metadata names
                the session (an idempotency failure shows up as two)
payment         ``checkout.payments`` rows of the session
event           ``checkout.outbox`` rows of type ``purchase.completed`` for the session
ledger          ``billing.ledger_entries`` (kind ``payment``) of the payment
receipt         ``.eml`` files in the SMTP sink whose Message-ID is one of the payment's
                receipt rows in ``notifications.emails``, which must all be ``sent``
crm             ``crm_sync.associations`` payment → an existing contact
contact         the payment's ``contact_id`` names that contact (crm_sync's
                ``contact.upserted`` fact, delivered back to checkout)
==============  ==================================================================

A *purchase* is a session the system accepted: the buyer was told it is paid, or there is
a payment row, or the processor holds a succeeded charge for it. Every purchase must have
exactly one of each effect. ``lost`` counts missing (purchase, effect) pairs — plus events
whose payment does not exist, charges that name no session and payments pointing at no
succeeded charge; ``doubled`` counts effects beyond the first (and a retried
``/complete`` that answered a different payment).

The database is read as each schema's owner role (owners are not subject to row-level
security), so the checker sees every account's rows.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import asyncpg

from shared.ids import token_hash
from shared.processor.registry import TEST_SECRET_KEY

if TYPE_CHECKING:
    from devtools.stack import Stack

EFFECTS = ("charge", "payment", "event", "ledger", "receipt", "crm", "contact")
SCHEMAS = ("checkout", "billing", "notifications", "crm_sync")
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass
class Purchase:
    session_id: str
    accepted_by_client: bool = False
    payment_ids: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EFFECTS, 0))
    notes: list[str] = field(default_factory=list)


@dataclass
class EffectsReport:
    label: str
    purchases: int
    lost: int
    doubled: int
    problems: list[str]
    #: Outbox rows (any type, every service) still waiting for a subscriber's acknowledgement.
    undelivered_events: int
    #: Receipt rows not yet in a final state (queued / sending / failed).
    unsent_emails: int
    totals: dict[str, int]
    settle_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0

    def summary(self) -> str:
        totals = " ".join(f"{name}s={self.totals.get(name, 0)}" for name in EFFECTS)
        return (
            f"{self.label} effects: purchases={self.purchases} lost={self.lost} doubled={self.doubled} "
            f"({totals}; settled in {self.settle_seconds:.1f} s)"
        )

    def details(self, limit: int = 25) -> str:
        lines = [self.summary()]
        lines += [f"  - {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  … and {len(self.problems) - limit} more")
        return "\n".join(lines)


class EffectsLedger:
    """What the test's buyers did, and the checker of what the system did about it."""

    def __init__(self, stack: Stack, label: str) -> None:
        self.stack = stack
        self.label = label
        self.attempted: list[str] = []  # checkout tokens, in the order opened
        self.accepted: dict[str, str] = {}  # token -> payment id the buyer was shown

    # -- what the test did ------------------------------------------------------------------
    def attempt(self, token: str) -> None:
        self.attempted.append(token)

    def accept(self, token: str, payment_id: str) -> None:
        previous = self.accepted.setdefault(token, payment_id)
        if previous != payment_id:  # a retried /complete must answer the same payment
            self.accepted[token + "#again"] = payment_id

    # -- reading the effects ----------------------------------------------------------------
    def _dsn(self, service: str) -> str:
        assert self.stack.postgres is not None
        return self.stack.postgres.url(f"commerce_{service}", self.stack.config.database)

    async def _fetch(self, service: str, *queries: tuple[str, tuple]) -> list[list[asyncpg.Record]]:
        conn = await asyncpg.connect(self._dsn(service), timeout=10)
        try:
            return [await conn.fetch(sql, *args) for sql, args in queries]
        finally:
            await conn.close()

    async def _processor_intents(self) -> list[dict]:
        base = f"http://127.0.0.1:{self.stack.config.ports.test_processor}"
        headers = {"Authorization": f"Bearer {TEST_SECRET_KEY}"}
        intents: list[dict] = []
        params: dict[str, str] = {"limit": "100"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            while True:
                async with http.get(f"{base}/v1/payment_intents", params=params, headers=headers) as r:
                    assert r.status == 200, f"listing PaymentIntents at the test processor: {r.status}"
                    page = await r.json()
                intents += page["data"]
                if not page.get("has_more") or not page["data"]:
                    return intents
                params["starting_after"] = page["data"][-1]["id"]

    def _mail_files(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for path in Path(self.stack.config.mail_dir).glob("*.eml"):
            match = MESSAGE_ID.search(path.read_bytes()[:8192])
            found[match.group(1).decode() if match else "<none>"] += 1
        return found

    async def observe(self) -> EffectsReport:
        hashes = [token_hash(t.split("#", 1)[0]) for t in self.attempted]
        (sessions, payments, events) = await self._fetch(
            "checkout",
            ("SELECT id, token_hash, status, payment_id FROM checkout.checkout_sessions", ()),
            ("SELECT id, session_id, status, processor_payment_intent_id, contact_id FROM checkout.payments", ()),
            (
                """SELECT event_id, envelope->'data'->>'session_id' AS session_id,
                          envelope->'data'->>'payment_id' AS payment_id
                   FROM checkout.outbox WHERE type = 'purchase.completed'""",
                (),
            ),
        )
        undelivered = 0
        for schema in SCHEMAS:
            (rows,) = await self._fetch(
                schema, (f"SELECT count(*) AS n FROM {schema}.outbox WHERE delivered_at IS NULL", ())
            )
            undelivered += rows[0]["n"]
        (ledger,) = await self._fetch(
            "billing",
            ("SELECT payment_id, count(*) AS n FROM billing.ledger_entries WHERE kind = 'payment' GROUP BY 1", ()),
        )
        (emails,) = await self._fetch(
            "notifications",
            (
                """SELECT related->>'payment_id' AS payment_id, status, message_id
                   FROM notifications.emails WHERE kind = 'receipt'""",
                (),
            ),
        )
        (crm,) = await self._fetch(
            "crm_sync",
            (
                """SELECT a.related_id AS payment_id, count(*) AS n, min(c.id) AS contact_id
                   FROM crm_sync.associations a
                   JOIN crm_sync.contacts c ON c.account_id = a.account_id AND c.id = a.object_id
                   WHERE a.related_type = 'payment' AND a.object_type = 'contact'
                   GROUP BY 1""",
                (),
            ),
        )
        intents = await self._processor_intents()
        mail = self._mail_files()

        by_hash = {bytes(s["token_hash"]): s["id"] for s in sessions}
        session_of_token = {t: by_hash.get(h) for t, h in zip(self.attempted, hashes, strict=True)}
        problems: list[str] = []
        lost = doubled = 0
        purchases: dict[str, Purchase] = {}

        def purchase(session_id: str) -> Purchase:
            return purchases.setdefault(session_id, Purchase(session_id))

        for token, payment_id in self.accepted.items():
            base_token = token.split("#", 1)[0]
            session_id = session_of_token.get(base_token) or by_hash.get(token_hash(base_token))
            if session_id is None:
                problems.append(f"buyer was told {payment_id} is paid, but its session does not exist")
                lost += 1
                continue
            p = purchase(session_id)
            p.accepted_by_client = True
            if token.endswith("#again"):
                p.notes.append(f"a retried /complete answered another payment {payment_id}")
                doubled += 1
        charges_of: dict[str, list[dict]] = defaultdict(list)
        for intent in intents:
            session_id = (intent.get("metadata") or {}).get("session_id")
            if intent.get("status") == "succeeded":
                if session_id is None:  # a charge no purchase accounts for
                    problems.append(f"succeeded PaymentIntent {intent['id']} names no session")
                    lost += 1
                    continue
                charges_of[session_id].append(intent)
                purchase(session_id)
        payment_rows: dict[str, list] = defaultdict(list)
        for row in payments:
            payment_rows[row["session_id"]].append(row)
            purchase(row["session_id"])
        payment_ids = {row["id"] for row in payments}
        events_of: dict[str, list] = defaultdict(list)
        for row in events:
            events_of[row["session_id"]].append(row)
            if row["payment_id"] not in payment_ids:
                problems.append(f"event {row['event_id']} names payment {row['payment_id']}, which does not exist")
                lost += 1
        ledger_of = {r["payment_id"]: r["n"] for r in ledger}
        crm_of = {r["payment_id"]: r["n"] for r in crm}
        contact_of = {r["payment_id"]: r["contact_id"] for r in crm}
        emails_of: dict[str, list] = defaultdict(list)
        for row in emails:
            emails_of[row["payment_id"]].append(row)

        for session_id, p in sorted(purchases.items()):
            rows = payment_rows.get(session_id, [])
            p.payment_ids = [r["id"] for r in rows]
            c = p.counts
            c["charge"] = len(charges_of.get(session_id, []))
            c["payment"] = len(rows)
            c["event"] = len(events_of.get(session_id, []))
            receipt_rows = [e for pid in p.payment_ids for e in emails_of.get(pid, [])]
            c["ledger"] = sum(ledger_of.get(pid, 0) for pid in p.payment_ids)
            c["crm"] = sum(crm_of.get(pid, 0) for pid in p.payment_ids)
            c["contact"] = sum(
                1 for r in rows if r["contact_id"] is not None and r["contact_id"] == contact_of.get(r["id"])
            )
            c["receipt"] = sum(mail.get(e["message_id"], 0) for e in receipt_rows)
            intent_ids = {i["id"] for i in charges_of.get(session_id, [])}
            for r in rows:
                if r["status"] != "succeeded":
                    p.notes.append(f"payment {r['id']} is {r['status']}")
                if intent_ids and r["processor_payment_intent_id"] not in intent_ids:
                    p.notes.append(f"payment {r['id']} points at {r['processor_payment_intent_id']}, not a charge")
                    lost += 1
            unsent = [e for e in receipt_rows if e["status"] != "sent"]
            if unsent and c["receipt"]:
                p.notes.append(f"receipt delivered but its row says {sorted({e['status'] for e in unsent})}")
            missing = [name for name in EFFECTS if c[name] == 0]
            # a delivered receipt whose send ledger does not say "sent" is not a settled effect
            if c["receipt"] and unsent:
                missing.append("receipt (row not sent)")
            extra = {name: c[name] - 1 for name in EFFECTS if c[name] > 1}
            if len(receipt_rows) > 1 and not extra.get("receipt"):  # queued twice, delivered once
                p.notes.append(f"{len(receipt_rows)} receipt rows")
                doubled += len(receipt_rows) - 1
            lost += len(missing)
            doubled += sum(extra.values())
            if missing or extra or p.notes:
                problems.append(
                    f"session {session_id} (payment {', '.join(p.payment_ids) or '-'}"
                    f"{', buyer told paid' if p.accepted_by_client else ''}): "
                    + ", ".join(
                        [f"missing {m}" for m in missing]
                        + [f"{n} × {name}" for name, n in ((k, c[k]) for k in extra)]
                        + p.notes
                    )
                )
        totals = {name: sum(p.counts[name] for p in purchases.values()) for name in EFFECTS}
        unsent_emails = sum(1 for e in emails if e["status"] in ("queued", "sending", "failed"))
        return EffectsReport(
            label=self.label,
            purchases=len(purchases),
            lost=lost,
            doubled=doubled,
            problems=problems,
            undelivered_events=undelivered,
            unsent_emails=unsent_emails,
            totals=totals,
        )

    async def settle(self, timeout: float = 120.0, quiet: float = 2.0) -> EffectsReport:
        """Wait until every event is acknowledged and every effect is there (or
        ``timeout``), then a little longer so late duplicates are counted too."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            report = await self.observe()
            done = report.lost == 0 and report.undelivered_events == 0 and report.unsent_emails == 0
            if done or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(quiet)
        report = await self.observe()
        report.settle_seconds = time.monotonic() - started
        return report

    async def check_exactly_once(self, timeout: float = 120.0, *, min_purchases: int = 1) -> EffectsReport:
        """Settle, print the one-line summary, and assert nothing was lost or doubled."""
        report = await self.settle(timeout)
        print("\n" + report.summary(), flush=True)
        assert report.ok, report.details()
        assert report.purchases >= min_purchases, report.details()
        return report


# -- billing's subscription charges (TARGETS R1–R3) ------------------------------------------------
CHARGE_EFFECTS = ("charge", "attempt", "event", "payment", "ledger", "receipt", "crm")


@dataclass
class DueCharge:
    subscription_id: str
    period_index: int
    charge_id: str | None = None
    payment_ids: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHARGE_EFFECTS, 0))
    notes: list[str] = field(default_factory=list)


@dataclass
class ChargeEffectsReport:
    label: str
    charges: int
    lost: int
    doubled: int
    problems: list[str]
    undelivered_events: int
    unsent_emails: int
    #: Charges not in a final state, and attempts whose outcome is not recorded.
    unresolved: int
    totals: dict[str, int]
    #: idempotency key -> the due charge it belongs to (``commerce:<charge>:<n>``).
    keys: dict[str, str] = field(default_factory=dict)
    settle_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0

    def summary(self) -> str:
        totals = " ".join(f"{name}s={self.totals.get(name, 0)}" for name in CHARGE_EFFECTS)
        return (
            f"{self.label} effects: charges={self.charges} lost={self.lost} doubled={self.doubled} "
            f"({totals}; settled in {self.settle_seconds:.1f} s)"
        )

    def details(self, limit: int = 25) -> str:
        lines = [self.summary()]
        lines += [f"  - {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  … and {len(self.problems) - limit} more")
        return "\n".join(lines)


class ChargeLedger:
    """The checker of billing's automatic charges: every due (subscription, payment index)
    must have, exactly once,

    ==========  ================================================================
    charge      a succeeded PaymentIntent at the test processor whose metadata names
                the charge (``commerce_charge_id``; the processor's own ledger)
    attempt     a ``billing.charge_attempts`` row recorded ``succeeded`` with that intent
    event       a ``payment.succeeded`` row in billing's outbox for the payment
    payment     a ``checkout.payments`` row (``/v1/payments?subscription_id=``)
    ledger      a ``billing.ledger_entries`` settlement of the payment
    receipt     an ``.eml`` in the SMTP sink whose Message-ID is the payment's receipt
                row in ``notifications.emails`` (which must say ``sent``)
    crm         a ``crm_sync.associations`` payment → contact
    ==========  ================================================================

    ``lost`` counts missing (charge, effect) pairs — a due period with no succeeded
    charge counts for every effect; ``doubled`` counts effects beyond the first, and a
    succeeded intent at the processor that names no due charge.
    """

    def __init__(self, stack: Stack, label: str, account_id: str, due: list[tuple[str, int]]) -> None:
        self.stack = stack
        self.label = label
        self.account_id = account_id
        self.due = list(due)
        self._effects = EffectsLedger(stack, label)  # its connections and mail reader

    @classmethod
    async def next_payments(
        cls, stack: Stack, label: str, account_id: str, count: int, *, periods: int = 1, timeout: float = 120.0
    ) -> ChargeLedger:
        """Once ``count`` subscriptions of the account are active with a saved payment
        method, a checker whose due charges are each one's next ``periods`` automatic
        payments (the test moves the clock past them)."""
        probe = EffectsLedger(stack, label)
        deadline = time.monotonic() + timeout
        while True:
            (rows,) = await probe._fetch(
                "billing",
                (
                    """SELECT id, next_index FROM billing.subscriptions
                       WHERE account_id = $1 AND status = 'active' AND payment_method_id IS NOT NULL
                         AND next_payment_date IS NOT NULL ORDER BY id""",
                    (account_id,),
                ),
            )
            if len(rows) >= count:
                due = [(r["id"], r["next_index"] + i) for r in rows for i in range(periods)]
                return cls(stack, label, account_id, due)
            assert time.monotonic() < deadline, f"only {len(rows)} of {count} subscriptions are active"
            await asyncio.sleep(0.5)

    @property
    def processor_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.config.ports.test_processor}"

    async def processor_intents(self) -> list[dict]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.get(f"{self.processor_url}/_config/accounts/{self.account_id}/payment_intents") as r:
                assert r.status == 200, f"listing the account's PaymentIntents: {r.status}"
                return (await r.json())["data"]

    async def replays(self, prefix: str = "commerce:") -> dict[str, int]:
        """Replays of each idempotency key at the processor (the same key sent again)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.get(f"{self.processor_url}/_config/idempotency", params={"prefix": prefix}) as r:
                assert r.status == 200, f"reading the processor's replay counts: {r.status}"
                return (await r.json())["keys"]

    async def observe(self) -> ChargeEffectsReport:
        fetch, account = self._effects._fetch, self.account_id
        (charges, attempts, events, ledger) = await fetch(
            "billing",
            (
                "SELECT id, subscription_id, period_index, status FROM billing.charges WHERE account_id = $1",
                (account,),
            ),
            (
                """SELECT id, charge_id, number, status, idempotency_key, payment_id, processor_payment_intent_id
                   FROM billing.charge_attempts WHERE account_id = $1""",
                (account,),
            ),
            (
                """SELECT envelope->'data'->>'payment_id' AS payment_id, count(*) AS n FROM billing.outbox
                   WHERE account_id = $1 AND type = 'payment.succeeded' GROUP BY 1""",
                (account,),
            ),
            (
                """SELECT payment_id, count(*) AS n FROM billing.ledger_entries
                   WHERE account_id = $1 AND kind = 'settlement' GROUP BY 1""",
                (account,),
            ),
        )
        (payments,) = await fetch(
            "checkout",
            (
                """SELECT id, status, processor_payment_intent_id FROM checkout.payments
                   WHERE account_id = $1 AND source_type = 'subscription'""",
                (account,),
            ),
        )
        (emails,) = await fetch(
            "notifications",
            (
                """SELECT related->>'payment_id' AS payment_id, status, message_id FROM notifications.emails
                   WHERE account_id = $1 AND kind = 'receipt'""",
                (account,),
            ),
        )
        (crm,) = await fetch(
            "crm_sync",
            (
                """SELECT a.related_id AS payment_id, count(*) AS n FROM crm_sync.associations a
                   JOIN crm_sync.contacts c ON c.account_id = a.account_id AND c.id = a.object_id
                   WHERE a.account_id = $1 AND a.related_type = 'payment' AND a.object_type = 'contact'
                   GROUP BY 1""",
                (account,),
            ),
        )
        undelivered = 0
        for schema in SCHEMAS:
            (rows,) = await fetch(
                schema,
                (
                    f"SELECT count(*) AS n FROM {schema}.outbox WHERE delivered_at IS NULL AND account_id = $1",
                    (account,),
                ),
            )
            undelivered += rows[0]["n"]
        intents = await self.processor_intents()
        mail = self._effects._mail_files()

        charge_of = {(c["subscription_id"], c["period_index"]): c for c in charges}
        attempts_of: dict[str, list] = defaultdict(list)
        for a in attempts:
            attempts_of[a["charge_id"]].append(a)
        intents_of: dict[str, list[dict]] = defaultdict(list)
        due_ids = {charge_of[d]["id"] for d in self.due if d in charge_of}
        problems: list[str] = []
        lost = doubled = 0
        for intent in intents:
            if intent.get("status") != "succeeded":
                continue
            charge_id = (intent.get("metadata") or {}).get("commerce_charge_id")
            if charge_id in due_ids:
                intents_of[charge_id].append(intent)
            else:  # money taken for nothing that was due
                problems.append(f"succeeded PaymentIntent {intent['id']} names charge {charge_id}, which was not due")
                doubled += 1
        events_of = {r["payment_id"]: r["n"] for r in events}
        ledger_of = {r["payment_id"]: r["n"] for r in ledger}
        crm_of = {r["payment_id"]: r["n"] for r in crm}
        payments_of: dict[str, list] = defaultdict(list)
        for p in payments:
            payments_of[p["id"]].append(p)
        emails_of: dict[str, list] = defaultdict(list)
        for e in emails:
            emails_of[e["payment_id"]].append(e)

        keys: dict[str, str] = {}
        unresolved = 0
        report_charges: list[DueCharge] = []
        for subscription_id, period_index in self.due:
            d = DueCharge(subscription_id, period_index)
            report_charges.append(d)
            row = charge_of.get((subscription_id, period_index))
            if row is None:
                problems.append(f"subscription {subscription_id} payment {period_index}: no charge at all")
                lost += len(CHARGE_EFFECTS)
                continue
            d.charge_id = row["id"]
            if row["status"] not in ("succeeded", "failed", "canceled"):
                unresolved += 1
                d.notes.append(f"charge is {row['status']}")
            own = attempts_of.get(row["id"], [])
            unresolved += sum(1 for a in own if a["status"] in ("pending", "processing"))
            for a in own:
                keys[a["idempotency_key"]] = row["id"]
            succeeded = [a for a in own if a["status"] == "succeeded"]
            d.payment_ids = [a["payment_id"] for a in succeeded]
            charged = intents_of.get(row["id"], [])
            c = d.counts
            c["charge"] = len(charged)
            c["attempt"] = len(succeeded)
            c["event"] = sum(events_of.get(pid, 0) for pid in d.payment_ids)
            rows = [p for pid in d.payment_ids for p in payments_of.get(pid, [])]
            c["payment"] = sum(1 for p in rows if p["status"] == "succeeded")
            c["ledger"] = sum(ledger_of.get(pid, 0) for pid in d.payment_ids)
            c["crm"] = sum(crm_of.get(pid, 0) for pid in d.payment_ids)
            receipt_rows = [e for pid in d.payment_ids for e in emails_of.get(pid, [])]
            c["receipt"] = sum(mail.get(e["message_id"], 0) for e in receipt_rows)
            intent_ids = {i["id"] for i in charged}
            for a in succeeded:
                if intent_ids and a["processor_payment_intent_id"] not in intent_ids:
                    d.notes.append(f"attempt {a['id']} recorded {a['processor_payment_intent_id']}, not a charge")
                    lost += 1
            for p in rows:
                if intent_ids and p["processor_payment_intent_id"] not in intent_ids:
                    d.notes.append(f"payment {p['id']} points at {p['processor_payment_intent_id']}, not a charge")
                    lost += 1
            missing = [name for name in CHARGE_EFFECTS if c[name] == 0]
            unsent = [e for e in receipt_rows if e["status"] != "sent"]
            if c["receipt"] and unsent:
                missing.append("receipt (row not sent)")
            if len(receipt_rows) > 1 and c["receipt"] <= 1:  # queued twice, delivered once
                d.notes.append(f"{len(receipt_rows)} receipt rows")
                doubled += len(receipt_rows) - 1
            extra = {name: c[name] - 1 for name in CHARGE_EFFECTS if c[name] > 1}
            lost += len(missing)
            doubled += sum(extra.values())
            if missing or extra or d.notes:
                problems.append(
                    f"charge {row['id']} (subscription {subscription_id} payment {period_index}, "
                    f"payments {', '.join(d.payment_ids) or '-'}): "
                    + ", ".join([f"missing {m}" for m in missing] + [f"{c[k]} × {k}" for k in extra] + d.notes)
                )
        totals = {name: sum(d.counts[name] for d in report_charges) for name in CHARGE_EFFECTS}
        unsent_emails = sum(1 for e in emails if e["status"] in ("queued", "sending", "failed"))
        return ChargeEffectsReport(
            label=self.label,
            charges=len(self.due),
            lost=lost,
            doubled=doubled,
            problems=problems,
            undelivered_events=undelivered,
            unsent_emails=unsent_emails,
            unresolved=unresolved,
            totals=totals,
            keys=keys,
        )

    async def settle(self, timeout: float = 120.0, quiet: float = 2.0) -> ChargeEffectsReport:
        """Wait until every due charge is final with all its effects, every event is
        acknowledged and every receipt sent (or ``timeout``), then a little longer so
        late duplicates are counted too."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            report = await self.observe()
            done = (
                report.lost == 0
                and report.unresolved == 0
                and report.undelivered_events == 0
                and report.unsent_emails == 0
            )
            if done or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(quiet)
        report = await self.observe()
        report.settle_seconds = time.monotonic() - started
        return report

    async def check_exactly_once(self, timeout: float = 120.0) -> ChargeEffectsReport:
        """Settle, print the one-line summary, and assert nothing was lost or doubled."""
        report = await self.settle(timeout)
        print("\n" + report.summary(), flush=True)
        assert report.ok, report.details()
        assert report.unresolved == 0, report.details()
        assert report.charges == len(self.due) and report.charges > 0, report.details()
        return report


# -- every e-mail of an account (TARGETS R13; the notification catalogue) ---------------------------
@dataclass
class EmailEffectsReport:
    label: str
    #: Rows in the send ledger (each one message that must arrive once).
    emails: int
    lost: int
    doubled: int
    #: Rows not in a final state yet (queued / sending), and rows by status.
    unsent: int
    statuses: dict[str, int]
    problems: list[str]
    settle_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0

    def summary(self) -> str:
        statuses = " ".join(f"{k}={v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.label} effects: emails={self.emails} lost={self.lost} doubled={self.doubled} "
            f"({statuses}; settled in {self.settle_seconds:.1f} s)"
        )


class EmailLedger:
    """The checker of an account's e-mails: every row of ``notifications.emails`` must be
    ``sent`` and its Message-ID must be in the SMTP sink exactly once. ``lost`` counts
    rows not sent or not delivered; ``doubled`` counts deliveries beyond the first, and
    messages in the sink that no row of the account sent (``expected`` rows: fewer is
    lost too)."""

    def __init__(self, stack: Stack, label: str, account_id: str, expected: int | None = None) -> None:
        self.label = label
        self.account_id = account_id
        self.expected = expected
        self._effects = EffectsLedger(stack, label)

    async def rows(self) -> list[asyncpg.Record]:
        (rows,) = await self._effects._fetch(
            "notifications",
            (
                """SELECT id, kind, recipient, status, message_id, attempts, next_attempt_at, updated_at, last_error
                   FROM notifications.emails WHERE account_id = $1 ORDER BY id""",
                (self.account_id,),
            ),
        )
        return rows

    async def observe(self) -> EmailEffectsReport:
        rows = await self.rows()
        mail = self._effects._mail_files()
        ours = {r["message_id"] for r in rows}
        problems: list[str] = []
        lost = doubled = 0
        for r in rows:
            copies = mail.get(r["message_id"], 0)
            if copies == 0 or r["status"] != "sent":
                lost += 1
                problems.append(f"{r['id']} ({r['kind']} to {r['recipient']}): {r['status']}, {copies} delivered")
            elif copies > 1:
                doubled += copies - 1
                problems.append(f"{r['id']} ({r['kind']} to {r['recipient']}): delivered {copies} times")
        strangers = sum(n for message_id, n in mail.items() if message_id not in ours)
        if strangers:  # a message in the sink that no row of this account sent
            doubled += strangers
            problems.append(f"{strangers} messages in the sink belong to no e-mail row")
        if self.expected is not None and len(rows) < self.expected:
            lost += self.expected - len(rows)
            problems.append(f"{len(rows)} e-mail rows, {self.expected} expected")
        statuses = Counter(r["status"] for r in rows)
        return EmailEffectsReport(
            label=self.label,
            emails=len(rows),
            lost=lost,
            doubled=doubled,
            unsent=statuses["queued"] + statuses["sending"],
            statuses=dict(statuses),
            problems=problems,
        )

    async def check_exactly_once(self, timeout: float = 120.0, quiet: float = 2.0) -> EmailEffectsReport:
        """Wait until every row is final (or ``timeout``), a little longer for late
        duplicates, print the summary line, and assert nothing was lost or doubled."""
        started = time.monotonic()
        while True:
            report = await self.observe()
            if (report.ok and report.unsent == 0) or time.monotonic() - started > timeout:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(quiet)
        report = await self.observe()
        report.settle_seconds = time.monotonic() - started
        print("\n" + report.summary(), flush=True)
        assert report.ok, "\n".join([report.summary(), *report.problems[:25]])
        return report
