"""What the invoice API reads and answers (API.md "Subscriptions and invoices")."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import rfc3339
from shared.config import CommonSettings
from shared.web.pagination import ListQuery

from .document import amount_due
from .tokens import invoice_url

Status = Literal["draft", "open", "paid", "void", "uncollectible"]


class InvoiceList(ListQuery):
    subscription_id: str | None = Field(default=None, max_length=100)
    status: Status | None = None


class DocumentQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Print in another language than the invoice's (its locale formats follow).
    lang: Literal["en", "sv"] | None = None


class TaxRateOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    percentage: str


class InvoiceLineOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None
    quantity: int
    unit_amount: int
    unit_discount: int
    #: (unit_amount − unit_discount) × quantity, before tax.
    amount: int
    tax: int
    tax_rate: TaxRateOut | None
    period_start: date | None
    period_end: date | None


class InvoiceOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["invoice"]
    number: str
    status: Status
    #: Open and past its due date on the account's clock (computed on read; ``status``
    #: stays ``open``).
    overdue: bool
    subscription_id: str | None
    period_index: int | None
    currency: str
    lines: list[InvoiceLineOut]
    #: Σ unit_amount × quantity.
    subtotal: int
    #: Σ unit_discount × quantity.
    discount: int
    tax: int
    #: subtotal − discount + tax.
    total: int
    amount_paid: int
    amount_due: int
    issue_date: date
    due_date: date
    payment_terms_days: int
    language: str
    locale: str
    comments: str | None
    tax_ids: list[Any]
    email: str | None
    contact_id: str | None
    company_id: str | None
    #: The buyer's page (``/invoices/{token}``): the invoice, and paying it online.
    url: str
    online_payment: bool
    collect_payment_method: bool
    payment_id: str | None
    issued_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    marked_uncollectible_at: datetime | None
    test_mode: bool
    created_at: datetime


def _instant(value: datetime | None) -> str | None:
    return rfc3339(value) if value else None


def invoice_out(settings: CommonSettings, row: Any, *, overdue: bool) -> dict[str, Any]:
    pay = row["payment_settings"] or {}
    return {
        "id": row["id"],
        "object": "invoice",
        "number": row["number"],
        "status": row["status"],
        "overdue": overdue,
        "subscription_id": row["subscription_id"],
        "period_index": row["period_index"],
        "currency": row["currency"],
        "lines": [
            {
                "name": line["name"],
                "description": line.get("description"),
                "quantity": line["quantity"],
                "unit_amount": line["unit_amount"],
                "unit_discount": line.get("unit_discount", 0),
                "amount": line["amount"],
                "tax": line.get("tax", 0),
                "tax_rate": line.get("tax_rate"),
                "period_start": line.get("period_start"),
                "period_end": line.get("period_end"),
            }
            for line in row["lines"]
        ],
        "subtotal": row["subtotal"],
        "discount": row["discount"],
        "tax": row["tax"],
        "total": row["total"],
        "amount_paid": row["amount_paid"],
        "amount_due": amount_due(row),
        "issue_date": row["issue_date"].isoformat(),
        "due_date": row["due_date"].isoformat(),
        "payment_terms_days": row["payment_terms_days"],
        "language": row["language"],
        "locale": row["locale"],
        "comments": row["comments"],
        "tax_ids": list(row["tax_ids"] or []),
        "email": row["email"],
        "contact_id": row["contact_id"],
        "company_id": row["company_id"],
        "url": invoice_url(settings, row["id"], row["token_version"]),
        "online_payment": pay.get("online_payment", True) is not False,
        "collect_payment_method": row["collect_payment_method"],
        "payment_id": row["payment_id"],
        "issued_at": _instant(row["issued_at"]),
        "paid_at": _instant(row["paid_at"]),
        "voided_at": _instant(row["voided_at"]),
        "marked_uncollectible_at": _instant(row["marked_uncollectible_at"]),
        "test_mode": row["test_mode"],
        "created_at": rfc3339(row["created_at"]),
    }
