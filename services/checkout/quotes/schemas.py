"""Quote shapes (PRODUCT §5, API.md "Quotes")."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.accounts import valid_email
from shared.clock import rfc3339
from shared.pricing import MAX_AMOUNT
from shared.web.pagination import ListQuery

from ..links.schemas import MAX_QUANTITY, LineItemIn, OrderDiscountIn, RecurringIn, UnitDiscountIn

Id = str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuoteLineItemIn(_Strict):
    """A quote's item: fixed quantity and price (the buyer chooses nothing), one-time or
    recurring with any interval and fixed terms."""

    product_id: str | None = Field(default=None, max_length=100)
    name: str | None = Field(default=None, min_length=1, max_length=250)
    description: str | None = Field(default=None, max_length=2000)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY, strict=True)
    unit_amount: int | None = Field(default=None, gt=0, le=MAX_AMOUNT, strict=True)
    #: null = one-time (omitted: copied from the product, if any)
    recurring: RecurringIn | None = None
    unit_discount: UnitDiscountIn | None = None
    tax_rate_id: str | None = Field(default=None, max_length=100)

    def as_link_item(self) -> LineItemIn:
        return LineItemIn.model_validate(self.model_dump(exclude_unset=True))


class _QuoteFields(_Strict):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    deal_id: Id | None = Field(default=None, max_length=100)
    contact_id: Id | None = Field(default=None, max_length=100)
    company_id: Id | None = Field(default=None, max_length=100)
    #: Who is told when the quote is paid (a notification recipient).
    owner_email: str | None = Field(default=None, max_length=320)
    #: A quote-level discount on what is due at checkout.
    discount: OrderDiscountIn | None = None
    #: The last day the quote can be paid (the account's local date).
    expires_on: dt.date | None = None
    #: Shown to the buyer on the quote's page.
    comments: str | None = Field(default=None, max_length=10_000)

    @field_validator("owner_email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return valid_email(v) if v is not None else v


class QuoteCreate(_QuoteFields):
    currency: str = Field(min_length=3, max_length=3)
    line_items: list[QuoteLineItemIn] = Field(min_length=1, max_length=100)


class QuoteUpdate(_QuoteFields):
    """PATCH (drafts only): the fields given change; ``line_items`` replaces the list;
    null clears an optional field."""

    currency: str | None = Field(default=None, min_length=3, max_length=3)
    line_items: list[QuoteLineItemIn] | None = Field(default=None, min_length=1, max_length=100)


class QuoteList(ListQuery):
    status: Literal["draft", "published", "expired", "paid"] | None = None
    deal_id: Id | None = Field(default=None, max_length=100)
    contact_id: Id | None = Field(default=None, max_length=100)


class ConvertIn(_Strict):
    """Subscriptions from a published quote without online payment (manual collection)."""

    collection_method: Literal["send_invoice", "none"] = "send_invoice"
    #: For send_invoice: due on receipt (0) or net 7/15/30/45/60/90 days.
    payment_terms_days: Literal[0, 7, 15, 30, 45, 60, 90] | None = None
    #: The anchor of every payment date; default today (the account's date).
    start_date: dt.date | None = None


def quote_out(row: Any, *, url: str, status: str, summary: dict | None) -> dict[str, Any]:
    published = row["published"]
    return {
        "id": row["id"],
        "object": "quote",
        "status": status,
        "title": row["title"],
        "url": url if published else None,
        "version": row["published_version"],
        "deal_id": row["deal_id"],
        "contact_id": row["contact_id"],
        "company_id": row["company_id"],
        "owner_email": row["owner_email"],
        "currency": row["currency"],
        "line_items": row["line_items"],
        "discount": row["discount"],
        "expires_on": row["expires_on"].isoformat() if row["expires_on"] else None,
        "comments": row["comments"],
        "summary": summary,
        "published_at": rfc3339(row["published_at"]) if row["published_at"] else None,
        "paid_at": rfc3339(row["paid_at"]) if row["paid_at"] else None,
        "payment_id": row["payment_id"],
        "converted_at": rfc3339(row["converted_at"]) if row["converted_at"] else None,
        "conversion": row["conversion"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


class QuoteOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["quote"]
    #: draft | published | expired (published, past ``expires_on`` on the account's clock) | paid
    status: Literal["draft", "published", "expired", "paid"]
    title: str
    #: The buyer's page (``<base URL>/quotes/<token>``), the same for every version; null
    #: until first published.
    url: str | None
    #: How many times it was published (the page shows the latest).
    version: int
    deal_id: str | None
    contact_id: str | None
    company_id: str | None
    owner_email: str | None
    currency: str
    #: The draft's items (each with its ``id``); the page shows the published ones.
    line_items: list[dict[str, Any]]
    discount: dict[str, Any] | None
    expires_on: dt.date | None
    comments: str | None
    #: The published version's summary at checkout: subtotal, discounts, tax, total due
    #: now and the future payments (null for a draft never published).
    summary: dict[str, Any] | None
    published_at: dt.datetime | None
    paid_at: dt.datetime | None
    payment_id: str | None
    converted_at: dt.datetime | None
    conversion: dict[str, Any] | None
    created_at: dt.datetime
    updated_at: dt.datetime


class QuoteCheckoutOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_token: str
    url: str


__all__ = [
    "ConvertIn",
    "QuoteCheckoutOut",
    "QuoteCreate",
    "QuoteLineItemIn",
    "QuoteList",
    "QuoteOut",
    "QuoteUpdate",
    "UnitDiscountIn",
    "quote_out",
]
