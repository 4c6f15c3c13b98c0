"""Shapes of companies, pipelines and deals: request bodies, list filters, output."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared.clock import rfc3339
from shared.money import UnknownCurrency, normalize_currency
from shared.pricing import MAX_AMOUNT
from shared.web.pagination import ListQuery

from .repository import COMPANY_TEXT

#: A required name: surrounding blanks are dropped, something must remain.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=500)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=100)]
StageKind = Literal["open", "closed_won", "closed_lost"]


def blank_to_none(value: Any) -> Any:
    """An empty optional text clears the field (stored as null)."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def normalize_domain(value: str | None) -> str | None:
    """``Example.COM.`` -> ``example.com``; international names in their ASCII form."""
    if value is None:
        return None
    text = value.strip().rstrip(".").lower()
    if not text:
        return None
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("must be a domain name like example.com") from None
    labels = text.split(".")
    if len(text) > 253 or len(labels) < 2 or not all(_label_ok(label) for label in labels):
        raise ValueError("must be a domain name like example.com (no scheme, path or spaces)")
    return text


def _label_ok(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c.isascii() and (c.isalnum() or c == "-") for c in label)
    )


def currency_code(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_currency(value)
    except UnknownCurrency:
        raise ValueError("is not an ISO 4217 currency code") from None


# -- pipelines ---------------------------------------------------------------------------------
class StageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    kind: StageKind = "open"


class PipelineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    stages: list[StageIn] = Field(min_length=1, max_length=50)


class PipelineList(ListQuery):
    pass


def pipeline_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "pipeline",
        "name": row["name"],
        "default": row["is_default"],
        "stages": [
            {"id": s["id"], "name": s["name"], "kind": s["kind"], "display_order": s["display_order"]}
            for s in row["stages"]
        ],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


# -- companies -----------------------------------------------------------------------------------
class CompanyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: Annotated[str, StringConstraints(max_length=253)] | None = None
    phone: Annotated[str, StringConstraints(max_length=50)] | None = None
    website: Annotated[str, StringConstraints(max_length=2000)] | None = None
    industry: Annotated[str, StringConstraints(max_length=200)] | None = None
    address: Text | None = None
    city: Annotated[str, StringConstraints(max_length=200)] | None = None
    state: Annotated[str, StringConstraints(max_length=200)] | None = None
    zip: Annotated[str, StringConstraints(max_length=50)] | None = None
    country: Annotated[str, StringConstraints(max_length=200)] | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None

    @field_validator(*COMPANY_TEXT, mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return blank_to_none(value)

    @field_validator("domain", mode="before")
    @classmethod
    def _domain(cls, value: Any) -> Any:
        return normalize_domain(value) if isinstance(value, str) else value


class CompanyCreate(CompanyFields):
    name: Name


class CompanyUpdate(CompanyFields):
    name: Name | None = None


class CompanyList(ListQuery):
    name: str | None = Field(default=None, max_length=200)
    domain: str | None = Field(default=None, max_length=253)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        """Found as stored (``WWW.Example.com.`` finds ``www.example.com``); a value that
        is no domain simply finds nothing."""
        try:
            return normalize_domain(value)
        except ValueError:
            return value


def company_out(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row["id"], "object": "company", "name": row["name"], "domain": row["domain"]}
    for field in COMPANY_TEXT:
        out[field] = row[field]
    out["created_at"] = rfc3339(row["created_at"])
    out["updated_at"] = rfc3339(row["updated_at"])
    return out


# -- deals ------------------------------------------------------------------------------------------
class DealFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: strict: a JSON integer of minor units (not 12.5, "1250" or true)
    amount: int | None = Field(default=None, ge=0, le=MAX_AMOUNT, strict=True)
    currency: str | None = Field(default=None, max_length=3)
    pipeline: Id | None = None
    stage: Id | None = None
    contact_ids: list[Id] | None = Field(default=None, max_length=100)
    company_id: Id | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return currency_code(value)


class DealCreate(DealFields):
    name: Name


class DealUpdate(DealFields):
    name: Name | None = None


class DealList(ListQuery):
    pipeline: str | None = Field(default=None, max_length=100)
    stage: str | None = Field(default=None, max_length=100)
    company_id: str | None = Field(default=None, max_length=100)
    contact_id: str | None = Field(default=None, max_length=100)


def deal_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "deal",
        "name": row["name"],
        "amount": row["amount"],
        "currency": row["currency"],
        "pipeline": row["pipeline_id"],
        "stage": row["stage_id"],
        "stage_kind": row["stage_kind"],
        "contact_ids": list(row["contact_ids"]),
        "company_id": row["company_id"],
        "created_by_link_id": row["created_by_link_id"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


ASSOCIATION_GROUPS = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "payment": "payments",
    "subscription": "subscriptions",
    "quote": "quotes",
    "payment_link": "payment_links",
}


def associations_out(owner_type: str, owner_id: str, rows: list[Any]) -> dict[str, Any]:
    """``{"object": "associations", "<type>_id": id, "contacts": [...], ...}``: one list per
    kind of related record (the owner's own kind omitted), each sorted."""
    groups: dict[str, list[str]] = {g: [] for t, g in ASSOCIATION_GROUPS.items() if t != owner_type}
    for row in rows:
        group = ASSOCIATION_GROUPS.get(row["related_type"], row["related_type"])
        groups.setdefault(group, []).append(row["related_id"])
    return {"object": "associations", f"{owner_type}_id": owner_id, **groups}


# -- response shapes (the OpenAPI document; the ``*_out`` functions above build them) ----------
class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageOut(_Out):
    id: str
    name: str
    kind: StageKind
    display_order: int


class PipelineOut(_Out):
    id: str
    object: Literal["pipeline"]
    name: str
    default: bool
    stages: list[StageOut]
    created_at: datetime
    updated_at: datetime


class CompanyOut(_Out):
    id: str
    object: Literal["company"]
    name: str
    domain: str | None
    phone: str | None
    website: str | None
    industry: str | None
    address: str | None
    city: str | None
    state: str | None
    zip: str | None
    country: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime


class QuoteCardOut(_Out):
    id: str
    title: str
    status: Literal["draft", "published", "paid"]
    currency: str
    total_due_now: int | None
    url: str | None
    expires_on: str | None
    #: "Paid: <date>" on the card.
    paid_at: datetime | None
    payment_id: str | None


class DealOut(_Out):
    id: str
    object: Literal["deal"]
    name: str
    amount: int | None
    currency: str | None
    pipeline: str
    stage: str
    stage_kind: StageKind
    contact_ids: list[str]
    company_id: str | None
    created_by_link_id: str | None
    created_at: datetime
    updated_at: datetime
    #: The deal's quote cards, newest first (PRODUCT §5): in the answers about one deal
    #: (create, get, change); lists leave them out (empty) to stay one query per page.
    quotes: list[QuoteCardOut] = Field(default_factory=list)


class AssociationsOut(BaseModel):
    """The record's id as ``<type>_id`` and one sorted list of ids per kind of related
    record (``contacts``, ``companies``, ``deals``, ``payments``, ``subscriptions``,
    ``quotes``, ``payment_links``; the record's own kind left out)."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"additionalProperties": {"type": "array", "items": {"type": "string"}}}
    )

    object: Literal["associations"]
    contact_id: str | None = None
    company_id: str | None = None
    deal_id: str | None = None
