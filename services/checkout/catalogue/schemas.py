"""Catalogue shapes: products, tax rates, discount codes (API.md "Catalogue").

Percentages are exact decimals: they are read from a JSON string ("8.875") or number
(turned into a Decimal through its shortest text, never computed on as a float) and
written back as strings, so no float ever carries a rate.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
)

from shared.clock import rfc3339
from shared.pricing import MAX_AMOUNT
from shared.schedule import INTERVALS
from shared.web.openapi import not_null
from shared.web.pagination import ListQuery

_DECIMAL_TEXT = re.compile(r"^[-+]?\d{1,10}(\.\d{1,20})?$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")
#: PostgreSQL ``integer`` (the redemption counters).
MAX_REDEMPTIONS = 2_147_483_647


def read_decimal(value: Any, *, places: int, allow_zero: bool) -> Decimal:
    """A percentage 0 (or above 0) … 100 with at most ``places`` decimals."""
    example = '"8.875"' if places == 4 else '"12.5"'
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a decimal string such as {example}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        value = repr(value)  # the shortest text that is this float: what the client wrote
    text = str(value).strip()
    if isinstance(value, str) and not _DECIMAL_TEXT.match(text):
        raise ValueError(f"must be a decimal string such as {example}")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"must be a decimal string such as {example}") from None
    if number > 100 or number < 0 or (number == 0 and not allow_zero):
        raise ValueError("must be between 0 and 100" if allow_zero else "must be greater than 0 and at most 100")
    if number != number.quantize(Decimal(1).scaleb(-places)):
        raise ValueError(f"must have at most {places} decimal places")
    return number


def decimal_text(value: Decimal | None) -> str | None:
    """``Decimal('8.8750')`` -> ``"8.875"``, ``Decimal('100.00')`` -> ``"100"``."""
    if value is None:
        return None
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


Percentage = Annotated[Decimal, BeforeValidator(lambda v: read_decimal(v, places=4, allow_zero=True))]
PercentOff = Annotated[Decimal, BeforeValidator(lambda v: read_decimal(v, places=2, allow_zero=False))]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, AfterValidator(_not_blank)]


def _instant_text(value: Any) -> Any:
    """An instant is JSON text: a number is not read as Unix seconds."""
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 instant (a string)")
    return value


# -- products ---------------------------------------------------------------------------------
class RecurringIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval: str = Field(max_length=50)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        if value not in INTERVALS:
            raise ValueError(f"must be one of {', '.join(INTERVALS)}")
        return value


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=250)
    description: str | None = Field(default=None, max_length=2000)
    sku: Text | None = Field(default=None, min_length=1, max_length=100)
    #: strict: amounts are JSON integers (not 12.0, "12" or true)
    unit_amount: int = Field(gt=0, le=MAX_AMOUNT, strict=True)
    currency: str = Field(min_length=3, max_length=3)
    recurring: RecurringIn | None = None
    active: StrictBool = True


#: Fields of `ProductPatch` that may not be null.
NOT_NULL = ("name", "unit_amount", "currency", "active")


class ProductPatch(BaseModel):
    """Fields given replace the stored ones; ``description``, ``sku`` and ``recurring``
    may be set to null, the others may not."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=not_null(*NOT_NULL))

    name: Text | None = Field(default=None, min_length=1, max_length=250)
    description: str | None = Field(default=None, max_length=2000)
    sku: Text | None = Field(default=None, min_length=1, max_length=100)
    unit_amount: int | None = Field(default=None, gt=0, le=MAX_AMOUNT, strict=True)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    recurring: RecurringIn | None = None
    active: StrictBool | None = None


class ProductList(ListQuery):
    active: bool | None = None


def product_out(row: Any) -> dict[str, Any]:
    interval = row["recurring_interval"]
    return {
        "id": row["id"],
        "object": "product",
        "name": row["name"],
        "description": row["description"],
        "sku": row["sku"],
        "unit_amount": row["unit_amount"],
        "currency": row["currency"],
        "recurring": {"interval": interval} if interval else None,
        "active": row["active"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


# -- tax rates --------------------------------------------------------------------------------
class TaxRateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=100)
    #: e.g. "8.875": 0 … 100 with up to 4 decimals, added on top of the line amount
    percentage: Percentage
    #: only exclusive rates exist (PRODUCT §2); accepted so that a client may say so
    inclusive: StrictBool = False
    active: StrictBool = True

    @field_validator("inclusive")
    @classmethod
    def _exclusive(cls, value: bool) -> bool:
        if value:
            raise ValueError("tax rates are exclusive (added on top of the price); inclusive rates are not supported")
        return value


class TaxRateList(ListQuery):
    active: bool | None = None


def tax_rate_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "tax_rate",
        "name": row["name"],
        "percentage": decimal_text(row["percentage"]),
        "inclusive": False,
        "active": row["active"],
        "created_at": rfc3339(row["created_at"]),
    }


# -- discount codes -----------------------------------------------------------------------------
class DiscountCodeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: what buyers type; matched without regard to case
    code: str = Field(max_length=100)
    percent_off: PercentOff | None = None
    amount_off: int | None = Field(default=None, gt=0, le=MAX_AMOUNT, strict=True)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    expires_at: Annotated[AwareDatetime, BeforeValidator(_instant_text)] | None = None
    max_redemptions: int | None = Field(default=None, ge=1, le=MAX_REDEMPTIONS, strict=True)
    active: StrictBool = True

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        value = value.strip()
        if not _CODE.match(value):
            raise ValueError("must be 1 to 50 letters, digits, '-' or '_', starting with a letter or digit")
        return value

    @field_validator("expires_at")
    @classmethod
    def _instant(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return value
        try:
            utc = value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValueError("is out of range") from None
        if utc.year >= 9999:
            raise ValueError("is out of range")
        return utc


class DiscountCodeList(ListQuery):
    active: bool | None = None


def discount_code_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "discount_code",
        "code": row["code"],
        "percent_off": decimal_text(row["percent_off"]),
        "amount_off": row["amount_off"],
        "currency": row["currency"],
        "expires_at": rfc3339(row["expires_at"]) if row["expires_at"] else None,
        "max_redemptions": row["max_redemptions"],
        "times_redeemed": row["times_redeemed"],
        "active": row["active"],
        "created_at": rfc3339(row["created_at"]),
    }


# -- response shapes (the OpenAPI document; the ``*_out`` functions above build them) ----------
class RecurringOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval: str


class ProductOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["product"]
    name: str
    description: str | None
    sku: str | None
    unit_amount: int
    currency: str
    recurring: RecurringOut | None
    active: bool
    created_at: datetime
    updated_at: datetime


class TaxRateOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["tax_rate"]
    name: str
    #: A decimal string, e.g. "8.875".
    percentage: str
    inclusive: Literal[False]
    active: bool
    created_at: datetime


class DiscountCodeOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["discount_code"]
    code: str
    #: A decimal string, e.g. "12.5" (or null for an amount off).
    percent_off: str | None
    amount_off: int | None
    currency: str | None
    expires_at: datetime | None
    max_redemptions: int | None
    times_redeemed: int
    active: bool
    created_at: datetime
