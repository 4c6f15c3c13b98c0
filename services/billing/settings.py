from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class BillingSettings(ServiceSettings):
    """Environment: ``BILLING_*`` (and ``COMMERCE_*``)."""

    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore", frozen=True)

    database_url: str = "postgresql://commerce_billing_app@127.0.0.1:5432/commerce"
    database_owner_url: str = "postgresql://commerce_billing@127.0.0.1:5432/commerce"
    http_port: int = 8002
    worker_metrics_port: int = 9002
    relay_metrics_port: int = 9012
