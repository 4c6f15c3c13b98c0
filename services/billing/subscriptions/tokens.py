"""The buyer's update link of a subscription (``/billing/payment-method/{token}``)."""

from __future__ import annotations

from shared.config import CommonSettings
from shared.ids import token_hash
from shared.secrets import derive_token

PURPOSE = "payment-method"


def payment_method_token(settings: CommonSettings, subscription_id: str, version: int) -> str:
    return derive_token(settings, PURPOSE, f"{subscription_id}:{version}")


def payment_method_token_hash(settings: CommonSettings, subscription_id: str, version: int) -> bytes:
    return token_hash(payment_method_token(settings, subscription_id, version))


def payment_method_url(settings: CommonSettings, subscription_id: str, version: int) -> str:
    base = settings.public_base_url.rstrip("/")
    return f"{base}/billing/payment-method/{payment_method_token(settings, subscription_id, version)}"
