"""All SQL of processor webhooks: the stored events, and payments settling from them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

S = "checkout"


# -- receiving ------------------------------------------------------------------------------
async def webhook_account(conn: asyncpg.Connection, account_id: str) -> asyncpg.Record | None:
    """What verifying a webhook needs of the account (in a tenant transaction)."""
    return await conn.fetchrow(
        f"""SELECT id, version, test_mode, clock_offset_us, processor->>'webhook_secret_encrypted' AS secret
            FROM {S}.accounts WHERE id = $1""",
        account_id,
    )


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    account_id: str
    event_id: str
    type: str
    object_id: str | None
    livemode: bool | None
    created: datetime | None
    #: The body exactly as signed.
    payload: str
    #: The outbox job (an event envelope, JSON) that makes the worker process it; None: ignored.
    job: str | None


async def receive_many(pool: asyncpg.Pool, events: list[IncomingEvent], pending: list[str]) -> set[int]:
    """Store the events and, for those that are new, their outbox jobs — one statement,
    one transaction (``checkout.receive_processor_events``). Returns the positions (0-based)
    of the new ones; the others were stored before. ``events`` must not repeat an
    (account, event id)."""
    rows = await pool.fetch(
        f"SELECT * FROM {S}.receive_processor_events($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [e.account_id for e in events],
        [e.event_id for e in events],
        [e.type for e in events],
        [e.object_id for e in events],
        [e.livemode for e in events],
        [e.created for e in events],
        [e.payload for e in events],
        [e.job for e in events],
        pending,
    )
    return {row[0] - 1 for row in rows}


# -- processing -----------------------------------------------------------------------------
async def get_event(conn: asyncpg.Connection, account_id: str, event_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.processor_events WHERE account_id = $1 AND event_id = $2", account_id, event_id
    )


async def mark_processed(conn: asyncpg.Connection, account_id: str, event_id: str, status: str, result: str) -> None:
    await conn.execute(
        f"""UPDATE {S}.processor_events SET status = $3, result = $4, processed_at = now()
            WHERE account_id = $1 AND event_id = $2 AND status = 'received'""",
        account_id,
        event_id,
        status,
        result[:1000],
    )


async def payment_by_intent(
    conn: asyncpg.Connection, account_id: str, intent_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.payments WHERE account_id = $1 AND processor_payment_intent_id = $2"
        + (" FOR UPDATE" if lock else ""),
        account_id,
        intent_id,
    )


async def session_exists(conn: asyncpg.Connection, account_id: str, session_id: str) -> bool:
    return bool(
        await conn.fetchval(
            f"SELECT true FROM {S}.checkout_sessions WHERE account_id = $1 AND id = $2", account_id, session_id
        )
    )


async def settle_payment(
    conn: asyncpg.Connection, payment_id: str, *, status: str, from_statuses: list[str], at: datetime
) -> asyncpg.Record | None:
    """Move a payment to its final outcome — only from ``from_statuses`` (a succeeded,
    refunded or partially refunded payment is never moved back)."""
    return await conn.fetchrow(
        f"""UPDATE {S}.payments SET status = $2, updated_at = $4
            WHERE id = $1 AND status = ANY($3::text[]) RETURNING *""",
        payment_id,
        status,
        from_statuses,
        at,
    )


async def sync_processor_details(
    conn: asyncpg.Connection, payment_id: str, *, charge_id: str | None, fee: int | None, net: int | None
) -> None:
    """The charge id, fee and net the processor reported (PRODUCT §7), when they changed."""
    await conn.execute(
        f"""UPDATE {S}.payments
            SET processor_charge_id = coalesce($2, processor_charge_id),
                fee = coalesce($3, fee), net = coalesce($4, net), updated_at = now()
            WHERE id = $1 AND (processor_charge_id IS DISTINCT FROM coalesce($2, processor_charge_id)
                               OR fee IS DISTINCT FROM coalesce($3, fee) OR net IS DISTINCT FROM coalesce($4, net))""",
        payment_id,
        charge_id,
        fee,
        net,
    )
