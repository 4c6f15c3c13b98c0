"""Payment-link settings that an account sets as defaults and each link may override
(PRODUCT §3.2): deal creation, checkout text, contact fields, payment methods, addresses,
confirmation."""

from __future__ import annotations

from typing import Literal

import nh3
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator

CONTACT_PROPERTIES = (
    "email", "firstname", "lastname", "phone", "company", "jobtitle", "website",
    "address", "city", "state", "zip", "country",
)  # fmt: skip
DEFAULT_LABELS = {
    "email": "Email", "firstname": "First name", "lastname": "Last name", "phone": "Phone",
    "company": "Company name", "jobtitle": "Job title", "website": "Website", "address": "Street address",
    "city": "City", "state": "State/Region", "zip": "Postal code", "country": "Country",
}  # fmt: skip
PaymentMethod = Literal["card", "us_bank_account", "sepa_debit", "bacs_debit"]
#: Bank debits exist in one currency each; cards in every currency the processor accepts.
METHOD_CURRENCY = {"us_bank_account": "USD", "sepa_debit": "EUR", "bacs_debit": "GBP"}

_CHECKOUT_TEXT_TAGS = {"p", "br", "strong", "b", "em", "i", "u", "ul", "ol", "li", "a", "h3", "h4", "blockquote"}


def sanitize_checkout_text(html: str) -> str:
    """Rich text for under the total: no script, no event handlers, no iframes, only
    http(s)/mailto links (opened safely)."""
    return nh3.clean(
        html,
        tags=_CHECKOUT_TEXT_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    ).strip()


def method_allowed(method: str, currency: str) -> bool:
    required = METHOD_CURRENCY.get(method)
    return required is None or required == currency.upper()


class ContactField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    property: Literal[CONTACT_PROPERTIES]  # type: ignore[valid-type]
    label: str | None = Field(default=None, min_length=1, max_length=100)
    help_text: str | None = Field(default=None, max_length=300)
    required: StrictBool = False


class AfterCompletion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["message", "redirect"] = "message"
    url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://[^\s<>\"']+$", validate_default=True)
    #: Optional text of the default success page.
    message: str | None = Field(default=None, max_length=1000)

    @field_validator("url")
    @classmethod
    def _redirect_has_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if kind == "redirect" and not url:
            raise ValueError("is required for a redirect")
        if kind == "message" and url:
            raise ValueError("is only for type 'redirect'")
        return url


class CreateDeal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(min_length=1, max_length=100)
    stage: str = Field(min_length=1, max_length=100)


def normalize_contact_fields(fields: list[ContactField]) -> list[dict]:
    """E-mail is always collected and required, and comes first unless placed elsewhere;
    each property once; the list order is the order on the page."""
    seen: set[str] = set()
    out: list[dict] = []
    for f in fields:
        if f.property in seen:
            raise ValueError(f"contact field {f.property!r} is listed twice")
        seen.add(f.property)
        out.append(
            {
                "property": f.property,
                "label": f.label or DEFAULT_LABELS[f.property],
                "help_text": f.help_text,
                "required": True if f.property == "email" else f.required,
            }
        )
    if "email" not in seen:
        out.insert(0, {"property": "email", "label": DEFAULT_LABELS["email"], "help_text": None, "required": True})
    return out


class PaymentLinkDefaults(BaseModel):
    """The account's defaults; a new link copies them, then applies its own values."""

    model_config = ConfigDict(extra="forbid")

    create_deal: CreateDeal | None = None
    checkout_text: str | None = Field(default=None, max_length=10_000)
    #: Default: the e-mail (always required) and the buyer's name (optional).
    contact_fields: list[ContactField] = Field(
        default_factory=lambda: [
            ContactField(property="email", required=True),
            ContactField(property="firstname"),
            ContactField(property="lastname"),
        ],
        max_length=len(CONTACT_PROPERTIES),
    )
    payment_methods: list[PaymentMethod] = Field(default_factory=lambda: ["card"], min_length=1, max_length=4)
    collect_billing_address: StrictBool = False
    collect_shipping_address: StrictBool = False
    after_completion: AfterCompletion = Field(default_factory=AfterCompletion)

    @field_validator("checkout_text")
    @classmethod
    def _clean(cls, value: str | None) -> str | None:
        return sanitize_checkout_text(value) if value else value

    @field_validator("contact_fields")
    @classmethod
    def _fields(cls, value: list[ContactField]) -> list[ContactField]:
        normalize_contact_fields(value)  # refuses duplicates
        return value

    @field_validator("payment_methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a payment method")
        return value
