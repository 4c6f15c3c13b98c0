"""Checkout's worker process: consumes the ``checkout`` queue."""

from __future__ import annotations

from shared.worker import run_worker

from .crm_refs import registry as crm_refs_registry
from .invoices import registry as invoices_registry
from .payments.events import registry as payments_registry
from .settings import CheckoutSettings
from .webhooks.events import registry as webhooks_registry
from .webhooks.worker import webhook_extras

REGISTRIES = [payments_registry, crm_refs_registry, webhooks_registry, invoices_registry]


def run(settings: CheckoutSettings) -> None:
    run_worker(settings, service="checkout", schema="checkout", registries=REGISTRIES, make_extras=webhook_extras)
