"""The notifications service's HTTP app."""

from __future__ import annotations

from aiohttp import web

from shared.web.app import service_app

from .emails.handlers import routes as email_routes
from .events_feed.handlers import routes as event_routes
from .settings import NotificationsSettings
from .webhooks.handlers import routes as webhook_routes


def create_app(settings: NotificationsSettings) -> web.Application:
    def setup(app: web.Application) -> None:
        app.router.add_routes(email_routes)
        app.router.add_routes(webhook_routes)
        app.router.add_routes(event_routes)

    return service_app(settings, service="notifications", schema="notifications", setup_routes=setup)
