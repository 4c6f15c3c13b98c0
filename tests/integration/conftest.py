"""Fixtures of the in-process notification tests: a real SMTP sink (aiosmtpd, the
devtools sink that keeps each message as a file) and the notifications worker's handler
context on the test database."""

from __future__ import annotations

import pytest
from aiosmtpd.controller import Controller

from devtools.infra import free_port
from devtools.mail_sink import FileSink
from services.notifications.emails.mailer import SmtpMailer
from services.notifications.emails.render import Renderer
from services.notifications.settings import NotificationsSettings
from shared.db import create_pool
from shared.inbox import HandlerContext
from tests.support.mail import SCHEMA, Acks


@pytest.fixture
def sink(tmp_path):
    """(port, directory of the received .eml files)."""
    port = free_port()
    controller = Controller(FileSink(tmp_path / "mail"), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, tmp_path / "mail"
    controller.stop()


@pytest.fixture
def notify_settings(dsn, sink):
    """Override to change the settings (e.g. the retry backoff)."""
    return NotificationsSettings(
        database_url=dsn(SCHEMA),
        database_owner_url=dsn(SCHEMA, owner=True),
        smtp_port=sink[0],
        smtp_timeout_s=5,
    )


@pytest.fixture
async def notify_ctx(notify_settings):
    s = notify_settings
    app = await create_pool(s.database_url, application_name="test", min_size=1, max_size=2)
    owner = await create_pool(s.database_owner_url, application_name="test-owner", min_size=1, max_size=2)
    extras = {"renderer": Renderer(), "mailer": SmtpMailer(s)}
    yield HandlerContext("notifications", SCHEMA, s, app, owner, Acks(), extras)
    await app.close()
    await owner.close()
