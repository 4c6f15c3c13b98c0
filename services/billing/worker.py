"""Billing's worker process: the ``billing`` queue."""

from __future__ import annotations

from shared.inbox import HandlerRegistry
from shared.projection import register_account_projection
from shared.worker import run_worker

from .ledger.handlers import registry as ledger_registry
from .settings import BillingSettings

accounts_registry = HandlerRegistry("billing")
register_account_projection(accounts_registry)

REGISTRIES = [accounts_registry, ledger_registry]


def run(settings: BillingSettings) -> None:
    run_worker(settings, service="billing", schema="billing", registries=REGISTRIES)
