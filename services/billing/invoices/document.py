"""The printable invoice (HTML), in the invoice's language and locale formats.

One layout (``templates/document.html``) and the words of each language
(``templates/<lang>/labels.jinja``); money, dates and the postal address are formatted
for the invoice's locale (`shared.locale_format`): "1 234,50 kr" and "15 januari 2027"
in Swedish, "$1,234.50" and "January 15, 2027" in American English. The same document
is the buyer's public page, with a "Pay online" button while it can be paid.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.numbers import format_percent
from markupsafe import Markup

from shared import locale_format as fmt
from shared.accounts import Account

from . import amounts

TEMPLATES = Path(__file__).resolve().parent / "templates"
CSS = (TEMPLATES / "invoice.css").read_text()
#: The page's only style, allowed by its hash (no inline style otherwise, no script).
CSS_HASH = "sha256-" + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "jinja"), default=True),
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )


def security_headers() -> dict[str, str]:
    csp = "; ".join(
        [
            "default-src 'none'",
            f"style-src '{CSS_HASH}'",
            "img-src 'self' https: data:",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _percent(percentage: str, locale: str) -> str:
    return format_percent(Decimal(percentage) / 100, locale=locale, decimal_quantization=False)


def _local_day(value: datetime | None, time_zone: str, locale: str) -> str | None:
    if value is None:
        return None
    return fmt.day(value.astimezone(ZoneInfo(time_zone)).date(), locale)


def context(
    inv: Any,
    account: Account,
    *,
    subscription: Any | None,
    today: date,
    language: str | None = None,
    pay_action: str | None = None,
) -> dict[str, Any]:
    """Everything the template prints, formatted; ``language`` overrides the invoice's
    (its locale follows: the language's default locale unless the invoice's matches)."""
    lang = language or inv["language"]
    locale = inv["locale"] if inv["locale"].split("_")[0] == lang else fmt.DEFAULT_LOCALES.get(lang, "en_US")
    currency = inv["currency"]
    tz = account.settings.time_zone

    def money(amount: int) -> str:
        return fmt.money(amount, currency, locale)

    lines = []
    for line in inv["lines"]:
        start, end = line.get("period_start"), line.get("period_end")
        period = None
        if start and end:
            first, last = (fmt.day(date.fromisoformat(d), locale, "medium") for d in (start, end))
            period = f"{first} – {last}"
        rate = line.get("tax_rate")
        lines.append(
            {
                "name": line["name"],
                "description": line.get("description"),
                "period": period,
                "quantity": line["quantity"],
                "unit_amount": money(line["unit_amount"]),
                "unit_discount": money(line["unit_discount"]) if line.get("unit_discount") else "",
                "tax": money(line.get("tax") or 0),
                "tax_rate": f"{rate['name']} {_percent(rate['percentage'], locale)}".strip() if rate else None,
                "amount": money(line["amount"]),
            }
        )
    overdue = amounts.is_overdue(inv["status"], inv["due_date"], today)
    contact = inv["contact"] or {}
    name = " ".join(p for p in (contact.get("firstname"), contact.get("lastname")) if p) or contact.get("name")
    sub = None
    if subscription is not None:
        total = subscription["payments_total"]
        sub = {
            "interval": subscription["interval"],
            "payments_total": total,
            "payment_number": (inv["period_index"] + 1) if total and inv["period_index"] is not None else None,
            "start_date": fmt.day(subscription["start_date"], locale),
            "next_payment_date": (
                fmt.day(subscription["next_payment_date"], locale) if subscription["next_payment_date"] else None
            ),
        }
    tax_ids = [
        f"{t.get('type', '').upper()} {t.get('value', '')}".strip() if isinstance(t, dict) else str(t)
        for t in (inv["tax_ids"] or [])
    ]
    return {
        "language": lang,
        "css": Markup(CSS),  # noqa: S704 (our own file; hashed for the CSP)
        "inv": inv,
        "merchant": {"name": account.name, "logo_url": account.settings.logo_url},
        "status_key": "overdue" if overdue else inv["status"],
        "bill_to": {
            "name": name,
            "company": contact.get("company"),
            "email": inv["email"],
            "address": fmt.address_lines(inv["billing_address"], locale),
        },
        "dates": {
            "issue": fmt.day(inv["issue_date"], locale),
            "due": fmt.day(inv["due_date"], locale),
            "paid": _local_day(inv["paid_at"], tz, locale),
            "voided": _local_day(inv["voided_at"], tz, locale),
        },
        "lines": lines,
        "has_unit_discounts": any(line.get("unit_discount") for line in inv["lines"]),
        "money": {
            "subtotal": money(inv["subtotal"]),
            "discount": money(inv["discount"]),
            "tax": money(inv["tax"]),
            "total": money(inv["total"]),
            "amount_paid": money(inv["amount_paid"]),
            "amount_due": money(amount_due(inv)),
        },
        "subscription": sub,
        "tax_ids": tax_ids,
        "pay_action": pay_action,
    }


def amount_due(inv: Any) -> int:
    return 0 if inv["status"] in ("paid", "void") else max(0, inv["total"] - inv["amount_paid"])


def render(inv: Any, account: Account, **kw: Any) -> str:
    return _env().get_template("document.html").render(**context(inv, account, **kw))
