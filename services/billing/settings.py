from __future__ import annotations

from pydantic import Field
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
    scheduler_metrics_port: int = 9022
    #: Seconds between scheduler passes (a test-clock move or a finished charge wakes it
    #: at once through NOTIFY).
    scheduler_interval_s: float = Field(default=1.0, gt=0)
    #: A charge put on the queue that has not finished after this long is enqueued again
    #: (its message was lost); the job is idempotent, so an extra copy is harmless.
    charge_enqueue_lease_s: float = Field(default=300.0, gt=0)
    #: Attempts without a final outcome after this long are resolved by asking the processor.
    reconcile_after_s: float = Field(default=60.0, gt=0)
