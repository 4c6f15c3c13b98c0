"""The billing service's HTTP app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import jinja2
from aiohttp import web

from shared.processor.registry import ProcessorRegistry
from shared.web.app import service_app
from shared.web.keys import EXTRAS, SETTINGS

from .analytics.handlers import routes as analytics_routes
from .invoices.handlers import routes as invoice_routes
from .ledger.handlers import routes as ledger_routes
from .payment_method.handlers import routes as payment_method_routes
from .settings import BillingSettings
from .subscriptions.handlers import routes as subscription_routes

HERE = Path(__file__).parent


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        auto_reload=False,
    )


async def _processors(app: web.Application) -> AsyncIterator[None]:
    registry = ProcessorRegistry(app[SETTINGS].common)
    app[EXTRAS]["processors"] = registry
    yield
    await registry.close()


def create_app(settings: BillingSettings) -> web.Application:
    def setup(app: web.Application) -> None:
        app[EXTRAS]["templates"] = _templates()
        app.cleanup_ctx.append(_processors)
        app.router.add_routes(ledger_routes)
        app.router.add_routes(subscription_routes)
        app.router.add_routes(invoice_routes)
        app.router.add_routes(analytics_routes)
        app.router.add_routes(payment_method_routes)
        app.router.add_static("/assets/billing", HERE / "static", append_version=False)

    return service_app(settings, service="billing", schema="billing", setup_routes=setup)
