"""Notifications' worker process: the ``notifications`` queue (e-mails, the event feed,
webhook drains), the send sweep and the webhook sweep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import dramatiq

from shared.inbox import HandlerContext, HandlerRegistry
from shared.projection import register_account_projection
from shared.worker import run_worker

from .emails.handlers import registry as email_registry
from .emails.mailer import SmtpMailer
from .emails.render import Renderer
from .emails.sender import run_sweeper
from .events_feed.tasks import declare_feed_actor
from .settings import NotificationsSettings
from .webhooks.sender import Sender
from .webhooks.tasks import declare_drain_actor, sweep_forever

accounts_registry = HandlerRegistry("notifications")
register_account_projection(accounts_registry)

REGISTRIES = [accounts_registry, email_registry]


async def _webhook_sweep(ctx: HandlerContext, stop: asyncio.Event) -> None:
    """The webhook sweep until the worker stops (it holds no work between rounds)."""
    sweep = asyncio.create_task(sweep_forever(ctx))
    await stop.wait()
    sweep.cancel()
    await asyncio.gather(sweep, return_exceptions=True)


async def _extras(settings: NotificationsSettings) -> dict:
    sender = Sender(connect_timeout=settings.webhook_connect_timeout_s, total_timeout=settings.webhook_timeout_s)
    mailer = SmtpMailer(settings)
    return {
        "renderer": Renderer(),
        "mailer": mailer,
        "webhook_sender": sender,
        "_closers": [sender.close, mailer.close],
        # Every worker process sweeps: e-mail retries after backoff and dead senders' leases;
        # webhook endpoints whose next delivery is due.
        "_background": [run_sweeper, _webhook_sweep],
    }


def run(settings: NotificationsSettings) -> None:
    def declare(broker: dramatiq.Broker, get_context: Callable[[], HandlerContext]) -> None:
        declare_feed_actor(broker, settings, get_context)
        declare_drain_actor(broker, get_context)

    run_worker(
        settings,
        service="notifications",
        schema="notifications",
        registries=REGISTRIES,
        declare_extra_actors=declare,
        make_extras=_extras,
    )
