"""``invoice.updated`` snapshots, and writing a batch of events to the outbox at once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from shared.config import CommonSettings
from shared.events import EventEnvelope, subscribers_of
from shared.events.models import InvoiceLine, InvoiceUpdatedV1, SubscriptionUpdatedV1
from shared.ids import new_id
from shared.logging import current_correlation_id
from shared.outbox import publish_event

from ..subscriptions.service import contact_name
from .tokens import invoice_url

SCHEMA = "billing"


def invoice_event(settings: CommonSettings, row: Any, previous_status: str | None) -> InvoiceUpdatedV1:
    pay = row["payment_settings"] or {}
    return InvoiceUpdatedV1(
        invoice_id=row["id"],
        version=row["version"],
        number=row["number"],
        status=row["status"],
        previous_status=previous_status,
        subscription_id=row["subscription_id"],
        period_index=row["period_index"],
        currency=row["currency"],
        lines=[InvoiceLine(**line) for line in row["lines"]],
        subtotal=row["subtotal"],
        discount=row["discount"],
        tax=row["tax"],
        total=row["total"],
        amount_paid=row["amount_paid"],
        issue_date=row["issue_date"],
        due_date=row["due_date"],
        email=row["email"],
        contact_name=contact_name(row["contact"]),
        contact_id=row["contact_id"],
        url=invoice_url(settings, row["id"], row["token_version"]),
        token_hash=bytes(row["token_hash"]).hex(),
        language=row["language"],
        online_payment=pay.get("online_payment", True) is not False,
        payment_methods=pay.get("payment_methods") or ["card"],
        collect_billing_address=bool(pay.get("collect_billing_address")),
        collect_shipping_address=bool(pay.get("collect_shipping_address")),
        collect_payment_method=row["collect_payment_method"],
        paid_at=row["paid_at"],
        voided_at=row["voided_at"],
        payment_id=row["payment_id"],
        test_mode=row["test_mode"],
    )


async def publish_invoice(
    conn: asyncpg.Connection, settings: CommonSettings, row: Any, *, previous_status: str | None, at: datetime
) -> None:
    await publish_event(
        conn,
        schema=SCHEMA,
        producer="billing",
        account_id=row["account_id"],
        event=invoice_event(settings, row, previous_status),
        occurred_at=at,
    )


def subscription_snapshot(row: Any, previous_status: str | None) -> SubscriptionUpdatedV1:
    """The same snapshot as `subscriptions.service.publish_snapshot` (kept in step with
    it), built without writing, so a batch is written in one statement."""
    return SubscriptionUpdatedV1(
        subscription_id=row["id"],
        version=row["version"],
        status=row["status"],
        previous_status=previous_status,
        email=row["email"],
        contact_name=contact_name(row["contact"]),
        contact_id=row["contact_id"],
        company_id=row["company_id"],
        deal_ids=list(row["deal_ids"]),
        currency=row["currency"],
        amount=row["amount"],
        interval=row["interval"],
        payments_total=row["payments_total"],
        payments_made=row["payments_made"],
        start_date=row["start_date"],
        next_payment_date=row["next_payment_date"],
        end_date=row["end_date"],
        source={"type": row["source_type"], "id": row["source_id"]},
        origin_payment_id=row["origin_payment_id"],
        canceled_at=row["canceled_at"],
        ended_at=row["ended_at"],
        test_mode=row["test_mode"],
    )


_INSERT_MANY = f"""
INSERT INTO {SCHEMA}.outbox (event_id, account_id, type, version, envelope, pending, delivered_at)
SELECT r.event_id, r.account_id, r.type, r.version, r.envelope,
       ARRAY(SELECT jsonb_array_elements_text(r.pending)),
       CASE WHEN jsonb_array_length(r.pending) = 0 THEN now() END
FROM jsonb_to_recordset($1::jsonb)
    AS r(event_id text, account_id text, type text, version int, envelope jsonb, pending jsonb)
"""


async def publish_many(conn: asyncpg.Connection, events: Sequence[tuple[str, BaseModel, datetime]]) -> list[str]:
    """Write ``(account_id, event, occurred_at)`` to the outbox in one statement, in order,
    inside the caller's transaction (what `shared.outbox.publish_event` does for one)."""
    rows = []
    correlation = current_correlation_id()
    for account_id, event, occurred_at in events:
        event_type = type(event).event_type  # type: ignore[attr-defined]
        envelope = EventEnvelope(
            id=new_id("evt"),
            type=event_type,
            version=type(event).event_version,  # type: ignore[attr-defined]
            account_id=account_id,
            producer="billing",
            occurred_at=occurred_at,
            correlation_id=correlation,
            data=event.model_dump(mode="json"),
        )
        rows.append(
            {
                "event_id": envelope.id,
                "account_id": account_id,
                "type": event_type,
                "version": envelope.version,
                "envelope": envelope.model_dump(mode="json"),
                "pending": list(subscribers_of(event_type)),
            }
        )
    if rows:
        await conn.execute(_INSERT_MANY, rows)
    return [r["event_id"] for r in rows]
