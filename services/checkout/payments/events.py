"""Events checkout consumes about its payments: the CRM's contact of a purchase, and
billing's subscription payments (recorded here so that one list shows every payment)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.accounts import load_account
from shared.events import EventEnvelope
from shared.events.models import ContactUpsertedV1, PaymentFailedV1, PaymentSucceededV1
from shared.inbox import HandlerContext, HandlerRegistry
from shared.logging import get_logger

from . import repository as repo

registry = HandlerRegistry("checkout")
log = get_logger(__name__)


@registry.on("contact.upserted")
async def on_contact_upserted(
    ctx: HandlerContext, conn: asyncpg.Connection, event: ContactUpsertedV1, envelope: EventEnvelope
) -> None:
    """The CRM found (or created) the contact whose e-mail paid: link the payment to it,
    and record the deals the deal rule associated it with."""
    if event.payment_id:
        await repo.set_contact(conn, envelope.account_id, event.payment_id, event.contact_id, event.company_id)
        if event.deal_ids:
            await _add_deals(conn, envelope.account_id, event.payment_id, event.deal_ids)


async def _add_deals(conn: asyncpg.Connection, account_id: str, payment_id: str, deal_ids: list[str]) -> None:
    """Add-only: deals already recorded (a merchant's manual ones included) stay, in order."""
    await conn.execute(
        f"""UPDATE {repo.S}.payments
            SET deal_ids = deal_ids || ARRAY(
                    SELECT d FROM unnest($3::text[]) WITH ORDINALITY AS t(d, n)
                    WHERE NOT d = ANY(deal_ids) ORDER BY n),
                updated_at = now()
            WHERE account_id = $1 AND id = $2 AND NOT $3::text[] <@ deal_ids""",
        account_id,
        payment_id,
        list(dict.fromkeys(deal_ids)),
    )


# -- billing's subscription payments ------------------------------------------------------------
@registry.on("payment.succeeded")
async def on_payment_succeeded(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentSucceededV1, envelope: EventEnvelope
) -> None:
    await _record_subscription_payment(ctx, conn, event, envelope, "succeeded", event.succeeded_at)


@registry.on("payment.failed")
async def on_payment_failed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentFailedV1, envelope: EventEnvelope
) -> None:
    await _record_subscription_payment(ctx, conn, event, envelope, "failed", event.failed_at)


async def _record_subscription_payment(
    ctx: HandlerContext,
    conn: asyncpg.Connection,
    event: PaymentSucceededV1 | PaymentFailedV1,
    envelope: EventEnvelope,
    status: str,
    at: datetime,
) -> None:
    """Billing charged a subscription (a renewal, a dunning retry, a new payment method):
    record the payment — or the failed attempt, as a ``failed`` payment — so that
    ``/v1/payments`` lists it (``?subscription_id=``), and it can be refunded (its intent is
    kept). Events without ``subscription`` are checkout's own (a bank debit settling,
    already recorded): nothing to do."""
    charge = event.subscription
    if charge is None or envelope.producer == "checkout":
        return
    account = await load_account(conn, ctx.schema, envelope.account_id)
    contact = {k: v for k, v in (("email", event.email), ("name", charge.contact_name)) if v}
    row = await repo.record_subscription_payment(
        conn,
        id=event.payment_id,
        account_id=envelope.account_id,
        source_type="subscription",
        source_id=charge.subscription_id,
        status=status,
        amount=event.amount,
        currency=event.currency.upper(),
        method_type=event.method_type,
        email=event.email,
        contact=contact,
        contact_id=charge.contact_id,
        contact_source="automatic" if charge.contact_id else None,
        company_id=charge.company_id,
        company_source="automatic" if charge.company_id else None,
        deal_ids=list(dict.fromkeys(charge.deal_ids)),
        processor_payment_intent_id=charge.processor_payment_intent_id,
        processor_customer_id=charge.processor_customer_id,
        test_mode=account.test_mode if account else charge.test_mode,
        created_at=at,
        updated_at=at,
    )
    log.info(
        "subscription payment recorded" if row is not None else "subscription payment already recorded",
        payment_id=event.payment_id,
        subscription_id=charge.subscription_id,
        status=row["status"] if row is not None else None,
    )
