"""Events checkout consumes about its payments."""

from __future__ import annotations

import asyncpg

from shared.events import EventEnvelope
from shared.events.models import ContactUpsertedV1
from shared.inbox import HandlerContext, HandlerRegistry

from . import repository as repo

registry = HandlerRegistry("checkout")


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
