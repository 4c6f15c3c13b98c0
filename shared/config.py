"""Settings read from the environment only (pydantic-settings).

No settings object is created at import time: entry points build one and pass it down.
`CommonSettings` (prefix ``COMMERCE_``) holds what every process shares; each service
extends `ServiceSettings` with its own prefix (``CHECKOUT_``, ``BILLING_`` ...).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMMERCE_", extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    #: The one base URL that serves the whole public surface (the router / ingress).
    public_base_url: str = "http://127.0.0.1:8000"
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every Redis key the system writes (dramatiq queues, acks, rate limits).
    broker_namespace: str = "commerce"
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    #: Fernet key (urlsafe base64, 32 bytes) that encrypts processor secrets at rest.
    secret_key: SecretStr | None = None
    #: Base URL of the test processor (localstripe) as the services reach it.
    test_processor_url: str = "http://127.0.0.1:8420"
    #: The same server as a buyer's browser reaches it (defaults to test_processor_url).
    test_processor_public_url: str | None = None
    processor_max_network_retries: int = Field(default=2, ge=0, le=10)
    processor_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Tolerance of processor webhook timestamps, in seconds.
    webhook_tolerance_seconds: int = Field(default=300, ge=1)

    @property
    def browser_test_processor_url(self) -> str:
        return self.test_processor_public_url or self.test_processor_url


class ServiceSettings(BaseSettings):
    """Base of each service's settings. Subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    common: CommonSettings = Field(default_factory=CommonSettings)

    #: Runtime role: row-level security applies to it.
    database_url: str
    #: Schema owner: migrations, the outbox relay and cross-account maintenance.
    database_owner_url: str
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)

    http_host: str = "127.0.0.1"
    http_port: int = 0
    #: Port of the health/metrics endpoint of worker and relay processes (0 = off).
    worker_metrics_port: int = 0
    relay_metrics_port: int = 0

    worker_threads: int = Field(default=8, ge=1, le=256)
    #: Longest idle poll of a consumer (ms); bounds pickup latency (dramatiq's default 1000).
    worker_timeout_ms: int = Field(default=20, ge=1, le=10_000)
    #: A worker silent this long is presumed dead and its jobs are redelivered.
    broker_heartbeat_timeout_ms: int = Field(default=15_000, ge=1_000)
    #: How often each worker sweeps a queue for dead workers' unacknowledged jobs (ms).
    broker_maintenance_interval_ms: int = Field(default=5_000, ge=100, le=600_000)
    job_time_limit_ms: int = Field(default=60_000, ge=100)
    job_max_retries: int = Field(default=12, ge=0)
    job_max_age_ms: int = Field(default=7 * 86_400_000, ge=1000)

    relay_batch_size: int = Field(default=500, ge=1, le=10_000)
    relay_poll_interval_s: float = Field(default=1.0, gt=0)
    #: An event not acknowledged by a subscriber this long after publishing is sent again
    #: (doubling on each further attempt); a broker wipe re-sends at once.
    relay_redeliver_after_s: float = Field(default=30.0, gt=0)
