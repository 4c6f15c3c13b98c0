"""The crm_sync service's HTTP app."""

from __future__ import annotations

from aiohttp import web

from shared.web.app import service_app

from .contacts.handlers import routes as contact_routes
from .crm.handlers import routes as crm_routes
from .settings import CrmSettings


def create_app(settings: CrmSettings) -> web.Application:
    def setup(app: web.Application) -> None:
        app.router.add_routes(contact_routes)
        app.router.add_routes(crm_routes)

    return service_app(settings, service="crm_sync", schema="crm_sync", setup_routes=setup)
