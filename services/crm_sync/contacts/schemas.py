"""Contact shapes: what a merchant may enter, list filters, output."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared.accounts import valid_email
from shared.clock import rfc3339
from shared.web.pagination import ListQuery

from .repository import TEXT_FIELDS

Short = Annotated[str, StringConstraints(max_length=200)]


class ContactFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    firstname: Short | None = None
    lastname: Short | None = None
    phone: Annotated[str, StringConstraints(max_length=50)] | None = None
    company: Short | None = None
    jobtitle: Short | None = None
    website: Annotated[str, StringConstraints(max_length=2000)] | None = None
    address: Annotated[str, StringConstraints(max_length=500)] | None = None
    city: Short | None = None
    state: Short | None = None
    zip: Annotated[str, StringConstraints(max_length=50)] | None = None
    country: Short | None = None
    company_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None

    @field_validator(*TEXT_FIELDS, mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        """An empty text clears the field (stored as null)."""
        if isinstance(value, str) and not value.strip():
            return None
        return value


class ContactCreate(ContactFields):
    email: Annotated[str, StringConstraints(max_length=320)]

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return valid_email(value)


class ContactUpdate(ContactFields):
    email: Annotated[str, StringConstraints(max_length=320)] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else valid_email(value)


class ContactList(ListQuery):
    email: str | None = Field(default=None, max_length=320)


def contact_out(row: Any) -> dict[str, Any]:
    out = {"id": row["id"], "object": "contact", "email": row["email"]}
    for field in TEXT_FIELDS:
        out[field] = row[field]
    out["company_id"] = row["company_id"]
    out["created_at"] = rfc3339(row["created_at"])
    out["updated_at"] = rfc3339(row["updated_at"])
    return out


# -- response shape (the OpenAPI document; `contact_out` builds it) -----------------------------
class ContactOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["contact"]
    email: str
    firstname: str | None
    lastname: str | None
    phone: str | None
    company: str | None
    jobtitle: str | None
    website: str | None
    address: str | None
    city: str | None
    state: str | None
    zip: str | None
    country: str | None
    company_id: str | None
    created_at: datetime
    updated_at: datetime
