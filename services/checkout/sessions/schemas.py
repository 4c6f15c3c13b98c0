"""Buyer-side shapes: the submission of a checkout page and the public session view."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.accounts import valid_email

_TEXT = Field(default=None, max_length=200)


class ItemChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_item_id: str = Field(max_length=100)
    selected: bool = True
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
