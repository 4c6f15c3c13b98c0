"""The payment processor port and its adapters (Stripe through the official SDK)."""

from .base import (
    Customer,
    IntentOutcome,
    PaymentProcessor,
    ProcessorConfig,
    ProcessorError,
    ProcessorUnavailable,
    RefundOutcome,
    SetupOutcome,
)

__all__ = [
    "Customer",
    "IntentOutcome",
    "PaymentProcessor",
    "ProcessorConfig",
    "ProcessorError",
    "ProcessorUnavailable",
    "RefundOutcome",
    "SetupOutcome",
]
