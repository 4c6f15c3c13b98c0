"""``payment.associated``: a merchant associated a payment with a CRM record by hand.

Checkout owns the payment's contact, company and deals; this keeps crm_sync's
``associations`` in step, marked ``source = 'manual'``:
- a deal is added to the payment's deals;
- a payment has one contact and one company, so the new record replaces every other
  record of that kind associated with the payment (the automatic one from the purchase,
  or an earlier manual one). ``created_at`` holds the change's ``associated_at``, and a
  change older than the manual association already stored is ignored — the outcome is
  the same whatever order the events arrive in, and a duplicate changes nothing.
"""

from __future__ import annotations

import asyncpg

from shared.events import EventEnvelope
from shared.events.models import PaymentAssociatedV1
from shared.inbox import HandlerContext, HandlerRegistry

from . import repository as repo

registry = HandlerRegistry("crm_sync")


@registry.on("payment.associated")
async def on_payment_associated(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PaymentAssociatedV1, envelope: EventEnvelope
) -> None:
    s, account_id = ctx.schema, envelope.account_id
    if event.kind != "deal":
        newer = await conn.fetchval(
            f"""SELECT true FROM {s}.associations
                WHERE account_id = $1 AND object_type = $2 AND related_type = 'payment' AND related_id = $3
                  AND source = 'manual' AND created_at > $4
                LIMIT 1""",
            account_id,
            event.kind,
            event.payment_id,
            event.associated_at,
        )
        if newer:
            return  # a later manual change of this payment's contact (company) is applied already
        await conn.execute(
            f"""DELETE FROM {s}.associations
                WHERE account_id = $1 AND object_type = $2 AND related_type = 'payment' AND related_id = $3
                  AND object_id <> $4""",
            account_id,
            event.kind,
            event.payment_id,
            event.record_id,
        )
    await repo.associate(conn, account_id, event.kind, event.record_id, "payment", event.payment_id)
    # The row's time is the change's time (the account's clock), which orders the changes.
    await conn.execute(
        f"""UPDATE {s}.associations
            SET source = 'manual', created_at = CASE WHEN $2 = 'deal' THEN created_at ELSE $5 END
            WHERE account_id = $1 AND object_type = $2 AND object_id = $3
              AND related_type = 'payment' AND related_id = $4""",
        account_id,
        event.kind,
        event.record_id,
        event.payment_id,
        event.associated_at,
    )
