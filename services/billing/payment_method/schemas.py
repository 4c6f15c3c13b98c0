"""What the update page's JSON endpoints answer (the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ProcessorView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["test", "stripe"]
    publishable_key: str
    api_base: str | None = None
    script_url: str


class SubscriptionView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    status: str
    currency: str
    amount: int
    interval: str
    next_payment_date: str | None
    #: What the open charge still owes (0 when nothing is owed).
    amount_due: int
    #: The dunning timeline's attempts (services/billing/dunning/policy.py Timeline).
    attempts: list[dict[str, Any]]
    next_retry_at: str | None
    final_outcome: str | None
    final_outcome_at: str | None
    payment_method: dict[str, Any] | None
    lines: list[dict[str, Any]]
    updatable: bool


class MerchantView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str


class PaymentMethodPageOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    processor: ProcessorView
    subscription: SubscriptionView
    merchant: MerchantView
    csrf_token: str


class SetupPayment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intent_type: Literal["setup_intent"]
    client_secret: str
    intent_id: str


class StartOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment: SetupPayment


class RetryOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment_id: str
    status: Literal["succeeded", "failed", "processing"]


class CompleteOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["updated"]
    retry: RetryOut | None
