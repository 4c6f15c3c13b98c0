"""SMTP delivery (aiosmtplib). The target is configuration: the local sink or any server.

What the server answers decides what happens to the message (decision 84):
- accepted: ``sent``;
- a permanent refusal (5xx) of every recipient: ``bounced``; of the message or the
  sender (``MAIL FROM``, ``DATA``): ``failed`` — neither is retried
  (`PermanentDeliveryError`);
- anything else — connection refused or reset, timeouts, 4xx, and 5xx answers about the
  server or our configuration (greeting, HELO, STARTTLS, a wrong password), which an
  operator fixes without the message changing: transient, retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import aiosmtplib

from ..settings import NotificationsSettings
from .render import OutgoingMessage


class PermanentDeliveryError(Exception):
    """The server refused the message for good (5xx): retrying will not help."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        #: ``bounced`` (the recipient was refused) or ``failed`` (the message was).
        self.status = status


class SmtpMailer:
    """Sends over a few kept-open SMTP connections (decision 92): a new connection per
    message costs a TCP (and TLS) handshake, the greeting and EHLO — more than the
    message itself at a hundred purchases a second. An idle connection is reused while
    fresh; one idle for longer than ``smtp_check_idle_s`` is checked with NOOP first
    (servers close idle connections), and one idle for longer than ``smtp_idle_s`` is
    closed. A connection that failed in any way is closed, never reused, and the failure
    goes where it always went (retry with backoff, or final): the message is never sent
    again from here on a guess."""

    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings
        #: Idle connections, newest last: (connection, its event loop, when it went idle).
        self._idle: list[tuple[aiosmtplib.SMTP, asyncio.AbstractEventLoop, float]] = []
        #: EHLO name, found once (aiosmtplib would look it up with getfqdn per connection).
        self._local_hostname = settings.smtp_local_hostname or socket.gethostname() or "localhost"
        self.connections_opened = 0

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_tls,
            timeout=s.smtp_timeout_s,
            local_hostname=self._local_hostname,
        )
        await smtp.connect()
        self.connections_opened += 1
        return smtp

    async def _take(self) -> aiosmtplib.SMTP:
        loop, now = asyncio.get_running_loop(), time.monotonic()
        while self._idle:
            smtp, owner, since = self._idle.pop()
            if owner is not loop or not smtp.is_connected or now - since > self.settings.smtp_idle_s:
                _close(smtp)
                continue
            if now - since > self.settings.smtp_check_idle_s:
                try:
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError):
                    _close(smtp)
                    continue
            return smtp
        return await self._connect()

    def _give_back(self, smtp: aiosmtplib.SMTP) -> None:
        if smtp.is_connected and len(self._idle) < self.settings.smtp_pool_size:
            self._idle.append((smtp, asyncio.get_running_loop(), time.monotonic()))
        else:
            _close(smtp)

    async def send(self, message: OutgoingMessage) -> None:
        smtp = await self._take()
        try:
            await smtp.sendmail(message.sender, [message.recipient], message.data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            _close(smtp)
            if all(500 <= r.code < 600 for r in exc.recipients):
                raise PermanentDeliveryError(str(exc), status="bounced") from exc
            raise
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as exc:
            _close(smtp)
            if 500 <= exc.code < 600:
                raise PermanentDeliveryError(str(exc), status="failed") from exc
            raise
        except BaseException:
            _close(smtp)
            raise
        self._give_back(smtp)

    async def close(self) -> None:
        """QUIT the idle connections (the worker is stopping)."""
        idle, self._idle = self._idle, []
        for smtp, owner, _ in idle:
            if owner is asyncio.get_running_loop():
                with contextlib.suppress(aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                    await asyncio.wait_for(smtp.quit(), 2)
            _close(smtp)


def _close(smtp: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        smtp.close()
