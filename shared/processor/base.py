"""What the services need from a payment processor, independent of the vendor.

Every call that creates something takes an ``idempotency_key``: callers derive it from
their own durable operation id (a row written *before* the call), so a retry after a
crash or a lost response reaches the same object at the processor instead of a second
one (TARGETS R3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol


class ProcessorError(Exception):
    """The processor refused the request (4xx other than a decline)."""


class ProcessorUnavailable(ProcessorError):
    """The outcome is unknown (network failure, timeout, 5xx): retry with the same key."""


@dataclass(frozen=True)
class ProcessorConfig:
    type: Literal["test", "stripe"]
    secret_key: str
    publishable_key: str
    #: Base URL of the API (the test processor's; None = Stripe's).
    api_base: str | None = None
    #: Base URL the buyer's browser uses for the processor's script (test processor).
    browser_api_base: str | None = None
    webhook_secret: str | None = None


@dataclass(frozen=True)
class Customer:
    id: str
    email: str | None


@dataclass(frozen=True)
class SetupOutcome:
    id: str
    status: str  # requires_payment_method | requires_action | succeeded | canceled | ...
    client_secret: str
    payment_method_id: str | None
    payment_method_type: str | None = None


@dataclass(frozen=True)
class IntentOutcome:
    """Where a PaymentIntent stands after create/confirm/retrieve."""

    id: str | None
    status: Literal["succeeded", "processing", "requires_action", "declined", "canceled"]
    amount: int
    currency: str
    client_secret: str | None = None
    decline_code: str | None = None
    message: str | None = None
    charge_id: str | None = None
    payment_method_id: str | None = None
    payment_method_type: str | None = None
    raw_status: str | None = None
    metadata: dict = field(default_factory=dict)
    #: From the charge's balance transaction, once the processor reports it (minor units
    #: of ``balance_currency``, which may differ from ``currency`` after conversion).
    fee: int | None = None
    net: int | None = None
    balance_currency: str | None = None


@dataclass(frozen=True)
class RefundOutcome:
    """Where a refund stands at the processor after create/retrieve."""

    id: str
    status: Literal["succeeded", "pending", "failed"]
    amount: int
    currency: str
    payment_intent_id: str | None = None
    #: The processor's own status (``requires_action``, ``canceled``, ...).
    raw_status: str | None = None
    failure_reason: str | None = None
    metadata: dict = field(default_factory=dict)


class PaymentProcessor(Protocol):
    config: ProcessorConfig

    async def find_or_create_customer(
        self, *, email: str, name: str | None, metadata: dict, idempotency_key: str
    ) -> Customer: ...

    async def create_setup_intent(
        self, *, customer_id: str, payment_method_types: list[str], metadata: dict, idempotency_key: str
    ) -> SetupOutcome: ...

    async def retrieve_setup_intent(self, setup_intent_id: str) -> SetupOutcome: ...

    async def attach_payment_method(self, *, payment_method_id: str, customer_id: str) -> None: ...

    async def charge(
        self,
        *,
        amount: int,
        currency: str,
        customer_id: str,
        payment_method_id: str,
        off_session: bool,
        metadata: dict,
        idempotency_key: str,
        payment_method_types: list[str] | None = None,
    ) -> IntentOutcome: ...

    async def retrieve_payment_intent(self, payment_intent_id: str) -> IntentOutcome:
        """The intent's current state, with its method type and (once reported) fee and net."""
        ...

    async def find_payment_intent(self, metadata_key: str, value: str) -> IntentOutcome | None:
        """The intent carrying ``metadata[metadata_key] == value``, or None."""
        ...

    async def create_refund(
        self, *, payment_intent_id: str, amount: int, metadata: dict, idempotency_key: str
    ) -> RefundOutcome: ...

    async def list_refunds(self, payment_intent_id: str) -> list[RefundOutcome]: ...

    async def close(self) -> None: ...
