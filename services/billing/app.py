"""The billing service's HTTP app."""

from __future__ import annotations

from aiohttp import web

from shared.web.app import service_app

from .ledger.handlers import routes as ledger_routes
from .settings import BillingSettings


def create_app(settings: BillingSettings) -> web.Application:
    def setup(app: web.Application) -> None:
        app.router.add_routes(ledger_routes)

    return service_app(settings, service="billing", schema="billing", setup_routes=setup)
