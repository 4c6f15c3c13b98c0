from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from shared.clock import rfc3339
from shared.web.pagination import ListQuery

#: How many refunds a payment object embeds (all of them: GET /v1/payments/{id}/refunds).
EMBEDDED_REFUNDS = 10


def _instant(value: datetime | None) -> datetime | None:
    """An instant PostgreSQL can compare with (in UTC, inside Python's range)."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("is out of range") from None


#: A filter bound: an RFC 3339 instant with an offset, or Unix seconds (as documented).
Instant = Annotated[
    AwareDatetime,
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}),
]


class PaymentList(ListQuery):
    """``GET /v1/payments`` filters (all optional, combined with AND).

    Creation time uses Stripe's bracket convention: ``created[gte]``, ``created[gt]``,
    ``created[lte]``, ``created[lt]``, each an RFC 3339 instant with an offset
    (``2025-01-31T00:00:00Z``) or Unix seconds; bounds compare with ``created_at`` (the
    account's clock). ``subscription_id``: the subscription's automatic payments (renewals,
    retries, charges of a new payment method; failed attempts as ``failed`` payments), whose
    ``source`` is ``{"type": "subscription", "id": ...}``; a first payment taken at checkout
    keeps its link or quote as its source.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    status: Literal["processing", "succeeded", "failed", "refunded", "partially_refunded"] | None = None
    contact_id: str | None = Field(default=None, max_length=100)
    payment_link_id: str | None = Field(default=None, max_length=100)
    subscription_id: str | None = Field(default=None, max_length=100)
    created_gte: Instant | None = Field(default=None, alias="created[gte]")
    created_gt: Instant | None = Field(default=None, alias="created[gt]")
    created_lte: Instant | None = Field(default=None, alias="created[lte]")
    created_lt: Instant | None = Field(default=None, alias="created[lt]")

    @field_validator("created_gte", "created_gt", "created_lte", "created_lt")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        return _instant(value)


class RefundCreate(BaseModel):
    """``POST /v1/payments/{id}/refunds``: no ``amount`` refunds whatever remains."""

    model_config = ConfigDict(extra="forbid")

    amount: int | None = Field(default=None, ge=1, le=999_999_999_999, strict=True)


class AssociationCreate(BaseModel):
    """``POST /v1/payments/{id}/associations``: exactly one of the three ids."""

    model_config = ConfigDict(extra="forbid")

    contact_id: str | None = Field(default=None, min_length=1, max_length=100)
    company_id: str | None = Field(default=None, min_length=1, max_length=100)
    deal_id: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _exactly_one(self) -> AssociationCreate:
        given = [name for name in ("contact_id", "company_id", "deal_id") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of contact_id, company_id, deal_id")
        return self

    @property
    def kind(self) -> Literal["contact", "company", "deal"]:
        if self.contact_id is not None:
            return "contact"
        return "company" if self.company_id is not None else "deal"

    @property
    def record_id(self) -> str:
        return self.contact_id or self.company_id or self.deal_id  # type: ignore[return-value]


class RefundList(ListQuery):
    pass


def net_of(row: Any) -> int | None:
    """What the payment leaves the merchant: the processor's net of the charge (amount −
    fee, as reported; computed from ``fee`` when only that is known) minus the succeeded
    refunds. None until the processor has reported the fee (docs/decisions.md)."""
    if row["net"] is not None:
        charge_net = row["net"]
    elif row["fee"] is not None:
        charge_net = row["amount"] - row["fee"]
    else:
        return None
    return charge_net - row["amount_refunded"]


def refund_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "refund",
        "payment_id": row["payment_id"],
        "amount": row["amount"],
        "currency": row["currency"],
        "status": row["status"],
        "failure_reason": row["failure_reason"],
        "processor_refund_id": row["processor_refund_id"],
        "created_at": rfc3339(row["created_at"]),
        "settled_at": rfc3339(row["settled_at"]) if row["settled_at"] else None,
    }


def payment_out(row: Any, refunds: Iterable[Any] = ()) -> dict[str, Any]:
    """A payment; ``refunds`` are its refund rows, newest first (a summary is embedded)."""
    refunds = list(refunds)
    contact_source = row["contact_source"] or ("automatic" if row["contact_id"] else None)
    company_source = row["company_source"] or ("automatic" if row["company_id"] else None)
    return {
        "id": row["id"],
        "object": "payment",
        "status": row["status"],
        "amount": row["amount"],
        "amount_refunded": row["amount_refunded"],
        "amount_refundable": (
            row["amount"] - row["amount_refunded"] - row["amount_refund_pending"]
            if row["status"] in ("succeeded", "partially_refunded")
            else 0
        ),
        "currency": row["currency"],
        "fee": row["fee"],
        "net": net_of(row),
        "method_type": row["method_type"],
        "email": row["email"],
        "contact_id": row["contact_id"],
        "company_id": row["company_id"],
        "deal_ids": list(row["deal_ids"]),
        "associations": {
            "contact": contact_source,
            "company": company_source,
            "manual_deal_ids": list(row["manual_deal_ids"]),
        },
        "source": {"type": row["source_type"], "id": row["source_id"]},
        "processor_payment_id": row["processor_payment_intent_id"],
        "billing_address": row["billing_address"],
        "shipping_address": row["shipping_address"],
        "refunds": {
            "object": "list",
            "total_count": len(refunds),
            "amount_pending": row["amount_refund_pending"],
            "data": [refund_out(r) for r in refunds[:EMBEDDED_REFUNDS]],
            "has_more": len(refunds) > EMBEDDED_REFUNDS,
            "url": f"/v1/payments/{row['id']}/refunds",
        },
        "test_mode": row["test_mode"],
        "created_at": rfc3339(row["created_at"]),
    }


# -- response shapes (the OpenAPI document; `payment_out` / `refund_out` build them) ----------
class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RefundOut(_Out):
    id: str
    object: Literal["refund"]
    payment_id: str
    amount: int
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    failure_reason: str | None
    processor_refund_id: str | None
    created_at: datetime
    settled_at: datetime | None


class PaymentAssociationsOut(_Out):
    """How the payment's contact and company were set: by the purchase or by the merchant."""

    contact: Literal["automatic", "manual"] | None
    company: Literal["automatic", "manual"] | None
    manual_deal_ids: list[str]


class PaymentSourceOut(_Out):
    type: str
    id: str | None


class EmbeddedRefundsOut(_Out):
    object: Literal["list"]
    total_count: int
    amount_pending: int
    data: list[RefundOut]
    has_more: bool
    url: str


class PaymentOut(_Out):
    id: str
    object: Literal["payment"]
    status: Literal["processing", "succeeded", "failed", "refunded", "partially_refunded"]
    amount: int
    amount_refunded: int
    amount_refundable: int
    currency: str
    fee: int | None
    net: int | None
    method_type: str | None
    email: str | None
    contact_id: str | None
    company_id: str | None
    deal_ids: list[str]
    associations: PaymentAssociationsOut
    source: PaymentSourceOut
    processor_payment_id: str | None
    billing_address: dict[str, Any] | None
    shipping_address: dict[str, Any] | None
    refunds: EmbeddedRefundsOut
    test_mode: bool
    created_at: datetime
