"""All SQL of payments, their refunds and their CRM associations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

S = "checkout"


async def insert_payment(conn: asyncpg.Connection, **values: Any) -> asyncpg.Record:
    columns = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchrow(f"INSERT INTO {S}.payments ({columns}) VALUES ({params}) RETURNING *", *values.values())


async def get_payment(
    conn: asyncpg.Connection, account_id: str, payment_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.payments WHERE account_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        account_id,
        payment_id,
    )


async def list_payments(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    status: str | None,
    contact_id: str | None,
    payment_link_id: str | None,
    subscription_id: str | None = None,
    created_gte: datetime | None = None,
    created_gt: datetime | None = None,
    created_lte: datetime | None = None,
    created_lt: datetime | None = None,
    limit: int,
    starting_after: str | None,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.payments
            WHERE account_id = $1
              AND ($2::text IS NULL OR status = $2)
              AND ($3::text IS NULL OR contact_id = $3)
              AND ($4::text IS NULL OR (source_type = 'payment_link' AND source_id = $4))
              AND ($5::text IS NULL OR id < $5)
              AND ($7::timestamptz IS NULL OR created_at >= $7)
              AND ($8::timestamptz IS NULL OR created_at > $8)
              AND ($9::timestamptz IS NULL OR created_at <= $9)
              AND ($10::timestamptz IS NULL OR created_at < $10)
              AND ($11::text IS NULL OR (source_type = 'subscription' AND source_id = $11))
            ORDER BY id DESC LIMIT $6""",
        account_id,
        status,
        contact_id,
        payment_link_id,
        starting_after,
        limit,
        created_gte,
        created_gt,
        created_lte,
        created_lt,
        subscription_id,
    )


async def record_subscription_payment(conn: asyncpg.Connection, **values: Any) -> asyncpg.Record | None:
    """Record one of billing's subscription payments (or failed attempts) once, by its id.

    Events repeat and arrive in any order, so the first record stays — except that a
    ``failed`` record becomes ``succeeded`` when the success is heard (the rule processor
    webhooks follow too: never moved back). A failure heard after the success changes
    nothing. Returns the row when it was inserted or moved, else None.

    ``processor_payment_intent_id`` is unique: were a retry made on a failed attempt's
    intent, the success takes the intent (refunds need it) and the failure keeps none.
    """
    account_id, payment_id, intent = values["account_id"], values["id"], values.get("processor_payment_intent_id")
    if intent and values["status"] == "succeeded":
        await conn.execute(
            f"""UPDATE {S}.payments SET processor_payment_intent_id = NULL, updated_at = now()
                WHERE account_id = $1 AND processor_payment_intent_id = $2 AND id <> $3 AND status = 'failed'""",
            account_id,
            intent,
            payment_id,
        )
    elif intent and await conn.fetchval(
        f"SELECT true FROM {S}.payments WHERE account_id = $1 AND processor_payment_intent_id = $2 AND id <> $3",
        account_id,
        intent,
        payment_id,
    ):
        values = {**values, "processor_payment_intent_id": None}
    columns = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchrow(
        f"""INSERT INTO {S}.payments AS p ({columns}) VALUES ({params})
            ON CONFLICT (id) DO UPDATE SET
                status = EXCLUDED.status,
                processor_payment_intent_id = coalesce(EXCLUDED.processor_payment_intent_id,
                                                       p.processor_payment_intent_id),
                processor_customer_id = coalesce(EXCLUDED.processor_customer_id, p.processor_customer_id),
                updated_at = EXCLUDED.updated_at
            WHERE p.status = 'failed' AND EXCLUDED.status = 'succeeded'
            RETURNING *""",
        *values.values(),
    )


# -- CRM associations ------------------------------------------------------------------------
async def set_contact(
    conn: asyncpg.Connection, account_id: str, payment_id: str, contact_id: str, company_id: str | None
) -> None:
    """Record the CRM's (automatic) contact and company of a payment.

    The first automatic association sticks (coalesce), and a manual one always wins: a
    payment whose contact was set by hand keeps it and its company; a company set by hand
    is kept too."""
    await conn.execute(
        f"""UPDATE {S}.payments
            SET contact_id = coalesce(contact_id, $3),
                contact_source = coalesce(contact_source, 'automatic'),
                company_id = CASE WHEN company_source = 'manual' THEN company_id ELSE coalesce(company_id, $4) END,
                company_source = CASE WHEN company_source = 'manual' THEN 'manual'
                                      WHEN coalesce(company_id, $4) IS NOT NULL THEN 'automatic' END,
                updated_at = now()
            WHERE account_id = $1 AND id = $2 AND contact_source IS DISTINCT FROM 'manual'""",
        account_id,
        payment_id,
        contact_id,
        company_id,
    )


async def set_manual_record(
    conn: asyncpg.Connection, account_id: str, payment_id: str, kind: str, record_id: str, now: datetime
) -> asyncpg.Record:
    """A merchant's association: the contact or company is replaced (and marked manual), a
    deal is added to the payment's deals (and to its manual ones)."""
    if kind == "deal":
        return await conn.fetchrow(
            f"""UPDATE {S}.payments
                SET deal_ids = CASE WHEN $3 = ANY(deal_ids) THEN deal_ids ELSE array_append(deal_ids, $3) END,
                    manual_deal_ids = CASE WHEN $3 = ANY(manual_deal_ids) THEN manual_deal_ids
                                           ELSE array_append(manual_deal_ids, $3) END,
                    updated_at = $4
                WHERE account_id = $1 AND id = $2 RETURNING *""",
            account_id,
            payment_id,
            record_id,
            now,
        )
    column = {"contact": "contact", "company": "company"}[kind]
    return await conn.fetchrow(
        f"""UPDATE {S}.payments SET {column}_id = $3, {column}_source = 'manual', updated_at = $4
            WHERE account_id = $1 AND id = $2 RETURNING *""",
        account_id,
        payment_id,
        record_id,
        now,
    )


# -- refunds ---------------------------------------------------------------------------------
async def insert_refund(conn: asyncpg.Connection, **values: Any) -> asyncpg.Record:
    """Insert a refund row; the trigger reserves its amount on the payment (the database
    refuses it when more than what remains)."""
    columns = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchrow(f"INSERT INTO {S}.refunds ({columns}) VALUES ({params}) RETURNING *", *values.values())


async def get_refund(
    conn: asyncpg.Connection, account_id: str, refund_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.refunds WHERE account_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        account_id,
        refund_id,
    )


async def get_refund_by_request_key(conn: asyncpg.Connection, account_id: str, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.refunds WHERE account_id = $1 AND request_key = $2", account_id, key)


async def get_refund_by_processor_id(
    conn: asyncpg.Connection, account_id: str, processor_refund_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.refunds WHERE account_id = $1 AND processor_refund_id = $2",
        account_id,
        processor_refund_id,
    )


async def settle_refund(
    conn: asyncpg.Connection,
    refund_id: str,
    *,
    status: str,
    processor_refund_id: str | None,
    failure_reason: str | None,
    now: datetime,
) -> asyncpg.Record:
    """Record the processor's answer; leaving ``pending`` moves the payment's counters and
    status (trigger). A refund still pending at the processor keeps its reservation."""
    return await conn.fetchrow(
        f"""UPDATE {S}.refunds
            SET status = $2::text, processor_refund_id = coalesce($3::text, processor_refund_id),
                failure_reason = $4::text, updated_at = $5::timestamptz,
                settled_at = CASE WHEN $2::text = 'pending' THEN NULL ELSE $5::timestamptz END
            WHERE id = $1 RETURNING *""",
        refund_id,
        status,
        processor_refund_id,
        failure_reason,
        now,
    )


async def touch_payment(conn: asyncpg.Connection, account_id: str, payment_id: str, now: datetime) -> asyncpg.Record:
    return await conn.fetchrow(
        f"UPDATE {S}.payments SET updated_at = $3 WHERE account_id = $1 AND id = $2 RETURNING *",
        account_id,
        payment_id,
        now,
    )


async def list_refunds(
    conn: asyncpg.Connection, account_id: str, payment_id: str, *, limit: int, starting_after: str | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.refunds
            WHERE account_id = $1 AND payment_id = $2 AND ($3::text IS NULL OR id < $3)
            ORDER BY id DESC LIMIT $4""",
        account_id,
        payment_id,
        starting_after,
        limit,
    )


async def refunds_of(conn: asyncpg.Connection, account_id: str, payment_ids: list[str]) -> list[asyncpg.Record]:
    """The refunds of several payments (newest first), for the payments' summaries."""
    if not payment_ids:
        return []
    return await conn.fetch(
        f"""SELECT * FROM {S}.refunds WHERE account_id = $1 AND payment_id = ANY($2::text[])
            ORDER BY id DESC""",
        account_id,
        payment_ids,
    )


async def stale_pending_refunds(
    conn: asyncpg.Connection, account_id: str, payment_id: str, older_than: datetime
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.refunds
            WHERE account_id = $1 AND payment_id = $2 AND status = 'pending' AND updated_at < $3
            ORDER BY id""",
        account_id,
        payment_id,
        older_than,
    )
