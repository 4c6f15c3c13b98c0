"""The whole e-mail catalogue (PRODUCT §8, §11; issue 5): every kind, in English and
Swedish, rendered from its real triggering event, delivered through the notifications
actors to a real SMTP server (the devtools sink, aiosmtpd), and read back as the sink
received it — headers, the text and HTML parts, the amounts in the language's locale
format ("$1,234.50", "1 234,50 kr"), the dates, the terms and the line math.

Exactly once is checked the ways a fact repeats: the same event again (the inbox), the
same fact in another event (the send ledger), and an older snapshot arriving after a
newer one (nothing contradicts what was already said).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytest

from services.notifications.emails import service
from services.notifications.emails.quote_mail import QuotePaid, quote_fact
from services.notifications.emails.sender import send_for_fact
from shared.db import tenant_tx
from shared.events.models import (
    ChargedLine,
    InvoiceLine,
    InvoiceTerms,
    InvoiceUpdatedV1,
    PaymentFailedV1,
    PaymentSucceededV1,
    PurchaseCompletedV1,
    PurchaseContact,
    PurchasedItem,
    SubscriptionCharge,
    SubscriptionReminderDueV1,
    SubscriptionTerms,
    SubscriptionUpdatedV1,
    TaxRateRef,
)
from tests.support.mail import NBSP, deliver, envelope, ledger, messages, new_account, parts, rows, subject_of

BUYER = "jane@example.com"
OWNER = "owner@merchant.test"
RECIPIENT = "ops@merchant.test"
UPDATE_URL = "https://pay.example.test/billing/payment-method/tok_abc123"
INVOICE_URL = "https://pay.example.test/invoices/tok_inv456"
FROM = "receipts@commerce.localhost"
#: One line's name carries markup: the HTML part must show it escaped (TARGETS R14).
ITEM = "Espresso <beans>"
VAT = TaxRateRef(id="txr_vat", name="VAT", percentage="25")


@dataclass(frozen=True)
class Lang:
    code: str
    currency: str
    time_zone: str

    def money(self, text_en: str, text_sv: str) -> str:
        """The phrase in this language; Swedish amounts are written with plain spaces
        here and compared with babel's no-break spaces ("1 234,50 kr")."""
        return text_en if self.code == "en" else re.sub(r"(?<=\d) (?=\d|kr)", NBSP, text_sv)


EN = Lang("en", "USD", "America/New_York")
SV = Lang("sv", "SEK", "Europe/Stockholm")
#: 23:30 UTC on 1 March is 1 March in New York and 2 March in Stockholm: dates are the account's.
PAID_AT = datetime(2027, 3, 1, 23, 30, tzinfo=UTC)


@dataclass
class Case:
    """A kind of message: how to make its fact happen, and what the one message says."""

    kind: str
    recipient: str
    subject: str
    #: Phrases both parts contain (amounts, dates, terms, links).
    both: list[str]
    #: Phrases only the text part has (the line math as a reader sees it).
    text: list[str] = field(default_factory=list)
    #: Phrases only the HTML part has.
    html: list[str] = field(default_factory=list)
    #: Key of ``related`` in the ledger -> value.
    related: dict = field(default_factory=dict)


# -- the facts ------------------------------------------------------------------------------------
def _purchase(lang: Lang, **changes) -> PurchaseCompletedV1:
    values = {
        "payment_id": f"pay_{uuid.uuid4().hex[:12]}",
        "session_id": "cs_1",
        "source": {"type": "payment_link", "id": "plink_1"},
        "amount": 150000,  # 2 × (600 − 50) + 200 = 1 300 − 100 discount + 300 tax... see lines
        "currency": lang.currency,
        "subtotal": 123450,
        "discount": 1000,
        "tax": 27550,
        "discount_code": "SPRING",
        "method_type": "card",
        "contact": PurchaseContact(email=BUYER, firstname="Jane", lastname="Doe"),
        "items": [
            PurchasedItem(
                line_item_id="li_1",
                name=ITEM,
                quantity=2,
                unit_amount=60000,
                unit_discount=500,
                amount=119000,
                tax=27550,
                tax_rate=VAT,
            ),
            PurchasedItem(line_item_id="li_2", name="Grinder cleaning", quantity=1, unit_amount=4450, amount=4450),
        ],
        "paid_at": PAID_AT,
        "test_mode": True,
    }
    values["amount"] = values["subtotal"] - values["discount"] + values["tax"]  # 1 500,00
    return PurchaseCompletedV1(**{**values, **changes})


def _first_payment_purchase(lang: Lang) -> PurchaseCompletedV1:
    plan = PurchasedItem(
        line_item_id="li_plan",
        name="Coffee club",
        quantity=1,
        unit_amount=123450,
        amount=123450,
        recurring_tax=0,
        recurring={"interval": "monthly", "payments": 12, "start_date": date(2027, 3, 1)},
        subscription_group="group_1",
    )
    terms = SubscriptionTerms(
        subscription_group="group_1",
        interval="monthly",
        payments=12,
        start_date=date(2027, 3, 1),
        first_payment_charged=True,
        line_item_ids=["li_plan"],
        amount=123450,
    )
    return _purchase(lang, items=[plan], subscriptions=[terms], subtotal=123450, discount=0, tax=0, amount=123450)


LINES = [
    ChargedLine(name=ITEM, quantity=2, unit_amount=60000, unit_discount=500, amount=119000, tax=29750, tax_rate=VAT),
    ChargedLine(name="Grinder cleaning", quantity=1, unit_amount=4450, amount=4450),
]
CHARGE_TOTAL = 119000 + 4450 + 29750  # 1 532,00


def _charge(**changes) -> SubscriptionCharge:
    values = {
        "subscription_id": "sub_club",
        "charge_id": "sch_1",
        "attempt_id": "satt_1",
        "period_index": 2,
        "due_date": date(2027, 3, 1),
        "trigger": "due",
        "interval": "monthly",
        "lines": LINES,
        "subtotal": 123450,
        "tax": 29750,
        "contact_name": "Jane Doe",
        "status": "active",
        "payments_made": 3,
        "payments_total": 12,
        "next_payment_date": date(2027, 4, 1),
    }
    return SubscriptionCharge(**{**values, **changes})


def _renewal(lang: Lang) -> PaymentSucceededV1:
    return PaymentSucceededV1(
        payment_id=f"pay_{uuid.uuid4().hex[:12]}",
        amount=CHARGE_TOTAL,
        currency=lang.currency,
        method_type="card",
        source={"type": "subscription", "id": "sub_club"},
        email=BUYER,
        succeeded_at=PAID_AT,
        subscription=_charge(),
    )


def _failure(lang: Lang) -> PaymentFailedV1:
    sub = _charge(
        status="past_due",
        payments_made=2,
        update_url=UPDATE_URL,
        next_retry_at=datetime(2027, 3, 3, 23, 30, tzinfo=UTC),
        email_buyer=True,
        notify_recipients=True,
    )
    return PaymentFailedV1(
        payment_id=f"pay_{uuid.uuid4().hex[:12]}",
        amount=CHARGE_TOTAL,
        currency=lang.currency,
        method_type="card",
        source={"type": "subscription", "id": "sub_club"},
        email=BUYER,
        decline_code="insufficient_funds",
        failed_at=PAID_AT,
        subscription=sub,
    )


def _reminder(lang: Lang) -> SubscriptionReminderDueV1:
    return SubscriptionReminderDueV1(
        subscription_id="sub_club",
        period_index=3,
        charge_date=date(2027, 4, 1),
        amount=CHARGE_TOTAL,
        currency=lang.currency,
        email=BUYER,
        contact_name="Jane Doe",
        lines=LINES,
        interval="monthly",
        update_url=UPDATE_URL,
    )


def _status(lang: Lang, status: str) -> SubscriptionUpdatedV1:
    return SubscriptionUpdatedV1(
        subscription_id="sub_club",
        version=9,
        status=status,
        previous_status="active",
        email=BUYER,
        contact_name="Jane Doe",
        currency=lang.currency,
        amount=CHARGE_TOTAL,
        interval="monthly",
        payments_total=12,
        payments_made=12 if status == "completed" else 5,
        start_date=date(2026, 4, 1),
        source={"type": "payment_link", "id": "plink_1"},
        canceled_at=PAID_AT if status == "canceled" else None,
        ended_at=PAID_AT,
    )


def invoice(lang: Lang, version: int = 1, **changes) -> InvoiceUpdatedV1:
    values = {
        "invoice_id": "inv_club_3",
        "version": version,
        "number": "K7QF2M3A-0003",
        "status": "open",
        "previous_status": None,
        "subscription_id": "sub_club",
        "period_index": 2,
        "currency": lang.currency,
        "lines": [
            InvoiceLine(
                name=ITEM,
                quantity=2,
                unit_amount=60000,
                unit_discount=500,
                amount=119000,
                tax=29750,
                tax_rate=VAT,
                period_start=date(2027, 3, 10),
                period_end=date(2027, 4, 9),
            ),
            InvoiceLine(name="Grinder cleaning", quantity=1, unit_amount=4450, amount=4450),
        ],
        "subtotal": 124450,
        "discount": 1000,
        "tax": 29750,
        "total": CHARGE_TOTAL,
        "issue_date": date(2027, 3, 10),
        "due_date": date(2027, 4, 9),
        "payment_terms_days": 30,
        "email": BUYER,
        "contact_name": "Jane Doe",
        "url": INVOICE_URL,
        "token_hash": "ab" * 32,
        "language": lang.code,
        "locale": "en_US" if lang.code == "en" else "sv_SE",
        "terms": InvoiceTerms(interval="monthly", payments_total=12, start_date=date(2027, 1, 10)),
    }
    return InvoiceUpdatedV1(**{**values, **changes})


def _overdue(lang: Lang) -> InvoiceUpdatedV1:
    return invoice(lang, 2, previous_status="open", overdue_at=datetime(2027, 4, 10, 6, tzinfo=UTC))


def _paid(lang: Lang) -> InvoiceUpdatedV1:
    return invoice(
        lang,
        3,
        status="paid",
        previous_status="open",
        overdue_at=datetime(2027, 4, 10, 6, tzinfo=UTC),
        amount_paid=CHARGE_TOTAL,
        paid_at=datetime(2027, 4, 12, 9, tzinfo=UTC),
        payment_id="pay_inv3",
    )


# -- what each kind must say ------------------------------------------------------------------------
def cases(lang: Lang) -> dict[str, tuple[Callable[[Lang], object], Case]]:
    en = lang.code == "en"
    m = lang.money
    total = m("$1,500.00", "1 500,00 kr")
    charge = m("$1,532.00", "1 532,00 kr")
    plan = m("$1,234.50", "1 234,50 kr")
    day = "March 1, 2027" if en else "2 mars 2027"  # PAID_AT in each account's time zone
    line_text = (
        f"- {ITEM}: 2 × ($600.00 − $5.00 discount) = $1,190.00"
        if en
        else f"- {ITEM}: 2 × (600,00{NBSP}kr − 5,00{NBSP}kr rabatt) = 1{NBSP}190,00{NBSP}kr"
    )
    vat = "VAT (25%): $297.50" if en else f"VAT (25{NBSP}%): 297,50{NBSP}kr"
    return {
        "receipt": (
            _purchase,
            Case(
                "receipt",
                BUYER,
                f"Your receipt from Acme Coffee ({total.replace(NBSP, ' ')})"
                if en
                else f"Ditt kvitto från Acme Coffee ({total.replace(NBSP, ' ')})",
                [total, day, "SPRING"],
                text=[
                    line_text,
                    m("Subtotal: $1,234.50", "Delsumma: 1 234,50 kr"),
                    m("Discounts: −$10.00 (code SPRING)", "Rabatter: −10,00 kr (kod SPRING)"),
                    "VAT (25%): $275.50" if en else f"VAT (25{NBSP}%): 275,50{NBSP}kr",
                    m("Total paid: $1,500.00", "Totalt betalt: 1 500,00 kr"),
                    "This was a one-time payment: nothing more will be charged."
                    if en
                    else "Detta var en engångsbetalning: inget mer kommer att dras.",
                    ITEM,
                ],
                html=["Espresso &lt;beans&gt;"],
                related={"source": {"type": "payment_link", "id": "plink_1"}},
            ),
        ),
        "receipt_first_payment": (
            _first_payment_purchase,
            Case(
                "receipt",
                BUYER,
                f"Your receipt from Acme Coffee ({plan.replace(NBSP, ' ')})"
                if en
                else f"Ditt kvitto från Acme Coffee ({plan.replace(NBSP, ' ')})",
                [plan, "Coffee club"],
                text=[
                    f"Subscription: Coffee club: {plan} billed monthly, 12 payments, starting March 1, 2027."
                    if en
                    else f"Prenumeration: Coffee club: {plan} som debiteras varje månad, 12 betalningar, "
                    "med start den 1 mars 2027.",
                    "This payment was payment 1 of 12. Next payment: April 1, 2027."
                    if en
                    else "Denna betalning var betalning 1 av 12. Nästa betalning: 1 april 2027.",
                ],
            ),
        ),
        "receipt_renewal": (
            _renewal,
            Case(
                "receipt",
                BUYER,
                f"Your receipt from Acme Coffee ({charge.replace(NBSP, ' ')}, payment 3 of 12)"
                if en
                else f"Ditt kvitto från Acme Coffee ({charge.replace(NBSP, ' ')}, betalning 3 av 12)",
                [charge, day, "April 1, 2027" if en else "1 april 2027"],
                text=[line_text, vat, m("Total: $1,532.00", "Totalt: 1 532,00 kr")],
                related={"subscription_id": "sub_club"},
            ),
        ),
        "payment_notification": (
            _purchase,
            Case(
                "payment_notification",
                RECIPIENT,
                f"Payment received: {total.replace(NBSP, ' ')} from Jane Doe"
                if en
                else f"Betalning mottagen: {total.replace(NBSP, ' ')} från Jane Doe",
                [total, day, "Jane Doe (jane@example.com)"],
                text=[line_text, "payment link plink_1" if en else "betalningslänk plink_1"],
            ),
        ),
        "payment_notification_renewal": (
            _renewal,
            Case(
                "payment_notification",
                RECIPIENT,
                f"Subscription payment received: {charge.replace(NBSP, ' ')} from Jane Doe"
                if en
                else f"Prenumerationsbetalning mottagen: {charge.replace(NBSP, ' ')} från Jane Doe",
                [charge, day],
                text=["Payment 3 of 12, billed monthly." if en else "Betalning 3 av 12, debiteras varje månad."],
            ),
        ),
        "payment_failed": (
            _failure,
            Case(
                "payment_failed",
                BUYER,
                f"Your payment of {charge.replace(NBSP, ' ')} to Acme Coffee failed"
                if en
                else f"Din betalning på {charge.replace(NBSP, ' ')} till Acme Coffee misslyckades",
                # the retry at 23:30 UTC on 3 March: 3 March in New York, 4 March in Stockholm
                [charge, UPDATE_URL, "March 3, 2027" if en else "4 mars 2027"],
                html=[f'href="{UPDATE_URL}"'],
            ),
        ),
        "payment_failed_recipients": (
            _failure,
            Case(
                "payment_failed_recipients",
                RECIPIENT,
                f"Subscription payment failed: {charge.replace(NBSP, ' ')} from Jane Doe"
                if en
                else f"Prenumerationsbetalning misslyckades: {charge.replace(NBSP, ' ')} från Jane Doe",
                [charge, "insufficient_funds"],
            ),
        ),
        "upcoming_payment": (
            _reminder,
            Case(
                "upcoming_payment",
                BUYER,
                f"Upcoming payment to Acme Coffee on April 1, 2027 ({charge})"
                if en
                else f"Kommande betalning till Acme Coffee den 1 april 2027 ({charge.replace(NBSP, ' ')})",
                [charge, UPDATE_URL],
                text=[line_text, vat],
            ),
        ),
        "invoice_issued": (
            invoice,
            Case(
                "invoice_issued",
                BUYER,
                f"Invoice K7QF2M3A-0003 from Acme Coffee ({charge}, due April 9, 2027)"
                if en
                else f"Faktura K7QF2M3A-0003 från Acme Coffee ({charge.replace(NBSP, ' ')}, förfaller 9 april 2027)",
                [charge, INVOICE_URL, "K7QF2M3A-0003", "April 9, 2027" if en else "9 april 2027"],
                text=[
                    (
                        f"- {ITEM} (Mar 10, 2027 – Apr 9, 2027): 2 × ($600.00 − $5.00 discount) = $1,190.00"
                        if en
                        else f"- {ITEM} (10 mars 2027 – 9 apr. 2027): 2 × (600,00{NBSP}kr − 5,00{NBSP}kr rabatt) "
                        f"= 1{NBSP}190,00{NBSP}kr"
                    ),
                    m("Subtotal: $1,234.50", "Delsumma: 1 234,50 kr"),
                    vat,
                    m("Amount due: $1,532.00", "Att betala: 1 532,00 kr"),
                    "net 30 days" if en else "30 dagar netto",
                    "This invoice is for payment 3 of 12, billed monthly from January 10, 2027."
                    if en
                    else "Fakturan gäller betalning 3 av 12, som debiteras varje månad "
                    "från och med den 10 januari 2027.",
                    "Next payment: April 10, 2027." if en else "Nästa betalning: 10 april 2027.",
                    f"Pay online: {INVOICE_URL}" if en else f"Betala online: {INVOICE_URL}",
                ],
                html=[f'href="{INVOICE_URL}"'],
                related={"invoice_id": "inv_club_3", "invoice_number": "K7QF2M3A-0003"},
            ),
        ),
        "invoice_overdue": (
            _overdue,
            Case(
                "invoice_overdue",
                BUYER,
                f"Invoice K7QF2M3A-0003 from Acme Coffee is overdue ({charge})"
                if en
                else f"Faktura K7QF2M3A-0003 från Acme Coffee är förfallen ({charge.replace(NBSP, ' ')})",
                [charge, INVOICE_URL, "April 9, 2027" if en else "9 april 2027"],
                text=["was due on April 9, 2027 and has not been paid yet" if en else "förföll den 9 april 2027"],
                related={"invoice_id": "inv_club_3"},
            ),
        ),
        "invoice_paid": (
            _paid,
            Case(
                "invoice_paid",
                BUYER,
                f"Receipt for invoice K7QF2M3A-0003 from Acme Coffee ({charge})"
                if en
                else f"Kvitto för faktura K7QF2M3A-0003 från Acme Coffee ({charge.replace(NBSP, ' ')})",
                [charge, "April 12, 2027" if en else "12 april 2027", "pay_inv3"],
                text=[
                    m("Amount paid: $1,532.00", "Betalt: 1 532,00 kr"),
                    "Next payment: April 10, 2027." if en else "Nästa betalning: 10 april 2027.",
                    line_text.replace(f"- {ITEM}: ", f"- {ITEM} (Mar 10, 2027 – Apr 9, 2027): ")
                    if en
                    else line_text.replace(f"- {ITEM}: ", f"- {ITEM} (10 mars 2027 – 9 apr. 2027): "),
                ],
                related={"invoice_id": "inv_club_3", "payment_id": "pay_inv3"},
            ),
        ),
        "subscription_canceled": (
            lambda lang: _status(lang, "canceled"),
            Case(
                "subscription_canceled",
                BUYER,
                "Your subscription with Acme Coffee has been canceled"
                if en
                else "Din prenumeration hos Acme Coffee har avslutats",
                [charge, day],
            ),
        ),
        "subscription_completed": (
            lambda lang: _status(lang, "completed"),
            Case(
                "subscription_completed",
                BUYER,
                "Your subscription with Acme Coffee is complete"
                if en
                else "Din prenumeration hos Acme Coffee är slutförd",
                [charge],
                text=["all 12 payments have been made" if en else "alla 12 betalningar"],
            ),
        ),
    }


CASES = [(lang, name) for lang in (EN, SV) for name in cases(EN)]


@pytest.fixture
def ctx(notify_ctx):
    return notify_ctx


async def catalogue_account(ctx, lang: Lang) -> str:
    return await new_account(
        ctx,
        "acct_cat",
        language=lang.code,
        time_zone=lang.time_zone,
        currencies=[lang.currency],
        default_currency=lang.currency,
        notification_recipients=[RECIPIENT],
    )


@pytest.mark.parametrize(("lang", "name"), CASES, ids=[f"{name}-{lang.code}" for lang, name in CASES])
async def test_every_kind_in_both_languages_reaches_the_smtp_sink(ctx, sink, lang, name):
    make, case = cases(lang)[name]
    account_id = await catalogue_account(ctx, lang)
    event = make(lang)
    await deliver(ctx, envelope(account_id, event))

    (msg,) = [m for m in messages(sink[1]) if m["To"] == case.recipient]
    (row,) = [r for r in await rows(ctx, account_id) if r["recipient"] == case.recipient]
    # headers
    assert (row["kind"], row["status"], row["locale"]) == (case.kind, "sent", lang.code)
    assert msg["From"].addresses[0].addr_spec == FROM and msg["From"].addresses[0].display_name == "Acme Coffee"
    assert msg["X-Sink-Envelope-To"] == case.recipient
    assert subject_of(msg) == case.subject.replace(NBSP, " ") == row["subject"]
    assert msg["Message-ID"] == row["message_id"]
    assert re.fullmatch(r"<email_\w+@commerce\.localhost>", row["message_id"])
    assert msg["Date"] and msg["Auto-Submitted"] == "auto-generated"
    # both parts, each saying what the kind must say
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    text, html = parts(msg)
    assert html.startswith("<!doctype html>") and f'<html lang="{lang.code}">' in html
    for phrase in case.both:
        assert phrase in text, (phrase, text)
        assert phrase.replace("<", "&lt;").replace(">", "&gt;") in html, (phrase, html)
    for phrase in case.text:
        assert phrase in text, (phrase, text)
    for phrase in case.html:
        assert phrase in html, (phrase, html)
    assert "<beans>" not in html  # text from buyers and merchants is escaped
    for key, value in case.related.items():
        assert row["related"][key] == value


# -- quote paid: the entry point for the quote's handler ---------------------------------------------
def quote_paid(lang: Lang, payment_status: str = "succeeded") -> QuotePaid:
    purchase = _first_payment_purchase(lang).model_copy(
        update={"source": {"type": "quote", "id": "quote_office"}, "payment_status": payment_status}
    )
    return QuotePaid.from_purchase(
        purchase, quote_name="Q-0014 Office coffee", owner_email=OWNER, deal_name="Office coffee 2027"
    )


async def queue_and_send_quote(ctx, account_id: str, quote: QuotePaid) -> None:
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        await service.queue_quote_paid(ctx, conn, account_id, quote)
    await send_for_fact(ctx, account_id, quote_fact(quote))


@pytest.mark.parametrize("lang", [EN, SV], ids=["en", "sv"])
async def test_quote_paid_tells_the_owner_in_both_languages(ctx, sink, lang):
    account_id = await catalogue_account(ctx, lang)
    quote = quote_paid(lang)
    await queue_and_send_quote(ctx, account_id, quote)
    await queue_and_send_quote(ctx, account_id, quote)  # the same fact again: nothing new

    (msg,) = messages(sink[1])
    (row,) = await rows(ctx, account_id)
    plan = lang.money("$1,234.50", "1 234,50 kr")
    assert (row["kind"], row["status"], row["recipient"], msg["To"]) == ("quote_paid", "sent", OWNER, OWNER)
    assert row["related"] == {"quote_id": "quote_office", "payment_id": quote.payment_id}
    assert msg["Message-ID"] == row["message_id"]
    assert subject_of(msg) == (
        "Quote paid: Q-0014 Office coffee ($1,234.50 from Jane Doe)"
        if lang is EN
        else "Offert betald: Q-0014 Office coffee (1 234,50 kr från Jane Doe)"
    )
    text, html = parts(msg)
    for part in (text, html):
        assert plan in part and "Jane Doe (jane@example.com)" in part and "Office coffee 2027" in part
        assert ("Next payment" if lang is EN else "Nästa betalning") in part
        assert ("April 1, 2027" if lang is EN else "1 april 2027") in part
    assert ("was paid: Jane Doe" if lang is EN else "har betalats: Jane Doe") in text


async def test_a_quote_paid_by_a_processing_bank_debit_waits_for_its_outcome(ctx, sink):
    account_id = await catalogue_account(ctx, EN)
    quote = quote_paid(EN, payment_status="processing")
    await queue_and_send_quote(ctx, account_id, quote)
    assert messages(sink[1]) == [] and [r["status"] for r in await rows(ctx, account_id)] == ["held"]
    settled = PaymentSucceededV1(
        payment_id=quote.payment_id,
        amount=quote.amount,
        currency="USD",
        method_type="us_bank_account",
        source={"type": "quote", "id": "quote_office"},
        email=BUYER,
        succeeded_at=PAID_AT,
    )
    await deliver(ctx, envelope(account_id, settled, producer="checkout"))
    (msg,) = messages(sink[1])
    assert msg["To"] == OWNER


# -- exactly once --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["receipt", "receipt_renewal", "invoice_paid", "subscription_canceled"])
async def test_a_repeated_event_and_a_repeated_fact_send_once(ctx, sink, name):
    make, _ = cases(EN)[name]
    account_id = await catalogue_account(ctx, EN)
    event = make(EN)
    first = envelope(account_id, event)
    await deliver(ctx, first)
    sent = len(messages(sink[1]))
    assert sent >= 1
    await deliver(ctx, first)  # the same event id: the inbox absorbs it
    await deliver(ctx, envelope(account_id, event))  # the same fact, another event id: the ledger does
    assert len(messages(sink[1])) == sent
    assert len({m["Message-ID"] for m in messages(sink[1])}) == sent
    assert all(status == "sent" for *_, status in await ledger(ctx, account_id))


async def test_invoice_snapshots_in_any_order_never_contradict_each_other(ctx, sink):
    account_id = await catalogue_account(ctx, SV)
    # the newest first: paid; the older issued and overdue snapshots then send nothing
    for event in (_paid(SV), invoice(SV), _overdue(SV)):
        await deliver(ctx, envelope(account_id, event))
    assert [r["kind"] for r in await rows(ctx, account_id)] == ["invoice_paid"]

    other = await catalogue_account(ctx, SV)
    for event in (invoice(SV), _overdue(SV), _paid(SV), _overdue(SV), invoice(SV, 4, status="paid")):
        await deliver(ctx, envelope(other, event))
    assert sorted(r["kind"] for r in await rows(ctx, other)) == ["invoice_issued", "invoice_overdue", "invoice_paid"]
    assert len(messages(sink[1])) == 4


async def test_no_overdue_notice_while_a_bank_debit_pays_the_invoice_and_switches_are_honoured(ctx, sink):
    account_id = await new_account(
        ctx, "acct_cat", notification_recipients=[RECIPIENT], notifications={"invoice_issued": False}
    )
    await deliver(ctx, envelope(account_id, invoice(EN)))  # switched off
    paying = invoice(EN, 2, previous_status="open", payment_id="pay_debit")
    await deliver(ctx, envelope(account_id, paying))  # a debit is processing: not issued, not overdue
    assert await rows(ctx, account_id) == [] and messages(sink[1]) == []


async def test_an_invoice_paid_online_has_one_receipt_the_invoice_paid_message(ctx, sink):
    account_id = await catalogue_account(ctx, EN)
    purchase = _purchase(EN, source={"type": "invoice", "id": "inv_club_3"}, payment_id="pay_inv3")
    await deliver(ctx, envelope(account_id, purchase, producer="checkout"))
    await deliver(ctx, envelope(account_id, _paid(EN)))
    assert sorted((r["kind"], r["recipient"]) for r in await rows(ctx, account_id)) == [
        ("invoice_paid", BUYER),
        ("payment_notification", RECIPIENT),
    ]
