"""Which e-mails a fact produces, and sending them exactly once per (fact, recipient).

The handler renders and queues rows inside the event's transaction (so a repeated event
queues nothing new); sending happens after commit and on every redelivery, claiming
only rows not yet sent. A message whose sender died mid-send is sent again after its
lease; its Message-ID is fixed per row, so receivers can tell a repeat. Until then the
event is retried, not acknowledged: the lease can only expire into a send if some
delivery comes back for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from dramatiq import Retry

from shared.accounts import Account, load_account
from shared.db import UNAVAILABLE_ERRORS, tenant_tx
from shared.events import EventEnvelope
from shared.events.models import PaymentFailedV1, PaymentSucceededV1, PurchaseCompletedV1
from shared.ids import new_id
from shared.inbox import HandlerContext
from shared.logging import get_logger

from . import repository as repo
from .mailer import PermanentDeliveryError, SmtpMailer
from .render import METHOD_NAMES, Renderer, build_message, local_date, money
from .subscription_mail import Mail

log = get_logger(__name__)
SCHEMA = "notifications"
#: How long recording "sent" is retried through a database outage (within the job's time limit).
MARK_SENT_PATIENCE_S = 30.0


def receipt_context(account: Account, event: PurchaseCompletedV1) -> dict:
    locale = account.settings.language
    cur = event.currency
    return {
        "merchant": {"name": account.name, "logo_url": account.settings.logo_url},
        "contact": event.contact.model_dump(),
        "items": [
            {
                "name": item.name,
                "quantity": item.quantity,
                "unit_amount": money(item.unit_amount, cur, locale),
                "amount": money(item.amount, cur, locale),
            }
            for item in event.items
        ],
        "subtotal": money(event.subtotal, cur, locale),
        "discount": money(event.discount, cur, locale) if event.discount else None,
        "tax": money(event.tax, cur, locale) if event.tax else None,
        "total": money(event.amount, cur, locale),
        "paid_on": local_date(event.paid_at, account.settings.time_zone, locale),
        "method": METHOD_NAMES.get(locale, METHOD_NAMES["en"]).get(event.method_type, event.method_type),
        "payment_id": event.payment_id,
    }


async def queue_receipt(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PurchaseCompletedV1, envelope: EventEnvelope
) -> None:
    account = await load_account(conn, SCHEMA, envelope.account_id)
    if account is None:
        # The account's snapshot has not arrived yet: a retry will find it.
        raise RuntimeError(f"account {envelope.account_id} is not known here yet")
    if not account.settings.notifications.get("receipt", True):
        return
    renderer: Renderer = ctx.extras["renderer"]
    locale = account.settings.language
    rendered = renderer.render("receipt", locale, receipt_context(account, event))
    email_id = new_id("email")
    await repo.queue_email(
        conn,
        id=email_id,
        account_id=account.id,
        kind="receipt",
        status=await _initial_status(conn, account.id, event),
        fact_key=f"payment:{event.payment_id}",
        recipient=event.contact.email,
        subject=rendered.subject,
        html_body=rendered.html,
        text_body=rendered.text,
        locale=locale,
        message_id=f"<{email_id}@{ctx.settings.from_address.split('@')[-1]}>",
        related={"payment_id": event.payment_id, "source": event.source},
        created_at=account.clock.now(),
    )


async def _initial_status(conn: asyncpg.Connection, account_id: str, event: PurchaseCompletedV1) -> str:
    """No message before the outcome (PRODUCT §11): a payment still processing (a bank
    debit) has its receipt rendered now but held until it settles — unless its outcome
    arrived first (events come in any order)."""
    if event.payment_status != "processing":
        return "queued"
    outcome = await repo.payment_outcome(conn, account_id, event.payment_id)
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


async def queue_mails(
    ctx: HandlerContext,
    conn: asyncpg.Connection,
    account_id: str,
    fact_key: str,
    build: Callable[[Account, Any], list[Mail]],
    event: Any,
    related: dict,
) -> int:
    """Render and queue the messages ``build`` plans for this fact (subscription_mail);
    the ledger keeps one per (fact, kind, recipient). Returns how many are new."""
    account = await load_account(conn, SCHEMA, account_id)
    if account is None:
        # The account's snapshot has not arrived yet: a retry will find it.
        raise RuntimeError(f"account {account_id} is not known here yet")
    renderer: Renderer = ctx.extras["renderer"]
    domain = ctx.settings.from_address.split("@")[-1]
    queued = 0
    for mail in build(account, event):
        rendered = renderer.render(mail.template, account.locale, mail.context)
        email_id = new_id("email")
        queued += await repo.queue_email(
            conn,
            id=email_id,
            account_id=account.id,
            kind=mail.kind,
            status="queued",
            fact_key=fact_key,
            recipient=mail.recipient,
            subject=rendered.subject,
            html_body=rendered.html,
            text_body=rendered.text,
            locale=account.locale,
            message_id=f"<{email_id}@{domain}>",
            related=related,
            created_at=account.clock.now(),
        )
    log.info("messages queued", fact_key=fact_key, messages=queued)
    return queued


async def send_for_fact(ctx: HandlerContext, account_id: str, fact_key: str) -> None:
    mailer: SmtpMailer = ctx.extras["mailer"]
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        account = await load_account(conn, SCHEMA, account_id)
        rows = await repo.claim_unsent(conn, account_id, fact_key, ctx.settings.sending_lease_s)
        claimed = [r["id"] for r in rows]
        held_for = await repo.lease_left(conn, account_id, fact_key, ctx.settings.sending_lease_s, claimed)
    transient: Exception | None = None
    for row in rows:
        message = build_message(
            sender=ctx.settings.from_address,
            sender_name=account.name,
            recipient=row["recipient"],
            subject=row["subject"],
            text=row["text_body"],
            html=row["html_body"],
            message_id=row["message_id"],
            sent_at=account.clock.now(),
        )
        try:
            await mailer.send(message)
        except PermanentDeliveryError as exc:
            async with tenant_tx(ctx.app_pool, account_id) as conn:
                await repo.mark_failed(conn, row["id"], "bounced", str(exc))
            continue
        except Exception as exc:  # SMTP down or busy: keep it for the retry
            log.warning("smtp send failed", email_id=row["id"], error=repr(exc))
            async with tenant_tx(ctx.app_pool, account_id) as conn:
                await repo.mark_failed(conn, row["id"], "failed", repr(exc))
            transient = exc
            continue
        await _record_sent(ctx, account_id, row["id"], account.clock.now())
    if transient is not None:
        raise transient
    if held_for is not None:
        # Another sender holds a message of this fact (or died holding it): acknowledging
        # now would strand it in "sending". Come back when its lease has expired.
        raise Retry(f"{fact_key}: a message is being sent by another worker", delay=int(held_for * 1000) + 1000)


async def _record_sent(ctx: HandlerContext, account_id: str, email_id: str, at) -> None:
    """The server accepted the message: record it even across a short database outage —
    giving up would leave the row "sending" and send it a second time after its lease."""
    deadline = time.monotonic() + MARK_SENT_PATIENCE_S
    delay = 0.25
    while True:
        try:
            async with tenant_tx(ctx.app_pool, account_id) as conn:
                await repo.mark_sent(conn, email_id, at)
            return
        except UNAVAILABLE_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("recording a sent e-mail failed; retrying", email_id=email_id, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)
