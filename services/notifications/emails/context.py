"""What the templates see: the message plan (`Mail`) and the formatted pieces every
message is made of — merchant, greeting, the line math, tax per rate, the terms.

Amounts and dates are formatted here through `shared.locale_format` (one module for
every locale format; the templates never compute or format money). ``locale`` is a
babel locale: the account's language (``en``, ``sv``) or a document's own locale
(``sv_SE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from shared import locale_format as fmt
from shared.accounts import Account
from shared.schedule import nth_date

METHOD_NAMES = {
    "en": {
        "card": "card",
        "us_bank_account": "US bank account",
        "sepa_debit": "SEPA Direct Debit",
        "bacs_debit": "Bacs Direct Debit",
    },
    "sv": {
        "card": "kort",
        "us_bank_account": "amerikanskt bankkonto",
        "sepa_debit": "SEPA-autogiro",
        "bacs_debit": "Bacs-autogiro",
    },
}
INTERVAL_NAMES = {
    "en": {
        "weekly": "weekly",
        "biweekly": "every two weeks",
        "monthly": "monthly",
        "quarterly": "quarterly",
        "semiannually": "every six months",
        "annually": "yearly",
        "every_2_years": "every two years",
        "every_3_years": "every three years",
        "every_4_years": "every four years",
        "every_5_years": "every five years",
    },
    "sv": {
        "weekly": "varje vecka",
        "biweekly": "varannan vecka",
        "monthly": "varje månad",
        "quarterly": "varje kvartal",
        "semiannually": "varje halvår",
        "annually": "varje år",
        "every_2_years": "vartannat år",
        "every_3_years": "vart tredje år",
        "every_4_years": "vart fjärde år",
        "every_5_years": "vart femte år",
    },
}


@dataclass(frozen=True)
class Mail:
    """One message a fact produces: its kind (the account's switch and the ledger's key),
    its template, its recipient and what the template sees. ``language`` overrides the
    account's (an invoice is written in its own language)."""

    kind: str
    template: str
    recipient: str
    context: dict
    language: str | None = None


class Line(Protocol):
    """A charged or invoiced line (`ChargedLine`, `InvoiceLine`)."""

    name: str
    quantity: int
    unit_amount: int
    unit_discount: int
    amount: int
    tax: int
    tax_rate: Any


# -- the account's side --------------------------------------------------------------------------
def language_of(locale: str) -> str:
    return locale.split("_", 1)[0]


def enabled(account: Account, kind: str) -> bool:
    """The account's switch for this kind of message (a kind missing from it is on)."""
    return account.settings.notifications.get(kind, True)


def recipients(account: Account) -> list[str]:
    """The account's notification recipients, each once (addresses differing only in case are one)."""
    seen: set[str] = set()
    out = []
    for r in account.settings.notification_recipients:
        if r.lower() not in seen:
            seen.add(r.lower())
            out.append(r)
    return out


def merchant(account: Account) -> dict:
    return {"name": account.name, "logo_url": account.settings.logo_url}


# -- people --------------------------------------------------------------------------------------
def first_name(name: str | None) -> str | None:
    return name.split()[0] if name and name.strip() else None


def buyer(name: str | None, email: str | None) -> str:
    if name and email:
        return f"{name} ({email})"
    return name or email or "?"


# -- words and formats ---------------------------------------------------------------------------
def money(amount: int, currency: str, locale: str) -> str:
    return fmt.money(amount, currency, locale)


def day(value: date, locale: str) -> str:
    """An account-local calendar date, long format (``March 1, 2026``, ``1 mars 2026``)."""
    return fmt.day(value, locale)


def local_day(instant: datetime, time_zone: str, locale: str) -> str:
    return fmt.local_day(instant, time_zone, locale)


def interval(name: str, locale: str) -> str:
    return INTERVAL_NAMES.get(language_of(locale), INTERVAL_NAMES["en"]).get(name, name)


def method(method_type: str, locale: str) -> str:
    return METHOD_NAMES.get(language_of(locale), METHOD_NAMES["en"]).get(method_type, method_type)


# -- the line math (PRODUCT §11) -------------------------------------------------------------------
def lines(items: Iterable[Line], currency: str, locale: str) -> list[dict]:
    """Each line: quantity × (unit price − unit discount) = amount (``period``: the
    service period an invoice line bills, set by the invoice's builder)."""
    return [
        {
            "name": line.name,
            "period": None,
            "quantity": line.quantity,
            "unit_amount": money(line.unit_amount, currency, locale),
            "unit_discount": money(line.unit_discount, currency, locale) if line.unit_discount else None,
            "amount": money(line.amount, currency, locale),
        }
        for line in items
    ]


def taxes(items: Iterable[Line], tax: int, currency: str, locale: str) -> list[dict]:
    """Tax per rate (name and percentage), in the order the lines name them; tax not
    attributed to a named rate is one unnamed row, so the rows always add up to ``tax``."""
    by_rate: dict[tuple[str, str], int] = {}
    for line in items:
        if line.tax and line.tax_rate is not None:
            key = (line.tax_rate.name, line.tax_rate.percentage)
            by_rate[key] = by_rate.get(key, 0) + line.tax
    rows = [
        {"name": name, "percentage": fmt.percent(pct, locale), "amount": money(amount, currency, locale)}
        for (name, pct), amount in by_rate.items()
    ]
    rest = tax - sum(by_rate.values())
    if rest:
        rows.append({"name": None, "percentage": None, "amount": money(rest, currency, locale)})
    return rows


def charge_table(items: list[Line], tax: int, total: int, currency: str, locale: str) -> dict:
    """What ``_charge_table`` prints: the lines, their sum, tax per rate and the total
    (``discount``: an order discount, set by a builder whose charge had one)."""
    return {
        "lines": lines(items, currency, locale),
        "subtotal": money(sum(line.amount for line in items), currency, locale),
        "discount": None,
        "taxes": taxes(items, tax, currency, locale),
        "total": money(total, currency, locale),
    }


# -- the terms (PRODUCT §11: frequency, number of payments or "until cancelled", start) -----------
def terms(
    *,
    interval_name: str,
    payments_total: int | None,
    start_date: date,
    payment_number: int | None,
    next_payment_date: date | None,
    locale: str,
) -> dict:
    return {
        "interval": interval(interval_name, locale),
        "payments_total": payments_total,
        "start_on": day(start_date, locale),
        "payment_number": payment_number,
        "next_payment_on": day(next_payment_date, locale) if next_payment_date else None,
    }


def next_date_after(
    start_date: date, interval_name: str, index: int, payments_total: int | None, end_date: date | None
) -> date | None:
    """The payment date after the ``index``-th (0 = the start), within the terms."""
    following = index + 1
    if payments_total is not None and following >= payments_total:
        return None
    when = nth_date(start_date, interval_name, following)
    return None if end_date is not None and when > end_date else when
