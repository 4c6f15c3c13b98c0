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
    from_address: str = "receipts@commerce.localhost"
    #: A message stuck in "sending" this long (a worker died mid-send) is sent again.
    sending_lease_s: int = Field(default=120, ge=10)
