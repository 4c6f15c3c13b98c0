"""Billing's worker process: the ``billing`` queue (events and charge jobs)."""

from __future__ import annotations

from shared.config import ServiceSettings
from shared.processor.registry import ProcessorRegistry
from shared.worker import run_worker

from .charging.tasks import declare_charge_actor
from .events import registry
from .settings import BillingSettings

REGISTRIES = [registry]


async def billing_extras(settings: ServiceSettings) -> dict:
    processors = ProcessorRegistry(settings.common)
    return {"processors": processors, "_closers": [processors.close]}


def run(settings: BillingSettings) -> None:
    run_worker(
        settings,
        service="billing",
        schema="billing",
        registries=REGISTRIES,
        declare_extra_actors=declare_charge_actor,
        make_extras=billing_extras,
    )
