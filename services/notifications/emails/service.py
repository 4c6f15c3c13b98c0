"""Queueing a fact's e-mails in the send ledger, exactly once per (fact, kind, recipient).

The handlers render and queue rows inside the event's transaction (so a repeated event
queues nothing new: the inbox absorbs the same event, the ledger's unique key the same
fact under another event); sending happens after commit (`sender.py`).

Which messages a fact produces is decided by pure builders, one module per producer:
`purchase_mail` (checkout's purchases), `subscription_mail` (billing's charges,
reminders and status changes), `invoice_mail` (billing's invoices), `quote_mail` (the
quote's owner).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from shared.accounts import Account, load_account
from shared.events import EventEnvelope
from shared.events.models import PaymentFailedV1, PaymentSucceededV1
from shared.ids import new_id
from shared.inbox import HandlerContext
from shared.logging import get_logger

from . import repository as repo
from .context import Mail
from .quote_mail import QuotePaid, quote_fact, quote_paid_mails
from .render import Renderer

log = get_logger(__name__)
SCHEMA = "notifications"


async def queue_mails(
    ctx: HandlerContext,
    conn: asyncpg.Connection,
    account_id: str,
    fact_key: str,
    build: Callable[[Account, Any], list[Mail]],
    event: Any,
    related: dict,
    *,
    status: str = "queued",
) -> int:
    """Render and queue the messages ``build`` plans for this fact; the ledger keeps one
    per (fact, kind, recipient). ``status`` ``held``: not to be sent before the payment's
    outcome is final (PRODUCT §11). Returns how many are new."""
    account = await load_account(conn, SCHEMA, account_id)
    if account is None:
        # The account's snapshot has not arrived yet: a retry will find it.
        raise RuntimeError(f"account {account_id} is not known here yet")
    renderer: Renderer = ctx.extras["renderer"]
    domain = ctx.settings.from_address.split("@")[-1]
    queued = 0
    for mail in build(account, event):
        language = mail.language or account.locale
        rendered = renderer.render(mail.template, language, mail.context)
        email_id = new_id("email")
        queued += await repo.queue_email(
            conn,
            id=email_id,
            account_id=account.id,
            kind=mail.kind,
            status=status,
            fact_key=fact_key,
            recipient=mail.recipient,
            subject=rendered.subject,
            html_body=rendered.html,
            text_body=rendered.text,
            locale=language,
            message_id=f"<{email_id}@{domain}>",
            related=related,
            created_at=account.clock.now(),
        )
    log.info("messages queued", fact_key=fact_key, messages=queued, status=status)
    return queued


async def payment_status(conn: asyncpg.Connection, account_id: str, payment_id: str, status: str) -> str:
    """The ledger status of a payment's messages: no message before the outcome (PRODUCT
    §11) — a payment still processing (a bank debit) has its messages rendered now but
    held until it settles, unless its outcome arrived first (events come in any order)."""
    if status != "processing":
        return "queued"
    outcome = await repo.payment_outcome(conn, account_id, payment_id)
    return {"succeeded": "queued", "failed": "dropped"}.get(outcome or "", "held")


async def settle_messages(
    conn: asyncpg.Connection, envelope: EventEnvelope, event: PaymentSucceededV1 | PaymentFailedV1
) -> None:
    """A payment's outcome is final: release its held messages, or drop them for good."""
    succeeded = isinstance(event, PaymentSucceededV1)
    at = event.succeeded_at if succeeded else event.failed_at  # type: ignore[union-attr]
    outcome = "succeeded" if succeeded else "failed"
    await repo.record_outcome(conn, envelope.account_id, event.payment_id, outcome, at)
    fact_key = f"payment:{event.payment_id}"
    if succeeded:
        count = await repo.release_held(conn, envelope.account_id, fact_key)
    else:
        count = await repo.drop_held(conn, envelope.account_id, fact_key)
    log.info("held messages settled", payment_id=event.payment_id, outcome=outcome, messages=count)


async def queue_quote_paid(ctx: HandlerContext, conn: asyncpg.Connection, account_id: str, quote: QuotePaid) -> int:
    """The entry point for the quote's handler (decision 86): queue the "quote paid"
    e-mail to the owner in the handler's transaction, under the quote's payment. Send it
    after commit with ``sender.send_for_fact(ctx, account_id, quote_fact(quote))`` — the
    ``purchase.completed`` handler's after-commit step already does that for the payment.
    Held while the payment is processing; released or dropped by its outcome."""
    status = await payment_status(conn, account_id, quote.payment_id, quote.payment_status)
    related = {"quote_id": quote.quote_id, "payment_id": quote.payment_id}
    return await queue_mails(ctx, conn, account_id, quote_fact(quote), quote_paid_mails, quote, related, status=status)
