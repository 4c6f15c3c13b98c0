"""What the subscription API reads and answers (API.md "Subscriptions and invoices")."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator, model_validator

from shared.accounts import valid_email
from shared.clock import rfc3339
from shared.pricing import MAX_AMOUNT
from shared.schedule import INTERVALS
from shared.web.openapi import not_null
from shared.web.pagination import ListQuery

Status = Literal["scheduled", "active", "past_due", "paused", "canceled", "unpaid", "completed"]
Interval = Literal[INTERVALS]  # type: ignore[valid-type]
CollectionMethod = Literal["charge_automatically", "send_invoice", "none"]
PaymentMethodType = Literal["card", "us_bank_account", "sepa_debit", "bacs_debit"]
MAX_QUANTITY = 10_000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PERCENT = re.compile(r"^\d{1,3}(\.\d{1,4})?$")


def _date_text(value: Any) -> Any:
    """A date is JSON text ``YYYY-MM-DD``: a number is not read as a timestamp."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError("must be a date YYYY-MM-DD")
    return value


def _int_only(value: Any) -> Any:
    if type(value) is not int:
        raise ValueError("must be a whole number")
    return value


Day = Annotated[date, BeforeValidator(_date_text)]
PaymentTerms = Annotated[Literal[0, 7, 15, 30, 45, 60, 90], BeforeValidator(_int_only)]
Id = Annotated[str, Field(min_length=1, max_length=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubscriptionList(ListQuery):
    status: Status | None = None
    contact_id: str | None = Field(default=None, max_length=100)


# -- input ---------------------------------------------------------------------------------------
class UnitDiscountIn(_Strict):
    """Per unit, on every payment: a percentage (below 100, at most 2 decimals) or an
    amount (below the unit price)."""

    percent_off: Decimal | None = Field(default=None, allow_inf_nan=False)
    amount_off: int | None = Field(default=None, gt=0, le=MAX_AMOUNT, strict=True)

    @field_validator("percent_off")
    @classmethod
    def _pct(cls, v: Decimal | None) -> Decimal | None:
        if v is None:
            return v
        if v.as_tuple().exponent < -2:  # type: ignore[operator]
            raise ValueError("allows at most 2 decimals")
        if not 0 < v < 100:
            raise ValueError("must be more than 0 and less than 100")
        return v

    @model_validator(mode="after")
    def _one(self) -> UnitDiscountIn:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give either percent_off or amount_off")
        return self


class LineItemIn(_Strict):
    """One line of each payment. Billing keeps no copy of the catalogue, so ``name`` and
    ``unit_amount`` are always given; ``product_id`` and ``tax_rate_id`` are references
    stored as given, and the tax is ``tax_percent`` (decisions: subscription API)."""

    product_id: Id | None = None
    name: str = Field(min_length=1, max_length=250)
    description: str | None = Field(default=None, max_length=2000)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY, strict=True)
    unit_amount: int = Field(ge=0, le=MAX_AMOUNT, strict=True)
    #: A decimal string, e.g. "8.875" (more than 0, at most 100, at most 4 decimals).
    tax_percent: str | None = Field(default=None, max_length=8)
    tax_rate_id: Id | None = None
    #: The tax's name on receipts and invoices (default "Tax").
    tax_name: str | None = Field(default=None, min_length=1, max_length=100)
    unit_discount: UnitDiscountIn | None = None

    @field_validator("tax_percent")
    @classmethod
    def _tax(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _PERCENT.match(v):
            raise ValueError('must be a decimal string such as "8.875"')
        number = Decimal(v)
        if not 0 < number <= 100:
            raise ValueError("must be more than 0 and at most 100")
        return v

    def tax_decimal(self) -> Decimal | None:
        try:
            return Decimal(self.tax_percent) if self.tax_percent is not None else None
        except InvalidOperation:  # pragma: no cover - the validator checked it
            return None


class CollectionIn(_Strict):
    method: CollectionMethod
    #: Days until an invoice is due (default 30): for ``send_invoice``, and for the first
    #: invoice of ``charge_automatically`` with ``collect_payment_method_on_first_invoice``.
    payment_terms_days: PaymentTerms | None = None
    #: ``charge_automatically`` only: invoice the first payment; the buyer's payment
    #: method saved when paying it is charged automatically afterwards (PRODUCT §6.5).
    collect_payment_method_on_first_invoice: StrictBool = False

    @property
    def invoiced(self) -> bool:
        return self.method == "send_invoice" or self.collect_payment_method_on_first_invoice

    def terms(self) -> int | None:
        if not self.invoiced:
            return None
        return 30 if self.payment_terms_days is None else self.payment_terms_days


class AddressIn(_Strict):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=200)
    state: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")


class InvoiceSettingsIn(_Strict):
    """How invoices of a ``send_invoice`` subscription read and are paid (PRODUCT §6.5–6.6)."""

    comments: str | None = Field(default=None, max_length=2000)
    language: Literal["en", "sv"] | None = None
    tax_ids: list[Annotated[str, Field(min_length=1, max_length=50)]] = Field(default_factory=list, max_length=10)
    accept_online_payment: StrictBool = True
    payment_methods: list[PaymentMethodType] | None = Field(default=None, min_length=1, max_length=4)
    collect_billing_address: StrictBool = False
    collect_shipping_address: StrictBool = False
    #: Date and address formats of the document (default: the language's, e.g. sv_SE).
    locale: Literal["en_US", "en_GB", "sv_SE"] | None = None


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 50:
        raise ValueError("allows at most 50 keys")
    for key, text in value.items():
        if not 1 <= len(key) <= 40:
            raise ValueError("keys are 1–40 characters")
        if len(text) > 500:
            raise ValueError("values are at most 500 characters")
    return value


Metadata = Annotated[dict[str, str], Field(max_length=50)]


class SubscriptionCreate(_Strict):
    #: The billing contact: an existing CRM contact, or ``email`` (+ names) for a new one.
    contact_id: Id | None = None
    email: str | None = Field(default=None, max_length=320)
    firstname: str | None = Field(default=None, max_length=100)
    lastname: str | None = Field(default=None, max_length=100)
    company_id: Id | None = None
    billing_address: AddressIn | None = None
    currency: str = Field(min_length=3, max_length=3)
    line_items: list[LineItemIn] = Field(min_length=1, max_length=100)
    interval: Interval
    #: A fixed number of payments, or null: renews until cancelled (or ``end_date``).
    payments: int | None = Field(default=None, ge=1, le=1000, strict=True)
    #: The anchor of every payment date; default today (the account's date); later: scheduled.
    start_date: Day | None = None
    #: Only for subscriptions that renew: the last date a payment may fall on.
    end_date: Day | None = None
    collection: CollectionIn = Field(default_factory=lambda: CollectionIn(method="charge_automatically"))
    invoice_settings: InvoiceSettingsIn = Field(default_factory=InvoiceSettingsIn)
    deal_ids: list[Id] = Field(default_factory=list, max_length=50)
    #: The deal this subscription was converted from: ``source`` {type: deal}.
    from_deal_id: Id | None = None
    metadata: Metadata = Field(default_factory=dict)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return valid_email(v) if v is not None else v

    @field_validator("metadata")
    @classmethod
    def _meta(cls, v: dict[str, str]) -> dict[str, str]:
        return _metadata(v)


#: Fields of `SubscriptionUpdate` that may be absent but not null.
UPDATE_NOT_NULL = ("line_items", "collection", "invoice_settings", "metadata")


class SubscriptionUpdate(BaseModel):
    """PATCH: only the fields given change. ``line_items`` replaces the list and applies
    to payments charged after the change; ``end_date: null`` removes the end date."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=not_null(*UPDATE_NOT_NULL))

    line_items: list[LineItemIn] | None = Field(default=None, min_length=1, max_length=100)
    collection: CollectionIn | None = None
    end_date: Day | None = None
    billing_address: AddressIn | None = None
    invoice_settings: InvoiceSettingsIn | None = None
    metadata: Metadata | None = None

    @field_validator("metadata")
    @classmethod
    def _meta(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return _metadata(v) if v is not None else v


class CancelIn(_Strict):
    #: true: keep it until the current period ends (no further payment), then cancel.
    at_period_end: StrictBool = False


class PaymentMethodLinkIn(_Strict):
    #: true: a new link; the old one stops working.
    rotate: StrictBool = False


class PaymentMethodLinkOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["payment_method_link"]
    subscription_id: str
    url: str
    rotated: bool


# -- output --------------------------------------------------------------------------------------
class LineOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_item_id: str | None = None
    product_id: str | None = None
    name: str
    description: str | None = None
    quantity: int
    unit_amount: int
    unit_discount: int
    #: (unit_amount − unit_discount) × quantity, before tax: each payment's line amount.
    amount: int
    tax: int
    tax_rate: dict[str, Any] | None = None


class CollectionOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: CollectionMethod
    payment_terms_days: int | None = None
    collect_payment_method_on_first_invoice: bool = False


class SourceOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["payment_link", "quote", "api", "deal"]
    id: str


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["subscription"]
    status: Status
    contact_id: str | None
    company_id: str | None
    deal_ids: list[str]
    email: str | None
    currency: str
    line_items: list[LineOut]
    #: Each automatic payment: line amounts plus tax.
    amount: int
    subtotal: int
    tax: int
    interval: str
    payments_total: int | None
    payments_made: int
    start_date: date
    next_payment_date: date | None
    end_date: date | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    paused_at: datetime | None
    collection: CollectionOut
    source: SourceOut
    payment_method: dict[str, Any] | None
    billing_address: dict[str, Any] | None
    invoice_settings: dict[str, Any]
    metadata: dict[str, str]
    #: The open charge's dunning timeline (attempts, next retry, final outcome), or None.
    dunning: dict[str, Any] | None
    test_mode: bool
    created_at: datetime


def _line_out(line: dict[str, Any]) -> dict[str, Any]:
    return {
        "line_item_id": line.get("line_item_id"),
        "product_id": line.get("product_id"),
        "name": line["name"],
        "description": line.get("description"),
        "quantity": line["quantity"],
        "unit_amount": line["unit_amount"],
        "unit_discount": line.get("unit_discount", 0),
        "amount": line["amount"],
        "tax": line.get("tax", 0),
        "tax_rate": line.get("tax_rate"),
    }


def subscription_out(row: Any, dunning: dict[str, Any] | None = None) -> dict[str, Any]:
    def instant(value: datetime | None) -> str | None:
        return rfc3339(value) if value else None

    return {
        "id": row["id"],
        "object": "subscription",
        "status": row["status"],
        "contact_id": row["contact_id"],
        "company_id": row["company_id"],
        "deal_ids": list(row["deal_ids"]),
        "email": row["email"],
        "currency": row["currency"],
        "line_items": [_line_out(line) for line in row["line_items"]],
        "amount": row["amount"],
        "subtotal": row["subtotal"],
        "tax": row["tax"],
        "interval": row["interval"],
        "payments_total": row["payments_total"],
        "payments_made": row["payments_made"],
        "start_date": row["start_date"].isoformat(),
        "next_payment_date": row["next_payment_date"].isoformat() if row["next_payment_date"] else None,
        "end_date": row["end_date"].isoformat() if row["end_date"] else None,
        "cancel_at_period_end": row["cancel_at_period_end"],
        "canceled_at": instant(row["canceled_at"]),
        "ended_at": instant(row["ended_at"]),
        "paused_at": instant(row["paused_at"]),
        "collection": {
            "method": row["collection_method"],
            "payment_terms_days": row["payment_terms_days"],
            "collect_payment_method_on_first_invoice": row["collect_method_on_first_invoice"],
        },
        "source": {"type": row["source_type"], "id": row["source_id"]},
        "payment_method": (
            {"type": row["method_type"], "id": row["payment_method_id"]} if row["payment_method_id"] else None
        ),
        "billing_address": row["billing_address"],
        "invoice_settings": row["invoice_settings"] or {},
        "metadata": row["metadata"] or {},
        "dunning": dunning,
        "test_mode": row["test_mode"],
        "created_at": rfc3339(row["created_at"]),
    }
