"""crm_sync's worker process: the ``crm_sync`` queue."""

from __future__ import annotations

from shared.inbox import HandlerRegistry
from shared.projection import register_account_projection
from shared.worker import run_worker

from .contacts.handlers import registry as contacts_registry
from .contacts.payment_events import registry as payment_events_registry
from .crm.accounts import keep_default_pipelines
from .crm.link_events import registry as link_events_registry
from .crm.quote_events import registry as quote_events_registry
from .crm.subscription_events import registry as subscription_events_registry
from .settings import CrmSettings

accounts_registry = HandlerRegistry("crm_sync")
register_account_projection(accounts_registry)
keep_default_pipelines(accounts_registry)

REGISTRIES = [
    accounts_registry,
    contacts_registry,
    payment_events_registry,
    link_events_registry,
    subscription_events_registry,
    quote_events_registry,
]


def run(settings: CrmSettings) -> None:
    run_worker(settings, service="crm_sync", schema="crm_sync", registries=REGISTRIES)
