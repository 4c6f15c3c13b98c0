"""Contact shapes: what a merchant may enter, list filters, output."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator

from shared.accounts import valid_email
from shared.clock import rfc3339
from shared.web.pagination import ListQuery

from .rows import FIELDS, MAX_LENGTH, TEXT_FIELDS
from .upserts import BATCH_LIMIT, BatchOutcome


def _limit(name: str) -> StringConstraints:
    """A contact field's longest text: `rows.MAX_LENGTH` (the batch API's limits too)."""
    return StringConstraints(max_length=MAX_LENGTH[name])


class ContactFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    firstname: Annotated[str, _limit("firstname")] | None = None
    lastname: Annotated[str, _limit("lastname")] | None = None
    phone: Annotated[str, _limit("phone")] | None = None
    company: Annotated[str, _limit("company")] | None = None
    jobtitle: Annotated[str, _limit("jobtitle")] | None = None
    website: Annotated[str, _limit("website")] | None = None
    address: Annotated[str, _limit("address")] | None = None
    city: Annotated[str, _limit("city")] | None = None
    state: Annotated[str, _limit("state")] | None = None
    zip: Annotated[str, _limit("zip")] | None = None
    country: Annotated[str, _limit("country")] | None = None
    company_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None

    @field_validator(*TEXT_FIELDS, mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        """An empty text clears the field (stored as null)."""
        if isinstance(value, str) and not value.strip():
            return None
        return value


class ContactCreate(ContactFields):
    email: Annotated[str, _limit("email")]

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return valid_email(value)


class ContactUpdate(ContactFields):
    email: Annotated[str, _limit("email")] | None = None

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


# -- the batch API (POST /v1/contacts/batch/upsert) ------------------------------------------------------
ContactBatchRow = create_model(
    "ContactBatchRow",
    __config__=ConfigDict(extra="forbid"),
    __doc__="""One contact of a batch: each field a string or null. Its shape is checked with
    the request (an unknown field or a value that is not text refuses the request, 422
    naming ``contacts[i].field``); its values row by row (a bad e-mail address or a value
    too long refuses that row only).""",
    **{name: (str | None, None) for name in FIELDS},
)


class ContactBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contacts: list[ContactBatchRow] = Field(min_length=1, max_length=BATCH_LIMIT)  # type: ignore[valid-type]


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    message: str


class ContactBatchResult(BaseModel):
    """``index``: the row's position in ``contacts``; ``status``: ``created``, ``updated``,
    ``unchanged`` (nothing new in it), ``merged`` (its e-mail came earlier in the batch, in
    any letter case: it was merged into that row's contact) or ``failed`` (``errors`` say
    why; nothing of the row was written)."""

    model_config = ConfigDict(extra="forbid")

    index: int
    status: Literal["created", "updated", "unchanged", "merged", "failed"]
    id: str | None
    errors: list[FieldError] | None


class ContactBatchOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["contact_batch"]
    created: int
    updated: int
    unchanged: int
    merged: int
    failed: int
    results: list[ContactBatchResult]


def batch_out(outcome: BatchOutcome) -> dict[str, Any]:
    return {
        "object": "contact_batch",
        "created": outcome.created,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "merged": outcome.merged,
        "failed": outcome.failed,
        "results": [{"index": r.index, "status": r.status, "id": r.id, "errors": r.errors} for r in outcome.results],
    }
