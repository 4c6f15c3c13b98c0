"""Which e-mails billing's ``invoice.updated`` snapshots produce (PRODUCT §6.6, §8, §11).

To the invoice's buyer (its ``email``), in the invoice's language and locale:

- ``invoice_issued`` — the snapshot of the issue (``previous_status`` None): the invoice,
  its line math, its terms, the due date and the link to its page (to pay online);
- ``invoice_overdue`` — the snapshot that marked it overdue (``overdue_at``), while it is
  still open and no bank debit is paying it;
- ``invoice_paid`` — the snapshot that made it ``paid``: the receipt of the invoice
  (what was paid, when, by which payment; the next payment date of its subscription).

One fact each (``invoice:<id>:issued|overdue|paid``), so a re-published snapshot, or
the same fact in a later version, sends nothing new. A snapshot older than one already
seen is not acted on (the handler checks): a late "issued" after "paid" is never sent.
"""

from __future__ import annotations

from shared import locale_format as fmt
from shared.accounts import LANGUAGES, Account
from shared.events.models import InvoiceLine, InvoiceUpdatedV1

from . import context as c
from .context import Mail


def invoice_fact(invoice_id: str, what: str) -> str:
    return f"invoice:{invoice_id}:{what}"


def kind_of(event: InvoiceUpdatedV1) -> str | None:
    """Which message this snapshot is the fact of, if any."""
    if event.status == "paid":
        return "invoice_paid"
    if event.status == "open" and event.payment_id is None:
        if event.overdue_at is not None:
            return "invoice_overdue"
        if event.previous_status is None:
            return "invoice_issued"
    return None


def invoice_mails(account: Account, event: InvoiceUpdatedV1) -> list[Mail]:
    kind = kind_of(event)
    if kind is None or not event.email or not c.enabled(account, kind):
        return []
    language = event.language if event.language in LANGUAGES else account.locale
    locale = fmt.normalize_locale(event.locale, language)
    if c.language_of(locale) != language:
        locale = fmt.DEFAULT_LOCALES[language]
    return [Mail(kind, kind, event.email, invoice_context(account, event, locale), language=language)]


def invoice_context(account: Account, event: InvoiceUpdatedV1, locale: str) -> dict:
    cur = event.currency
    due = 0 if event.status in ("paid", "void") else max(0, event.total - event.amount_paid)
    table = c.charge_table(event.lines, event.tax, event.total, cur, locale)
    for row, line in zip(table["lines"], event.lines, strict=True):
        row["period"] = _period(line, locale)
    return {
        "merchant": c.merchant(account),
        "greeting_name": c.first_name(event.contact_name),
        "invoice_id": event.invoice_id,
        "number": event.number,
        "issue_on": c.day(event.issue_date, locale),
        "due_on": c.day(event.due_date, locale),
        "payment_terms_days": event.payment_terms_days,
        **table,
        "amount_paid": c.money(event.amount_paid, cur, locale),
        "amount_due": c.money(due, cur, locale),
        "paid_on": c.local_day(event.paid_at, account.settings.time_zone, locale) if event.paid_at else None,
        "payment_id": event.payment_id,
        "url": event.url,
        "online_payment": event.online_payment,
        "subscription": _terms(event, locale),
    }


def _period(line: InvoiceLine, locale: str) -> str | None:
    if line.period_start is None or line.period_end is None:
        return None
    return f"{fmt.day(line.period_start, locale, 'medium')} – {fmt.day(line.period_end, locale, 'medium')}"


def _terms(event: InvoiceUpdatedV1, locale: str) -> dict | None:
    """The terms the invoice bills (PRODUCT §11): "payment k of N" and the next payment
    date follow from its period index."""
    t = event.terms
    if t is None or event.period_index is None:
        return None
    index = event.period_index
    return c.terms(
        interval_name=t.interval,
        payments_total=t.payments_total,
        start_date=t.start_date,
        payment_number=index + 1,
        next_payment_date=c.next_date_after(t.start_date, t.interval, index, t.payments_total, t.end_date),
        locale=locale,
    )
