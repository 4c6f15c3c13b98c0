"""TARGETS P6: a receipt e-mail — render HTML + text and build the MIME message — at
≥ 0.13 × bare Jinja2 rendering of the same templates (and ≥ 5,000 messages/s per core).

``python bench/p6_receipt_render.py [--seconds 2] [--rounds 7] [--messages 500]``

One process, one core, no I/O. Both sides work through the same set of purchases (card
payments with a discounted, taxed line, a second line, an order discount; half in
English/USD, half in Swedish/SEK with the account's time zone; every amount different):

* **ours** — exactly what the notifications worker does for a receipt: the receipt's
  context from the ``purchase.completed`` event (`purchase_mail.receipt_context`: every
  amount and date formatted for the locale by `shared.locale_format`), the subject, HTML
  and text rendered by the service's `Renderer`, and the MIME message built to the bytes
  that go to the SMTP server (`render.build_message`);
* **bare** — a plain ``jinja2.Environment`` over the same template directory (HTML
  autoescaped, templates compiled before timing, no reload checks) rendering the same
  three templates (subject, HTML, text) with each purchase's already formatted context.

Rounds alternate which side goes first; each side runs for ``--seconds`` per round over
the messages in a loop. Rates are per second of the process's CPU time (one core's work,
whatever else the shared machine runs) and per wall-clock second. Prints each round,
the median rates, and ``P6: ratio=… (target ≥ 0.13); ours=… messages/s per core
(target ≥ 5,000)`` with the wall-clock ratio beside it.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jinja2

from bench import _common as common
from services.notifications.emails.purchase_mail import receipt_context
from services.notifications.emails.render import TEMPLATES, Renderer, build_message
from shared.accounts import Account, AccountSettings
from shared.clock import AccountClock
from shared.events.models import PurchaseCompletedV1, PurchaseContact, PurchasedItem, TaxRateRef

TARGET_RATIO = 0.13
TARGET_RATE = 5000.0
SENDER = "receipts@commerce.localhost"


def account(language: str) -> Account:
    currency, zone = ("USD", "America/New_York") if language == "en" else ("SEK", "Europe/Stockholm")
    settings = AccountSettings(language=language, time_zone=zone, currencies=[currency], default_currency=currency)
    return Account(f"acct_{language}", 1, "Acme Coffee", True, settings, AccountClock(0), None)


def purchase(i: int, currency: str) -> PurchaseCompletedV1:
    unit = 1000 + 137 * i
    line1 = 2 * (unit - 100)
    tax = line1 // 4
    subtotal = line1 + 4450
    return PurchaseCompletedV1(
        payment_id=f"pay_{uuid.uuid4().hex[:12]}",
        session_id=f"cs_{i}",
        source={"type": "payment_link", "id": "plink_bench"},
        amount=subtotal - 500 + tax,
        currency=currency,
        subtotal=subtotal,
        discount=500,
        tax=tax,
        discount_code="SPRING",
        method_type="card",
        contact=PurchaseContact(email=f"buyer{i}@example.com", firstname="Jane", lastname="Doe"),
        items=[
            PurchasedItem(
                line_item_id="li_1",
                name="Espresso beans, 1 kg",
                quantity=2,
                unit_amount=unit,
                unit_discount=100,
                amount=line1,
                tax=tax,
                tax_rate=TaxRateRef(id="txr_vat", name="VAT", percentage="25"),
            ),
            PurchasedItem(line_item_id="li_2", name="Grinder cleaning", quantity=1, unit_amount=4450, amount=4450),
        ],
        paid_at=datetime(2027, 3, 1, 12, tzinfo=UTC) + timedelta(hours=i),
        test_mode=True,
    )


def workload(count: int) -> list[tuple[Account, PurchaseCompletedV1]]:
    en, sv = account("en"), account("sv")
    return [(en, purchase(i, "USD")) if i % 2 == 0 else (sv, purchase(i, "SEK")) for i in range(count)]


class Ours:
    """The notifications worker's receipt: context, render, MIME."""

    def __init__(self, work: list[tuple[Account, PurchaseCompletedV1]]) -> None:
        self.work = work
        self.renderer = Renderer()

    def one(self, i: int) -> int:
        acct, event = self.work[i]
        rendered = self.renderer.render("receipt", acct.locale, receipt_context(acct, event))
        message = build_message(
            sender=SENDER,
            sender_name=acct.name,
            recipient=event.contact.email,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=f"<email_{i}@commerce.localhost>",
            sent_at=event.paid_at,
        )
        return len(message.data)


class Bare:
    """Plain Jinja2: the same three templates, the context already formatted."""

    def __init__(self, work: list[tuple[Account, PurchaseCompletedV1]]) -> None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            auto_reload=False,
        )
        self.templates = {
            lang: [env.get_template(f"{lang}/receipt.{kind}") for kind in ("subject.txt", "html", "txt")]
            for lang in ("en", "sv")
        }
        self.contexts = [(acct.locale, receipt_context(acct, event)) for acct, event in work]

    def one(self, i: int) -> int:
        lang, context = self.contexts[i]
        subject_t, html_t, text_t = self.templates[lang]
        subject = subject_t.render(context)
        html = html_t.render(subject=subject, locale=lang, **context)
        return len(subject) + len(html) + len(text_t.render(context))


def rate(side: Ours | Bare, count: int, seconds: float) -> tuple[float, float]:
    """Messages per second over ``seconds`` of wall-clock time (whole passes of the
    messages): (per wall-clock second, per second of this process's CPU time). The
    machine is shared: the CPU-time rate is what one core does, whatever else runs."""
    gc.collect()
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        for i in range(count):
            side.one(i)
        done += count
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed, done / max(time.process_time() - cpu, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/p6_receipt_render.py")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args(argv)

    work = workload(args.messages)
    ours, bare = Ours(work), Bare(work)
    sample = Ours(work[:1])
    size = sample.one(0)
    common.say(f"P6 receipt render + MIME vs bare Jinja2 — {args.messages} receipts (en/USD, sv/SEK), one process")
    common.say(f"   {common.machine_load()}; a receipt is {size} bytes on the wire")
    for side in (ours, bare):  # warm-up: compile, fill the format caches
        rate(side, args.messages, 0.3)
    ours_rates: list[tuple[float, float]] = []
    bare_rates: list[tuple[float, float]] = []
    for n in range(args.rounds):
        order = [("ours", ours, ours_rates), ("bare", bare, bare_rates)]
        if n % 2:
            order.reverse()
        for _, side, rates in order:
            rates.append(rate(side, args.messages, args.seconds))
        (ours_wall, ours_cpu), (bare_wall, bare_cpu) = ours_rates[-1], bare_rates[-1]
        common.say(
            f"   round {n + 1}: ours {ours_cpu:,.0f} msg/s, bare {bare_cpu:,.0f} msg/s per CPU second, "
            f"ratio {ours_cpu / bare_cpu:.3f} (wall clock: {ours_wall:,.0f} vs {bare_wall:,.0f}, "
            f"{ours_wall / bare_wall:.3f})"
        )
    ours_cpu = statistics.median(o[1] for o in ours_rates)
    bare_cpu = statistics.median(b[1] for b in bare_rates)
    ratio = statistics.median(o[1] / b[1] for o, b in zip(ours_rates, bare_rates, strict=True))
    wall_ratio = statistics.median(o[0] / b[0] for o, b in zip(ours_rates, bare_rates, strict=True))
    common.say(f"   ours (context + render HTML/text + MIME bytes): {ours_cpu:,.0f} messages per CPU second")
    common.say(f"   bare Jinja2 (subject + HTML + text):          {bare_cpu:,.0f} messages per CPU second")
    ok = ratio >= TARGET_RATIO and ours_cpu >= TARGET_RATE
    common.say(
        f"P6: ratio={ratio:.3f} (target ≥ {TARGET_RATIO}); ours={ours_cpu:,.0f} messages/s per core "
        f"(target ≥ {TARGET_RATE:,.0f}); wall-clock ratio={wall_ratio:.3f} {'OK' if ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
