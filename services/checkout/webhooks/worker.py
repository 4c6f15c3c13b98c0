"""What checkout's worker process needs for processor webhooks (``make_extras``)."""

from __future__ import annotations

from shared.config import ServiceSettings
from shared.processor.registry import ProcessorRegistry

from .registration import EndpointRegistrar


async def webhook_extras(settings: ServiceSettings) -> dict:
    """The processor clients processing uses, and the test processor's webhook
    registrations kept current (closed with the worker)."""
    processors = ProcessorRegistry(settings.common)
    registrar = EndpointRegistrar(settings.database_owner_url, settings.common)
    await registrar.start()
    return {"processors": processors, "_closers": [registrar.stop, processors.close]}
