"""Buyer-side shapes: the submission of a checkout page and the public session view."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from shared.accounts import valid_email

_TEXT = Field(default=None, max_length=200)


class ItemChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_item_id: str = Field(max_length=100)
    selected: StrictBool = True
    #: strict: JSON integers only (not 2.0, "2" or true)
    quantity: int | None = Field(default=None, ge=1, le=10_000, strict=True)
    amount: int | None = Field(default=None, ge=1, strict=True)


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line1: str | None = _TEXT
    line2: str | None = _TEXT
    city: str | None = _TEXT
    state: str | None = _TEXT
    postal_code: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320)
    firstname: str | None = _TEXT
    lastname: str | None = _TEXT
    phone: str | None = Field(default=None, max_length=40)
    company: str | None = _TEXT
    jobtitle: str | None = _TEXT
    website: str | None = Field(default=None, max_length=500)
    address: str | None = _TEXT
    city: str | None = _TEXT
    state: str | None = _TEXT
    zip: str | None = Field(default=None, max_length=20)
    country: str | None = _TEXT

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return valid_email(v)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v


class CheckoutSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemChoice] = Field(default_factory=list, max_length=100)
    contact: ContactIn
    billing_address: AddressIn | None = None
    shipping_address: AddressIn | None = None
    discount_code: str | None = Field(default=None, max_length=100)


# -- response shapes (the OpenAPI document). Open (more fields may follow): the page reads them.
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SummaryOut(_Open):
    """The priced choices (``shared.pricing.Summary.as_api``)."""

    currency: str
    lines: list[dict[str, Any]]
    subtotal_due_now: int
    discounts_due_now: list[dict[str, Any]]
    tax_due_now: int
    total_due_now: int
    future_payments: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    total: int | None


class BuyerProcessorOut(_Open):
    type: str
    publishable_key: str | None
    api_base: str | None = None


class CheckoutSessionOut(_Open):
    object: Literal["checkout_session"]
    status: Literal["open", "complete", "expired"]
    currency: str
    merchant: dict[str, Any]
    #: Each with the buyer's controls and bounds (adjustable_quantity, custom_amount).
    line_items: list[dict[str, Any]]
    summary: dict[str, Any]
    contact_fields: list[dict[str, Any]]
    payment_methods: list[str]
    collect_billing_address: bool
    collect_shipping_address: bool
    allow_discount_codes: bool
    processor: BuyerProcessorOut
    expires_at: str
    payment_id: str | None
    #: Sent back in ``X-CSRF-Token`` by the submission endpoints (null once not open).
    csrf_token: str | None


class PaymentStart(_Open):
    client_secret: str
    intent_id: str
    intent_type: Literal["setup_intent"]


class SubmitOut(_Open):
    summary: SummaryOut
    payment: PaymentStart


class PricedOut(_Open):
    summary: SummaryOut


class CompleteOut(_Open):
    status: Literal["complete"]
    payment_id: str
    redirect_url: str | None = None


class CompleteNotPaid(_Open):
    """402: ``requires_action`` (3-D Secure: confirm ``client_secret`` on the page, then
    complete again) or ``declined`` (``message``; the buyer may try another card)."""

    status: Literal["requires_action", "declined"]
    client_secret: str | None = None
    message: str | None = None
