"""``payment_link.associated``: a payment link was made from a contact, company or deal
(PRODUCT §3.4), so the record lists the link from its creation, not only after its first
payment.

The association is stored like the one a purchase through the link adds
(`purchases.apply_purchase`): ``(record kind, record id, 'payment_link', link id)``, so
either path — or both, in any order, any number of times — leaves one row.

A record that does not exist here (deleted after checkout made the link, or never
known) is skipped with a warning and the event counts as handled: retrying could never
make it appear, because checkout only learns of records from crm_sync's own
``crm_record.updated`` (decision 23).
"""

from __future__ import annotations

import asyncpg

from shared.events import EventEnvelope
from shared.events.models import PaymentLinkAssociatedV1
from shared.inbox import HandlerContext, HandlerRegistry
from shared.logging import get_logger

from . import repository as repo

log = get_logger(__name__)
registry = HandlerRegistry("crm_sync")


@registry.on("payment_link.associated")
async def on_payment_link_associated(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentLinkAssociatedV1, envelope: EventEnvelope
) -> None:
    account_id = envelope.account_id
    if not await repo.lock_existing(conn, account_id, event.kind, event.record_id):
        log.warning(
            "the payment link's CRM record does not exist; not associated",
            link_id=event.link_id,
            kind=event.kind,
            record_id=event.record_id,
        )
        return
    await repo.associate(conn, account_id, event.kind, event.record_id, "payment_link", event.link_id)
