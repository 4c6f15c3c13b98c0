"""All SQL of checkout sessions and processor operations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

S = "checkout"


async def resolve_token(pool: asyncpg.Pool, token_hash: bytes) -> asyncpg.Record | None:
    return await pool.fetchrow(f"SELECT account_id, session_id FROM {S}.resolve_session_token($1)", token_hash)


async def insert_session(conn: asyncpg.Connection, **values: Any) -> asyncpg.Record:
    columns = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchrow(
        f"INSERT INTO {S}.checkout_sessions ({columns}) VALUES ({params}) RETURNING *", *values.values()
    )


async def get_session(
    conn: asyncpg.Connection, account_id: str, session_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.checkout_sessions WHERE account_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        account_id,
        session_id,
    )


async def save_submission(
    conn: asyncpg.Connection,
    session_id: str,
    *,
    selection: list,
    contact: dict,
    billing_address: dict | None,
    shipping_address: dict | None,
    summary: dict,
    discount_code: dict | None = None,
    checkout_day=None,
) -> None:
    await conn.execute(
        f"""UPDATE {S}.checkout_sessions
            SET selection = $2, contact = $3, billing_address = $4, shipping_address = $5, summary = $6,
                discount_code = $7, checkout_day = $8
            WHERE id = $1""",
        session_id,
        selection,
        contact,
        billing_address,
        shipping_address,
        summary,
        discount_code,
        checkout_day,
    )


async def save_setup(
    conn: asyncpg.Connection, session_id: str, *, customer_id: str, setup_intent_id: str, client_secret: str
) -> None:
    await conn.execute(
        f"""UPDATE {S}.checkout_sessions
            SET processor_customer_id = $2, setup_intent_id = $3, setup_client_secret = $4
            WHERE id = $1""",
        session_id,
        customer_id,
        setup_intent_id,
        client_secret,
    )


async def next_setup_attempt(conn: asyncpg.Connection, session_id: str) -> int:
    return await conn.fetchval(
        f"UPDATE {S}.checkout_sessions SET setup_attempt = setup_attempt + 1 WHERE id = $1 RETURNING setup_attempt",
        session_id,
    )


async def after_decline(conn: asyncpg.Connection, session_id: str, attempt: int) -> None:
    """The card was declined: the next try needs a new card (new SetupIntent, new attempt)."""
    await conn.execute(
        f"""UPDATE {S}.checkout_sessions
            SET charge_attempt = charge_attempt + 1, setup_intent_id = NULL, setup_client_secret = NULL
            WHERE id = $1 AND charge_attempt = $2""",
        session_id,
        attempt,
    )


async def mark_complete(conn: asyncpg.Connection, session_id: str, payment_id: str, at: datetime) -> None:
    await conn.execute(
        f"""UPDATE {S}.checkout_sessions SET status = 'complete', payment_id = $2, completed_at = $3
            WHERE id = $1""",
        session_id,
        payment_id,
        at,
    )


# -- processor operations: written before the call they describe -------------------------
async def claim_operation(
    conn: asyncpg.Connection,
    *,
    op_id: str,
    account_id: str,
    kind: str,
    subject_id: str,
    idempotency_key: str,
    request: dict,
) -> asyncpg.Record:
    await conn.execute(
        f"""INSERT INTO {S}.processor_operations (id, account_id, kind, subject_id, idempotency_key, request)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING""",
        op_id,
        account_id,
        kind,
        subject_id,
        idempotency_key,
        request,
    )
    return await conn.fetchrow(f"SELECT * FROM {S}.processor_operations WHERE id = $1", op_id)


async def record_operation(conn: asyncpg.Connection, op_id: str, status: str, result: dict) -> None:
    await conn.execute(
        f"UPDATE {S}.processor_operations SET status = $2, result = $3, updated_at = now() WHERE id = $1",
        op_id,
        status,
        result,
    )


async def another_charge_in_flight(
    conn: asyncpg.Connection, account_id: str, link_id: str, session_id: str, now: datetime
) -> bool:
    """Another open, unexpired session of the link has a charge the processor may still
    accept (not declined, not failed)."""
    return bool(
        await conn.fetchval(
            f"""SELECT EXISTS (
                    SELECT 1 FROM {S}.checkout_sessions s
                    JOIN {S}.processor_operations o
                      ON o.account_id = s.account_id AND o.subject_id = s.id AND o.kind = 'charge'
                    WHERE s.account_id = $1 AND s.source_type = 'payment_link' AND s.source_id = $2
                      AND s.id <> $3 AND s.status = 'open' AND s.expires_at > $4
                      AND o.status IN ('pending', 'requires_action', 'unknown'))""",
            account_id,
            link_id,
            session_id,
            now,
        )
    )


async def operation_exists(conn: asyncpg.Connection, op_id: str) -> bool:
    return bool(await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {S}.processor_operations WHERE id = $1)", op_id))
