"""The checkout service's HTTP app: ``create_app(settings)`` (no I/O until startup)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import jinja2
from aiohttp import web

from shared.money import Money, format_money
from shared.processor.registry import ProcessorRegistry
from shared.web.app import service_app
from shared.web.keys import EXTRAS, SETTINGS

from .accounts.handlers import routes as account_routes
from .apidoc.handlers import routes as apidoc_routes
from .catalogue.handlers import routes as catalogue_routes
from .invoices import routes as invoice_routes
from .links.handlers import routes as link_routes
from .payments.handlers import routes as payment_routes
from .quotes.handlers import routes as quote_routes
from .sessions.handlers import routes as session_routes
from .settings import CheckoutSettings
from .webhooks.handlers import receiver_ctx
from .webhooks.handlers import routes as webhook_routes

HERE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=4096)
def _money(amount, currency: str, locale: str = "en") -> str:
    """The ``money`` filter, memoised (babel's formatting is a large part of a page)."""
    return format_money(Money(int(amount), currency), locale)


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        auto_reload=False,  # compiled once: templates change only with a deploy
    )
    env.filters["money"] = _money
    return env


async def _processors(app: web.Application) -> AsyncIterator[None]:
    registry = ProcessorRegistry(app[SETTINGS].common)
    app[EXTRAS]["processors"] = registry
    yield
    await registry.close()


def create_app(settings: CheckoutSettings) -> web.Application:
    def setup(app: web.Application) -> None:
        app[EXTRAS]["templates"] = _templates()
        app.cleanup_ctx.append(_processors)
        for table in (account_routes, link_routes, session_routes, payment_routes, catalogue_routes, apidoc_routes):
            app.router.add_routes(table)
        app.router.add_routes(invoice_routes)
        app.router.add_routes(quote_routes)
        app.router.add_static("/assets/checkout", HERE / "static", append_version=False)
        app.cleanup_ctx.append(receiver_ctx)  # processor webhooks
        app.router.add_routes(webhook_routes)

    return service_app(settings, service="checkout", schema="checkout", setup_routes=setup)
