"""Payment link shapes: every option of PRODUCT §3.1–§3.5 (API.md "Payment links")."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from shared.clock import rfc3339
from shared.link_settings import AfterCompletion, ContactField, CreateDeal, PaymentMethod
from shared.pricing import MAX_AMOUNT
from shared.schedule import INTERVALS
from shared.web.pagination import ListQuery

Interval = Literal[INTERVALS]  # type: ignore[valid-type]
#: Amounts and quantities are strict JSON integers (not 12.0, "12" or true).
MAX_QUANTITY = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _percent(value: Decimal | None, *, upper_inclusive: bool) -> Decimal | None:
    if value is None:
        return value
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError("allows at most 2 decimals")
    if value <= 0 or value > 100 or (value == 100 and not upper_inclusive):
        raise ValueError("must be more than 0 and " + ("at most 100" if upper_inclusive else "less than 100"))
    return value


class UnitDiscountIn(_Strict):
    """Per unit, on every payment: a percentage (below 100) or an amount (below the price)."""

    percent_off: Decimal | None = Field(default=None, allow_inf_nan=False)
    amount_off: int | None = Field(default=None, gt=0, le=MAX_AMOUNT, strict=True)

    @field_validator("percent_off")
    @classmethod
    def _pct(cls, v: Decimal | None) -> Decimal | None:
        return _percent(v, upper_inclusive=False)

    @model_validator(mode="after")
    def _one(self) -> UnitDiscountIn:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give either percent_off or amount_off")
        return self


class OrderDiscountIn(_Strict):
    """The link's one-time discount on what is due at checkout."""

    name: str = Field(min_length=1, max_length=100)
    percent_off: Decimal | None = Field(default=None, allow_inf_nan=False)
    amount_off: int | None = Field(default=None, gt=0, le=MAX_AMOUNT, strict=True)

    @field_validator("percent_off")
    @classmethod
    def _pct(cls, v: Decimal | None) -> Decimal | None:
        return _percent(v, upper_inclusive=True)

    @model_validator(mode="after")
    def _one(self) -> OrderDiscountIn:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give either percent_off or amount_off")
        return self


class AdjustableQuantity(_Strict):
    minimum: int = Field(ge=1, le=MAX_QUANTITY, strict=True)
    maximum: int = Field(ge=1, le=MAX_QUANTITY, strict=True)

    @model_validator(mode="after")
    def _order(self) -> AdjustableQuantity:
        if self.minimum > self.maximum:
            raise ValueError("minimum must not exceed maximum")
        return self


class CustomAmount(_Strict):
    """Pay what you want: the buyer chooses the price within these bounds."""

    minimum: int | None = Field(default=None, gt=0, le=MAX_AMOUNT, strict=True)
    maximum: int | None = Field(default=None, gt=0, le=MAX_AMOUNT, strict=True)

    @model_validator(mode="after")
    def _order(self) -> CustomAmount:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum must not exceed maximum")
        return self


class StartIn(_Strict):
    """A delayed billing start: one of a date, N days or N months after checkout."""

    date: dt.date | None = None
    delay_days: int | None = Field(default=None, ge=1, le=3650, strict=True)
    delay_months: int | None = Field(default=None, ge=1, le=120, strict=True)

    @model_validator(mode="after")
    def _one(self) -> StartIn:
        if sum(v is not None for v in (self.date, self.delay_days, self.delay_months)) != 1:
            raise ValueError("give exactly one of date, delay_days, delay_months")
        return self

    def as_dict(self) -> dict:
        if self.date is not None:
            return {"date": self.date.isoformat()}
        if self.delay_days is not None:
            return {"delay_days": self.delay_days}
        return {"delay_months": self.delay_months}


class RecurringIn(_Strict):
    interval: Interval
    #: A fixed number of payments, or null: renews until cancelled.
    payments: int | None = Field(default=None, ge=1, le=1000, strict=True)
    #: Only for renew-until-cancelled: the last date a payment may fall on.
    end_date: dt.date | None = None
    start: StartIn | None = None

    @model_validator(mode="after")
    def _terms(self) -> RecurringIn:
        if self.payments is not None and self.end_date is not None:
            raise ValueError("an end date is for items that renew until cancelled (payments: null)")
        return self


class LineItemIn(_Strict):
    product_id: str | None = Field(default=None, max_length=100)
    name: str | None = Field(default=None, min_length=1, max_length=250)
    description: str | None = Field(default=None, max_length=2000)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY, strict=True)
    unit_amount: int | None = Field(default=None, gt=0, le=MAX_AMOUNT, strict=True)
    optional: StrictBool = False
    adjustable_quantity: AdjustableQuantity | None = None
    custom_amount: CustomAmount | None = None
    #: null = one-time (omitted: copied from the product, if any)
    recurring: RecurringIn | None = None
    unit_discount: UnitDiscountIn | None = None
    tax_rate_id: str | None = Field(default=None, max_length=100)


class _LinkFields(_Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    active: StrictBool | None = None
    order_discount: OrderDiscountIn | None = None
    allow_discount_codes: StrictBool | None = None
    create_deal: CreateDeal | None = None
    deal_id: str | None = Field(default=None, max_length=100)
    checkout_text: str | None = Field(default=None, max_length=10_000)
    contact_fields: list[ContactField] | None = Field(default=None, max_length=12)
    payment_methods: list[PaymentMethod] | None = Field(default=None, min_length=1, max_length=4)
    collect_billing_address: StrictBool | None = None
    collect_shipping_address: StrictBool | None = None
    after_completion: AfterCompletion | None = None
    deactivate_after_payment: StrictBool | None = None

    @field_validator("payment_methods")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("must not repeat a payment method")
        return value


class LinkCreate(_LinkFields):
    currency: str = Field(min_length=3, max_length=3)
    line_items: list[LineItemIn] = Field(min_length=1, max_length=100)


class LinkUpdate(_LinkFields):
    """PATCH: only the fields given change; line_items, when given, replace the list;
    null clears a setting that may be empty and is refused for the others (decision 19)."""

    currency: str | None = Field(default=None, min_length=3, max_length=3)
    line_items: list[LineItemIn] | None = Field(default=None, min_length=1, max_length=100)


class SimplifiedLinkCreate(_Strict):
    """A link from a contact, company or deal: a name, one item, a one-time price."""

    name: str = Field(min_length=1, max_length=200)
    item_name: str = Field(min_length=1, max_length=250)
    unit_amount: int = Field(gt=0, le=MAX_AMOUNT, strict=True)
    currency: str = Field(min_length=3, max_length=3)
    deactivate_after_payment: StrictBool = True


class LinkList(ListQuery):
    query: str | None = Field(default=None, max_length=200)
    active: bool | None = None


def link_out(row: Any, base_url: str) -> dict[str, Any]:
    settings = row["settings"] or {}
    return {
        "id": row["id"],
        "object": "payment_link",
        "name": row["name"],
        "active": row["active"],
        "url": f"{base_url.rstrip('/')}/pay/{row['slug']}",
        "currency": row["currency"],
        "line_items": row["line_items"],
        "order_discount": settings.get("order_discount"),
        "allow_discount_codes": settings.get("allow_discount_codes", False),
        "create_deal": settings.get("create_deal"),
        "deal_id": settings.get("deal_id"),
        "checkout_text": settings.get("checkout_text"),
        "contact_fields": settings.get("contact_fields", []),
        "payment_methods": settings.get("payment_methods", ["card"]),
        "collect_billing_address": settings.get("collect_billing_address", False),
        "collect_shipping_address": settings.get("collect_shipping_address", False),
        "after_completion": settings.get("after_completion", {"type": "message"}),
        "deactivate_after_payment": settings.get("deactivate_after_payment", False),
        "embeddable": settings.get("embeddable", False),
        "crm_record": settings.get("crm_record"),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


# -- response shapes (the OpenAPI document; `link_out` builds them) -----------------------------
class LinkOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["payment_link"]
    name: str | None
    active: bool
    #: The stable buyer URL (``<base URL>/pay/<slug>``).
    url: str
    currency: str
    #: The stored line items (each with its ``id``), in the shape of `LineItemIn`.
    line_items: list[dict[str, Any]]
    order_discount: dict[str, Any] | None
    allow_discount_codes: bool
    create_deal: dict[str, Any] | None
    deal_id: str | None
    checkout_text: str | None
    contact_fields: list[dict[str, Any]]
    payment_methods: list[PaymentMethod]
    collect_billing_address: bool
    collect_shipping_address: bool
    after_completion: dict[str, Any]
    deactivate_after_payment: bool
    embeddable: bool
    #: The contact, company or deal the link was created from (simplified links).
    crm_record: dict[str, Any] | None
    created_at: dt.datetime
    updated_at: dt.datetime


class EmbedOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["embed"]
    html: str
    url: str
