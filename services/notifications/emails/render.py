"""Rendering e-mails from templates (HTML and plain text, per language) and MIME."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date

from shared.money import Money, format_money

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
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


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


class Renderer:
    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=False,
        )

    def render(self, kind: str, locale: str, context: dict) -> Rendered:
        subject = self.env.get_template(f"{locale}/{kind}.subject.txt").render(**context).strip()
        html = self.env.get_template(f"{locale}/{kind}.html").render(subject=subject, locale=locale, **context)
        text = self.env.get_template(f"{locale}/{kind}.txt").render(**context)
        return Rendered(subject=" ".join(subject.split()), html=html, text=text)


def money(amount: int, currency: str, locale: str) -> str:
    return format_money(Money(amount, currency), locale)


def local_date(instant: datetime, time_zone: str, locale: str) -> str:
    return format_date(instant.astimezone(ZoneInfo(time_zone)).date(), format="long", locale=locale)


def build_message(
    *,
    sender: str,
    sender_name: str,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    sent_at: datetime,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{_header_safe(sender_name)} <{sender}>"
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(sent_at)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def _header_safe(name: str) -> str:
    cleaned = "".join(ch for ch in name if ch not in '\r\n"<>')
    return f'"{cleaned}"'
