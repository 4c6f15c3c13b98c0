"""What an invoice says — pure: its periods, lines, totals, dates and settings.

Totals: ``subtotal`` = Σ unit price × quantity; ``discount`` = Σ unit discount ×
quantity; ``tax`` = Σ the lines' tax (each line's, rounded half-up per line when the
subscription was priced, `shared.pricing` rule 4); ``total = subtotal − discount + tax``.
A subscription's recurring payments carry no order discounts (rule 3), so those three
sums are its payment amount exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from shared.locale_format import normalize_locale
from shared.schedule import nth_date

LANGUAGES = ("en", "sv")
PAYMENT_METHODS = ("card", "us_bank_account", "sepa_debit", "bacs_debit")
#: Statuses in which the buyer may still pay (an uncollectible invoice may be paid late).
PAYABLE = ("open", "uncollectible")
#: Invoices issued for one subscription in one pass at most (a long test-clock jump
#: catches up over several passes).
MAX_PERIODS_PER_PASS = 120


@dataclass(frozen=True, slots=True)
class Totals:
    subtotal: int
    discount: int
    tax: int

    @property
    def total(self) -> int:
        return self.subtotal - self.discount + self.tax


@dataclass(frozen=True, slots=True)
class Period:
    index: int
    start: date
    end: date  # the last day of the period (included)


@dataclass(frozen=True, slots=True)
class DuePeriods:
    periods: tuple[Period, ...]
    #: Where the subscription stands after invoicing them.
    next_index: int
    next_payment_date: date | None


def _period(anchor: date, interval: str, index: int) -> Period:
    return Period(index, nth_date(anchor, interval, index), nth_date(anchor, interval, index + 1) - timedelta(days=1))


def _within_terms(count: int, when: date, payments_total: int | None, end_date: date | None) -> bool:
    """``count``: how many periods of the fixed term are used before this one."""
    return (payments_total is None or count < payments_total) and (end_date is None or when <= end_date)


def due_periods(
    *,
    anchor: date,
    interval: str,
    next_index: int,
    today: date,
    payments_total: int | None,
    end_date: date | None,
    issued: int | None = None,
    limit: int = MAX_PERIODS_PER_PASS,
) -> DuePeriods:
    """The payment dates from ``next_index`` on that have come by ``today`` — each gets an
    invoice on its date — and the next date after them (None: nothing more to invoice).
    Issuing is treated like a charge for the schedule (the next date moves on); the
    payment is counted when the invoice is paid. A fixed term counts the invoices
    ``issued`` so far (not voided), not positions: dates skipped by a pause do not use up
    the term (as charges count payments made). Without ``issued``, the position counts
    (no pause: the same thing)."""
    used = next_index if issued is None else issued
    periods: list[Period] = []
    index = next_index
    while len(periods) < limit:
        when = nth_date(anchor, interval, index)
        if when > today or not _within_terms(used + len(periods), when, payments_total, end_date):
            break
        periods.append(_period(anchor, interval, index))
        index += 1
    when = nth_date(anchor, interval, index)
    within = _within_terms(used + len(periods), when, payments_total, end_date)
    return DuePeriods(tuple(periods), index, when if within else None)


def lines_for(sub: Any, index: int) -> list[dict]:
    """The subscription's line items billed on payment date ``index`` (a replacement of
    the items applies from its ``pending_from_index`` on)."""
    pending_from = sub["pending_from_index"]
    if sub["pending_line_items"] is not None and pending_from is not None and index >= pending_from:
        return list(sub["pending_line_items"])
    return list(sub["line_items"])


def _tax_rate(rate: dict | None) -> dict | None:
    if not rate:
        return None
    return {"id": str(rate.get("id") or ""), "name": str(rate.get("name") or ""), "percentage": str(rate["percentage"])}


def invoice_lines(items: list[dict], period: Period) -> tuple[list[dict], Totals]:
    """The invoice's lines for one period, and their totals."""
    lines = []
    subtotal = discount = tax = 0
    for item in items:
        quantity, unit = int(item["quantity"]), int(item["unit_amount"])
        unit_discount = int(item.get("unit_discount") or 0)
        amount = int(item.get("amount", (unit - unit_discount) * quantity))
        line_tax = int(item.get("tax") or 0)
        lines.append(
            {
                "name": item["name"],
                "description": item.get("description"),
                "quantity": quantity,
                "unit_amount": unit,
                "unit_discount": unit_discount,
                "amount": amount,
                "tax": line_tax,
                "tax_rate": _tax_rate(item.get("tax_rate")),
                "period_start": period.start.isoformat(),
                "period_end": period.end.isoformat(),
            }
        )
        subtotal += unit * quantity
        discount += unit * quantity - amount
        tax += line_tax
    return lines, Totals(subtotal, discount, tax)


def due_date(issue_date: date, payment_terms_days: int | None) -> date:
    """Due on receipt (0 days) or net N: N days after the issue date."""
    return issue_date + timedelta(days=payment_terms_days or 0)


def is_overdue(status: str, due: date, today: date) -> bool:
    """Shown after the due date (the due date itself is still on time), while unpaid."""
    return status == "open" and today > due


@dataclass(frozen=True, slots=True)
class InvoiceSettings:
    language: str
    locale: str
    comments: str | None
    tax_ids: list
    online_payment: bool
    payment_methods: list[str]
    collect_billing_address: bool
    collect_shipping_address: bool

    def payment_settings(self) -> dict:
        return {
            "online_payment": self.online_payment,
            "payment_methods": self.payment_methods,
            "collect_billing_address": self.collect_billing_address,
            "collect_shipping_address": self.collect_shipping_address,
        }


def resolve_settings(invoice_settings: dict | None, account_settings: dict | None) -> InvoiceSettings:
    """A subscription's ``invoice_settings`` with the account's defaults (keys documented
    in docs/decisions.md, 41): language (en | sv, default the account's), locale
    (default per language), comments, tax_ids, online_payment (default on),
    payment_methods (default card), collect_billing_address / collect_shipping_address."""
    inv = invoice_settings or {}
    account = account_settings or {}
    language = inv.get("language") or account.get("language") or "en"
    if language not in LANGUAGES:
        language = "en"
    methods = [m for m in (inv.get("payment_methods") or ["card"]) if m in PAYMENT_METHODS] or ["card"]
    online = inv.get("online_payment", inv.get("accept_online_payment", True))
    comments = inv.get("comments") or inv.get("memo") or None
    tax_ids = inv.get("tax_ids") or []
    return InvoiceSettings(
        language=language,
        locale=normalize_locale(inv.get("locale"), language),
        comments=str(comments) if comments else None,
        tax_ids=list(tax_ids) if isinstance(tax_ids, list) else [tax_ids],
        online_payment=online is not False,
        payment_methods=methods,
        collect_billing_address=bool(inv.get("collect_billing_address")),
        collect_shipping_address=bool(inv.get("collect_shipping_address")),
    )
