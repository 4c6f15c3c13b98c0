from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.config import ServiceSettings


class CrmSettings(ServiceSettings):
    """Environment: ``CRM_SYNC_*`` (and ``COMMERCE_*``)."""

    model_config = SettingsConfigDict(env_prefix="CRM_SYNC_", extra="ignore", frozen=True)

    database_url: str = "postgresql://commerce_crm_sync_app@127.0.0.1:5432/commerce"
    database_owner_url: str = "postgresql://commerce_crm_sync@127.0.0.1:5432/commerce"
    http_port: int = 8004
    worker_metrics_port: int = 9004
    relay_metrics_port: int = 9014
    #: A bulk import's ``crm_records.updated`` carries up to 1,000 contacts (~100 KB): 50
    #: rows a round trip keep the relay's memory flat during a million-contact import.
    relay_batch_size: int = Field(default=50, ge=1, le=10_000)
