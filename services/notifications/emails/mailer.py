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
    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings

    async def send(self, message: OutgoingMessage) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                message.data,
                sender=message.sender,
                recipients=[message.recipient],
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls,
                use_tls=s.smtp_tls,
                timeout=s.smtp_timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if all(500 <= r.code < 600 for r in exc.recipients):
                raise PermanentDeliveryError(str(exc), status="bounced") from exc
            raise
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as exc:
            if 500 <= exc.code < 600:
                raise PermanentDeliveryError(str(exc), status="failed") from exc
            raise
