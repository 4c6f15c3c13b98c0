"""Checkout's quotes in the CRM (PRODUCT §5, §9): ``quote.updated`` snapshots kept in a
projection (highest version wins), from which the deal shows its quote cards ("Paid:
<date>") and the contact's, company's and deal's associations list their quotes."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.clock import rfc3339
from shared.events import EventEnvelope
from shared.events.models import QuoteUpdatedV1
from shared.inbox import HandlerContext, HandlerRegistry

S = "crm_sync"
registry = HandlerRegistry("crm_sync")


@registry.on("quote.updated")
async def on_quote_updated(
    ctx: HandlerContext, conn: asyncpg.Connection, event: QuoteUpdatedV1, envelope: EventEnvelope
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.quotes AS q (id, account_id, version, status, title, deal_id, contact_id, company_id,
                currency, total_due_now, url, expires_on, published_at, paid_at, payment_id, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
            ON CONFLICT (id) DO UPDATE SET
                version = EXCLUDED.version, status = EXCLUDED.status, title = EXCLUDED.title,
                deal_id = EXCLUDED.deal_id, contact_id = EXCLUDED.contact_id, company_id = EXCLUDED.company_id,
                currency = EXCLUDED.currency, total_due_now = EXCLUDED.total_due_now, url = EXCLUDED.url,
                expires_on = EXCLUDED.expires_on, published_at = EXCLUDED.published_at, paid_at = EXCLUDED.paid_at,
                payment_id = EXCLUDED.payment_id, updated_at = EXCLUDED.updated_at
            WHERE q.version < EXCLUDED.version""",
        event.quote_id,
        envelope.account_id,
        event.version,
        event.status,
        event.title,
        event.deal_id,
        event.contact_id,
        event.company_id,
        event.currency,
        event.total_due_now,
        event.url,
        event.expires_on,
        event.published_at,
        event.paid_at,
        event.payment_id,
        envelope.occurred_at,
    )


async def quote_cards(conn: asyncpg.Connection, account_id: str, deal_id: str) -> list[dict[str, Any]]:
    """The deal's quotes, newest first: what its quote cards show."""
    rows = await conn.fetch(
        f"""SELECT * FROM {S}.quotes WHERE account_id = $1 AND deal_id = $2
            ORDER BY COALESCE(published_at, updated_at) DESC, id DESC""",
        account_id,
        deal_id,
    )
    return [
        {
            "id": r["id"],
            "title": r["title"],
            "status": r["status"],
            "currency": r["currency"],
            "total_due_now": r["total_due_now"],
            "url": r["url"],
            "expires_on": r["expires_on"].isoformat() if r["expires_on"] else None,
            "paid_at": rfc3339(r["paid_at"]) if r["paid_at"] else None,
            "payment_id": r["payment_id"],
        }
        for r in rows
    ]
