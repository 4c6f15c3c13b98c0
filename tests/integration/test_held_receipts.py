"""No message before the outcome (PRODUCT §11), in notifications, against real PostgreSQL:
the receipt of a processing payment is held until ``payment.succeeded`` and dropped on
``payment.failed`` — whichever order the purchase and its settlement arrive in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.notifications.emails import handlers, service
from services.notifications.emails.render import Renderer
from services.notifications.settings import NotificationsSettings
from shared.accounts import apply_account_snapshot
from shared.db import create_pool, tenant_tx
from shared.events import EventEnvelope
from shared.events.models import AccountSnapshot, PaymentFailedV1, PaymentSucceededV1, PurchaseCompletedV1
from shared.inbox import HandlerContext

SCHEMA = "notifications"


@pytest.fixture
async def ctx(dsn):
    app = await create_pool(dsn(SCHEMA), application_name="test", min_size=1, max_size=2)
    owner = await create_pool(dsn(SCHEMA, owner=True), application_name="test-owner", min_size=1, max_size=2)
    settings = NotificationsSettings(database_url=dsn(SCHEMA), database_owner_url=dsn(SCHEMA, owner=True))
    yield HandlerContext("notifications", SCHEMA, settings, app, owner, None, {"renderer": Renderer()})
    await app.close()
    await owner.close()


async def new_account(ctx: HandlerContext) -> str:
    account_id = f"acct_held_{uuid.uuid4().hex[:10]}"
    snapshot = AccountSnapshot(
        id=account_id, version=1, name="Held", test_mode=True, settings={}, clock_offset_us=0, api_keys=[]
    )
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        await apply_account_snapshot(conn, SCHEMA, snapshot)
    return account_id


def envelope(account_id: str, event_type: str, data: dict) -> EventEnvelope:
    return EventEnvelope(
        id=f"evt_{uuid.uuid4().hex}",
        type=event_type,
        version=1,
        account_id=account_id,
        producer="checkout",
        occurred_at=datetime.now(UTC),
        data=data,
    )


def purchase(payment_id: str) -> PurchaseCompletedV1:
    return PurchaseCompletedV1(
        payment_id=payment_id,
        payment_status="processing",
        session_id="cs_x",
        source={"type": "payment_link", "id": "plink_x"},
        amount=2500,
        currency="EUR",
        subtotal=2500,
        method_type="sepa_debit",
        contact={"email": "held@example.com"},
        items=[],
        paid_at=datetime.now(UTC),
        test_mode=True,
    )


def outcome(payment_id: str, succeeded: bool):
    common = {
        "payment_id": payment_id,
        "amount": 2500,
        "currency": "EUR",
        "method_type": "sepa_debit",
        "source": {"type": "payment_link", "id": "plink_x"},
    }
    if succeeded:
        return PaymentSucceededV1(**common, succeeded_at=datetime.now(UTC))
    return PaymentFailedV1(**common, decline_code="insufficient_funds", failed_at=datetime.now(UTC))


async def deliver(ctx: HandlerContext, account_id: str, event) -> None:
    env = envelope(account_id, type(event).event_type, event.model_dump(mode="json"))
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        if isinstance(event, PurchaseCompletedV1):
            await handlers.on_purchase_completed(ctx, conn, event, env)
        else:
            await service.settle_messages(conn, env, event)


async def receipt_status(ctx: HandlerContext, account_id: str, payment_id: str) -> list[str]:
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        rows = await conn.fetch(
            f"SELECT status FROM {SCHEMA}.emails WHERE account_id = $1 AND fact_key = $2",
            account_id,
            f"payment:{payment_id}",
        )
    return [r["status"] for r in rows]


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (["purchase"], ["held"]),
        (["purchase", "succeeded"], ["queued"]),
        (["succeeded", "purchase"], ["queued"]),
        (["purchase", "failed"], ["dropped"]),
        (["failed", "purchase"], ["dropped"]),
        (["purchase", "succeeded", "failed"], ["queued"]),  # a failure never takes a success back
        (["purchase", "succeeded", "purchase", "succeeded"], ["queued"]),  # repeats change nothing
    ],
)
async def test_a_processing_payments_receipt_waits_for_its_outcome_in_any_order(ctx, order, expected):
    account_id = await new_account(ctx)
    payment_id = f"pay_{uuid.uuid4().hex[:12]}"
    for step in order:
        event = purchase(payment_id) if step == "purchase" else outcome(payment_id, step == "succeeded")
        await deliver(ctx, account_id, event)
    assert await receipt_status(ctx, account_id, payment_id) == expected


async def test_a_card_purchase_is_not_held(ctx):
    account_id = await new_account(ctx)
    payment_id = f"pay_{uuid.uuid4().hex[:12]}"
    card = purchase(payment_id).model_copy(update={"payment_status": "succeeded", "method_type": "card"})
    await deliver(ctx, account_id, card)
    assert await receipt_status(ctx, account_id, payment_id) == ["queued"]
