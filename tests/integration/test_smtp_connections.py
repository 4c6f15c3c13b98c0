"""The mailer's kept-open SMTP connections (decision 92), against a real aiosmtpd server
that counts its connections: messages share a connection; one the server dropped while
idle is found out (NOOP) and replaced without failing a message; a refused message's
connection is not reused; concurrent sends each get their own; close() says QUIT."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiosmtpd.controller import Controller

from devtools.infra import free_port
from services.notifications.emails.mailer import PermanentDeliveryError, SmtpMailer
from services.notifications.emails.render import build_message
from services.notifications.settings import NotificationsSettings


class CountingSink:
    """Accepts everything but ``reject@…`` (554 at DATA); counts connections and QUITs."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.sessions: set[int] = set()
        self.quits = 0

    async def handle_DATA(self, server, session, envelope):
        self.sessions.add(id(session))
        if any(r.startswith("reject") for r in envelope.rcpt_tos):
            return "554 5.6.0 Message refused"
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        self.quits += 1
        return "221 Bye"


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def sink(port):
    handler = CountingSink()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, controller
    controller.stop()


def mailer_for(port: int, **settings) -> SmtpMailer:
    return SmtpMailer(NotificationsSettings(smtp_port=port, smtp_timeout_s=5, **settings))


def message(recipient: str, n: int = 0):
    return build_message(
        sender="receipts@commerce.localhost",
        sender_name="Shop",
        recipient=recipient,
        subject=f"Receipt {n}",
        text="Thanks",
        html="<p>Thanks</p>",
        message_id=f"<m{n}-{recipient}@commerce.localhost>",
        sent_at=datetime(2027, 1, 1, tzinfo=UTC),
    )


async def test_messages_share_one_connection(sink, port):
    handler, _ = sink
    mailer = mailer_for(port)
    for n in range(5):
        await mailer.send(message(f"buyer{n}@example.com", n))
    assert len(handler.received) == 5
    assert mailer.connections_opened == 1 and len(handler.sessions) == 1
    await mailer.close()
    assert handler.quits == 1


async def test_a_connection_dropped_while_idle_is_replaced_without_failing_a_message(port):
    handler = CountingSink()
    first = Controller(handler, hostname="127.0.0.1", port=port)
    first.start()
    mailer = mailer_for(port, smtp_check_idle_s=0.0)  # check every idle connection before use
    try:
        await mailer.send(message("first@example.com"))
    finally:
        first.stop()  # the server goes away, and with it the idle connection ...
    again = Controller(handler, hostname="127.0.0.1", port=port)
    again.start()  # ... and comes back
    try:
        await mailer.send(message("second@example.com"))
        assert handler.received == ["first@example.com", "second@example.com"]
        assert mailer.connections_opened == 2
        await mailer.close()
    finally:
        again.stop()


async def test_an_old_idle_connection_is_closed_not_reused(sink, port):
    handler, _ = sink
    mailer = mailer_for(port, smtp_idle_s=0.0)
    await mailer.send(message("first@example.com"))
    await asyncio.sleep(0.01)
    await mailer.send(message("second@example.com"))
    assert mailer.connections_opened == 2 and len(handler.received) == 2
    await mailer.close()


async def test_a_refused_messages_connection_is_not_reused(sink, port):
    handler, _ = sink
    mailer = mailer_for(port)
    with pytest.raises(PermanentDeliveryError) as refused:
        await mailer.send(message("reject@example.com"))
    assert refused.value.status == "failed"
    await mailer.send(message("next@example.com"))
    assert handler.received == ["next@example.com"] and mailer.connections_opened == 2
    await mailer.close()


async def test_concurrent_sends_use_their_own_connections_and_the_pool_keeps_a_few(sink, port):
    handler, _ = sink
    mailer = mailer_for(port, smtp_pool_size=2)
    await asyncio.gather(*(mailer.send(message(f"b{n}@example.com", n)) for n in range(6)))
    assert sorted(handler.received) == sorted(f"b{n}@example.com" for n in range(6))
    assert mailer.connections_opened == 6
    await asyncio.gather(*(mailer.send(message(f"c{n}@example.com", n)) for n in range(2)))
    assert mailer.connections_opened == 6  # the two kept open served the next two
    await mailer.close()
    assert handler.quits == 2
