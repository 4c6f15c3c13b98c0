"""Notifications' worker process: the ``notifications`` queue."""

from __future__ import annotations

from shared.inbox import HandlerRegistry
from shared.projection import register_account_projection
from shared.worker import run_worker

from .emails.handlers import registry as email_registry
from .emails.mailer import SmtpMailer
from .emails.render import Renderer
from .settings import NotificationsSettings

accounts_registry = HandlerRegistry("notifications")
register_account_projection(accounts_registry)

REGISTRIES = [accounts_registry, email_registry]


async def _extras(settings: NotificationsSettings) -> dict:
    return {"renderer": Renderer(), "mailer": SmtpMailer(settings)}


def run(settings: NotificationsSettings) -> None:
    run_worker(settings, service="notifications", schema="notifications", registries=REGISTRIES, make_extras=_extras)
