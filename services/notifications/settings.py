from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class NotificationsSettings(ServiceSettings):
    """Environment: ``NOTIFICATIONS_*`` (and ``COMMERCE_*``)."""

    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore", frozen=True)

    database_url: str = "postgresql://commerce_notifications_app@127.0.0.1:5432/commerce"
    database_owner_url: str = "postgresql://commerce_notifications@127.0.0.1:5432/commerce"
    http_port: int = 8003
    worker_metrics_port: int = 9003
    relay_metrics_port: int = 9013

    #: The SMTP server: the local sink by default, any server in production.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout_s: float = Field(default=15.0, gt=0)
    #: Connections kept open to the SMTP server per worker process (decision 92).
    smtp_pool_size: int = Field(default=8, ge=0, le=100)
    #: An idle connection is closed after this many seconds ...
    smtp_idle_s: float = Field(default=30.0, ge=0)
    #: ... and checked with NOOP before reuse once idle this long.
    smtp_check_idle_s: float = Field(default=1.0, ge=0)
    #: The name given in EHLO (default: this machine's host name).
    smtp_local_hostname: str | None = None
    from_address: str = "receipts@commerce.localhost"
    #: A message stuck in "sending" this long (a worker died mid-send) is sent again.
    sending_lease_s: int = Field(default=120, ge=10)

    # -- outbound webhooks and the event feed (docs/decisions.md 60-69) --------------------------
    #: Seconds to open a connection to a webhook endpoint.
    webhook_connect_timeout_s: float = Field(default=5.0, gt=0)
    #: Seconds one webhook request may take in all; a slower endpoint's attempt fails.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    #: Seconds allowed to resolve an endpoint's host when it is registered or changed.
    webhook_resolve_timeout_s: float = Field(default=3.0, gt=0)
    #: Seconds between a worker's sweeps for endpoints whose next delivery is due.
    webhook_sweep_interval_s: float = Field(default=1.0, gt=0)
    #: Seconds a worker holds an endpoint while it sends (renewed after each delivery).
    webhook_drain_lease_s: int = Field(default=60, ge=30)
    #: Test-mode accounts may send webhooks to loopback addresses (local development, PRODUCT
    #: §1); turn off where untrusted test-mode accounts share a host with other services.
    webhook_test_mode_loopback: bool = True
    #: Transient SMTP failures: retried after base × 2^(attempt − 1) seconds, at most
    #: ``retry_max_s`` apart, until the message has been failing for ``give_up_after_s``.
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    give_up_after_s: float = Field(default=3 * 24 * 3600.0, gt=0)
    #: Every worker sweeps the ledger for messages due (retries, dead senders' leases).
    send_sweep_interval_s: float = Field(default=1.0, gt=0)
    send_sweep_batch: int = Field(default=100, ge=1, le=10_000)
