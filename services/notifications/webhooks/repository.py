"""All SQL of webhook endpoints and their deliveries.

The state that orders and paces sending lives in ``webhook_endpoints``:
``next_attempt_at`` (when the head may go; NULL = nothing pending) and the drain lease
(``drain_token``, ``drain_until``). Every write a drain makes checks that it still holds
the lease (a fencing token): a drain that lost it (frozen past its lease) changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.db import assignments
from shared.ids import new_id

S = "notifications"

_ENDPOINT = f"""e.id, e.url, e.events, e.description, e.status, e.consecutive_failures, e.failing_since,
    e.next_attempt_at, e.created_at, e.updated_at,
    CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_expires_at END AS previous_secret_expires_at,
    (SELECT count(*) FROM {S}.webhook_deliveries d
     WHERE d.endpoint_id = e.id AND d.status = 'pending') AS pending_deliveries"""


# -- endpoints (the admin API) ------------------------------------------------------------------
async def count_endpoints(conn: asyncpg.Connection, account_id: str) -> int:
    return await conn.fetchval(f"SELECT count(*) FROM {S}.webhook_endpoints WHERE account_id = $1", account_id)


async def insert_endpoint(
    conn: asyncpg.Connection,
    *,
    endpoint_id: str,
    account_id: str,
    url: str,
    events: list[str],
    description: str | None,
    secret_encrypted: str,
    created_at: datetime,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO {S}.webhook_endpoints AS e
                (id, account_id, url, events, description, secret_encrypted, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
            RETURNING {_ENDPOINT}""",
        endpoint_id,
        account_id,
        url,
        events,
        description,
        secret_encrypted,
        created_at,
    )


async def get_endpoint(conn: asyncpg.Connection, account_id: str, endpoint_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_ENDPOINT} FROM {S}.webhook_endpoints e WHERE e.account_id = $1 AND e.id = $2",
        account_id,
        endpoint_id,
    )


async def list_endpoints(
    conn: asyncpg.Connection, account_id: str, *, limit: int, starting_after: str | None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {_ENDPOINT} FROM {S}.webhook_endpoints e
            WHERE e.account_id = $1 AND ($2::text IS NULL OR e.id < $2)
            ORDER BY e.id DESC LIMIT $3""",
        account_id,
        starting_after,
        limit,
    )


async def update_endpoint(
    conn: asyncpg.Connection, account_id: str, endpoint_id: str, changes: dict[str, Any], at: datetime
) -> asyncpg.Record | None:
    sets, values = assignments({**changes, "updated_at": at}, first=3)
    return await conn.fetchrow(
        f"""UPDATE {S}.webhook_endpoints e SET {sets}
            WHERE e.account_id = $1 AND e.id = $2 RETURNING {_ENDPOINT}""",
        account_id,
        endpoint_id,
        *values,
    )


async def delete_endpoint(conn: asyncpg.Connection, account_id: str, endpoint_id: str) -> bool:
    deleted = await conn.fetchval(
        f"DELETE FROM {S}.webhook_endpoints WHERE account_id = $1 AND id = $2 RETURNING true", account_id, endpoint_id
    )
    return bool(deleted)


async def retry_now(conn: asyncpg.Connection, account_id: str, endpoint_id: str) -> asyncpg.Record | None:
    """The held head is due now (the merchant fixed the receiver); the sweep sends it."""
    await conn.execute(
        f"""UPDATE {S}.webhook_deliveries SET next_attempt_at = now()
            WHERE account_id = $1 AND endpoint_id = $2 AND status = 'pending' AND next_attempt_at IS NOT NULL""",
        account_id,
        endpoint_id,
    )
    return await conn.fetchrow(
        f"""UPDATE {S}.webhook_endpoints e
            SET next_attempt_at = CASE WHEN e.next_attempt_at IS NULL THEN NULL ELSE now() END, updated_at = now()
            WHERE e.account_id = $1 AND e.id = $2 RETURNING {_ENDPOINT}""",
        account_id,
        endpoint_id,
    )


async def rotate_secret(
    conn: asyncpg.Connection, account_id: str, endpoint_id: str, secret_encrypted: str, overlap_s: int
) -> asyncpg.Record | None:
    """A new signing secret; the current one keeps signing too for ``overlap_s``."""
    return await conn.fetchrow(
        f"""UPDATE {S}.webhook_endpoints e
            SET previous_secret_encrypted = e.secret_encrypted,
                previous_secret_expires_at = now() + make_interval(secs => $4),
                secret_encrypted = $3, updated_at = now()
            WHERE e.account_id = $1 AND e.id = $2 RETURNING {_ENDPOINT}""",
        account_id,
        endpoint_id,
        secret_encrypted,
        overlap_s,
    )


async def list_deliveries(
    conn: asyncpg.Connection,
    account_id: str,
    endpoint_id: str,
    *,
    status: str | None,
    event_id: str | None,
    before_seq: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    """The delivery log, newest first."""
    return await conn.fetch(
        f"""SELECT * FROM {S}.webhook_deliveries
            WHERE account_id = $1 AND endpoint_id = $2 AND ($3::text IS NULL OR status = $3)
              AND ($4::text IS NULL OR event_id = $4) AND ($5::bigint IS NULL OR seq < $5)
            ORDER BY seq DESC LIMIT $6""",
        account_id,
        endpoint_id,
        status,
        event_id,
        before_seq,
        limit,
    )


async def delivery_seq(conn: asyncpg.Connection, account_id: str, endpoint_id: str, delivery_id: str) -> int | None:
    return await conn.fetchval(
        f"SELECT seq FROM {S}.webhook_deliveries WHERE account_id = $1 AND endpoint_id = $2 AND id = $3",
        account_id,
        endpoint_id,
        delivery_id,
    )


# -- fan-out (in the transaction that records the event in the feed) ---------------------------
async def fan_out(conn: asyncpg.Connection, account_id: str, event_id: str, event_type: str, seq: int) -> list[str]:
    """A pending delivery for every enabled endpoint subscribed to the type (or ``*``);
    an endpoint with nothing pending becomes due now, one in backoff keeps its time (the
    new delivery waits behind its head). Returns the endpoints that got one."""
    targets = await conn.fetch(
        f"""SELECT id FROM {S}.webhook_endpoints
            WHERE account_id = $1 AND status = 'enabled' AND events && ARRAY[$2::text, '*']
            ORDER BY id""",
        account_id,
        event_type,
    )
    if not targets:
        return []
    endpoint_ids = [r["id"] for r in targets]
    rows = await conn.fetch(
        f"""WITH added AS (
                INSERT INTO {S}.webhook_deliveries (id, account_id, endpoint_id, event_id, event_type, seq)
                SELECT t.delivery_id, $1, t.endpoint_id, $4, $5, $6
                FROM unnest($2::text[], $3::text[]) AS t(delivery_id, endpoint_id)
                ON CONFLICT (endpoint_id, event_id) DO NOTHING
                RETURNING endpoint_id)
            UPDATE {S}.webhook_endpoints e SET next_attempt_at = coalesce(e.next_attempt_at, now())
            FROM added WHERE e.id = added.endpoint_id
            RETURNING e.id""",
        account_id,
        [new_id("whdel") for _ in endpoint_ids],
        endpoint_ids,
        event_id,
        event_type,
        seq,
    )
    return [r["id"] for r in rows]


async def due_endpoints_of_event(conn: asyncpg.Connection, account_id: str, event_id: str) -> list[str]:
    """Endpoints that have this event pending and could send now (no drain, not in backoff)."""
    rows = await conn.fetch(
        f"""SELECT e.id FROM {S}.webhook_endpoints e
            JOIN {S}.webhook_deliveries d ON d.endpoint_id = e.id
            WHERE d.account_id = $1 AND d.event_id = $2 AND d.status = 'pending' AND e.status = 'enabled'
              AND e.next_attempt_at <= now() AND (e.drain_until IS NULL OR e.drain_until < now())""",
        account_id,
        event_id,
    )
    return [r["id"] for r in rows]


# -- the drain: one sender per endpoint at a time --------------------------------------------
async def claim(
    conn: asyncpg.Connection, account_id: str, endpoint_id: str, token: str, lease_s: int
) -> asyncpg.Record | None:
    """Take the endpoint's lease if it is enabled, due and nobody else drains it."""
    return await conn.fetchrow(
        f"""UPDATE {S}.webhook_endpoints e
            SET drain_token = $3, drain_until = now() + make_interval(secs => $4)
            FROM {S}.accounts a
            WHERE e.account_id = $1 AND e.id = $2 AND a.id = e.account_id AND e.status = 'enabled'
              AND e.next_attempt_at <= now() AND (e.drain_until IS NULL OR e.drain_until < now())
            RETURNING e.url, e.secret_encrypted, a.test_mode,
                CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_encrypted END
                    AS previous_secret_encrypted""",
        account_id,
        endpoint_id,
        token,
        lease_s,
    )


async def head(conn: asyncpg.Connection, account_id: str, endpoint_id: str, limit: int) -> list[asyncpg.Record]:
    """The oldest pending deliveries of the endpoint, in order, with their events."""
    return await conn.fetch(
        f"""SELECT d.id, d.event_id, d.attempts, f.type, f.version, f.occurred_at, f.data
            FROM {S}.webhook_deliveries d
            JOIN {S}.event_feed f ON f.account_id = d.account_id AND f.event_id = d.event_id
            WHERE d.account_id = $1 AND d.endpoint_id = $2 AND d.status = 'pending'
            ORDER BY d.seq LIMIT $3""",
        account_id,
        endpoint_id,
        limit,
    )


async def record_delivered(
    conn: asyncpg.Connection,
    account_id: str,
    endpoint_id: str,
    delivery_id: str,
    token: str,
    *,
    lease_s: int,
    attempted_at: datetime,
    status: int | None,
    body: str | None,
) -> bool:
    """A 2xx: the delivery is done, the endpoint healthy, the lease renewed. False when
    the lease was lost (nothing is written then)."""
    done = await conn.fetchval(
        f"""WITH lease AS (
                UPDATE {S}.webhook_endpoints
                SET drain_until = now() + make_interval(secs => $4), consecutive_failures = 0, failing_since = NULL
                WHERE account_id = $1 AND id = $2 AND drain_token = $3
                RETURNING id)
            UPDATE {S}.webhook_deliveries
            SET status = 'delivered', attempts = attempts + 1, last_attempt_at = $6, delivered_at = now(),
                last_response_status = $7, last_response_body = $8, last_error = NULL, next_attempt_at = NULL
            WHERE account_id = $1 AND id = $5 AND status = 'pending' AND EXISTS (SELECT 1 FROM lease)
            RETURNING true""",
        account_id,
        endpoint_id,
        token,
        lease_s,
        delivery_id,
        attempted_at,
        status,
        body,
    )
    return bool(done)


async def record_failed(
    conn: asyncpg.Connection,
    account_id: str,
    endpoint_id: str,
    delivery_id: str,
    token: str,
    *,
    retry_in_s: int,
    attempted_at: datetime,
    status: int | None,
    body: str | None,
    error: str,
) -> bool:
    """The head failed: it waits ``retry_in_s``, the deliveries behind it wait with it,
    and the lease is given back. False when the lease was lost."""
    done = await conn.fetchval(
        f"""WITH lease AS (
                UPDATE {S}.webhook_endpoints
                SET next_attempt_at = now() + make_interval(secs => $4),
                    consecutive_failures = consecutive_failures + 1,
                    failing_since = coalesce(failing_since, $6), drain_token = NULL, drain_until = NULL
                WHERE account_id = $1 AND id = $2 AND drain_token = $3
                RETURNING next_attempt_at)
            UPDATE {S}.webhook_deliveries
            SET attempts = attempts + 1, last_attempt_at = $6, last_response_status = $7,
                last_response_body = $8, last_error = $9, next_attempt_at = (SELECT next_attempt_at FROM lease)
            WHERE account_id = $1 AND id = $5 AND status = 'pending' AND EXISTS (SELECT 1 FROM lease)
            RETURNING true""",
        account_id,
        endpoint_id,
        token,
        retry_in_s,
        delivery_id,
        attempted_at,
        status,
        body,
        error[:2000],
    )
    return bool(done)


async def finish(conn: asyncpg.Connection, account_id: str, endpoint_id: str, token: str) -> bool:
    """Give the lease back after sending all that was pending (or the time budget).
    Returns True when deliveries are pending (due now) — a new one may have arrived.

    The endpoint row is locked first so that the pending check (a later statement, a
    fresh snapshot) sees every fan-out that touched the endpoint before us; one after us
    finds ``next_attempt_at`` NULL and sets it itself."""
    held = await conn.fetchval(
        f"SELECT true FROM {S}.webhook_endpoints WHERE account_id = $1 AND id = $2 AND drain_token = $3 FOR UPDATE",
        account_id,
        endpoint_id,
        token,
    )
    if not held:
        return False
    return await conn.fetchval(
        f"""UPDATE {S}.webhook_endpoints e
            SET drain_token = NULL, drain_until = NULL,
                next_attempt_at = CASE WHEN EXISTS (
                    SELECT 1 FROM {S}.webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending')
                    THEN now() END
            WHERE e.account_id = $1 AND e.id = $2
            RETURNING e.next_attempt_at IS NOT NULL""",
        account_id,
        endpoint_id,
    )


async def release(conn: asyncpg.Connection, account_id: str, endpoint_id: str, token: str) -> None:
    """Give the lease back after an error; the schedule is left as it was."""
    await conn.execute(
        f"""UPDATE {S}.webhook_endpoints SET drain_token = NULL, drain_until = NULL
            WHERE account_id = $1 AND id = $2 AND drain_token = $3""",
        account_id,
        endpoint_id,
        token,
    )


# -- the sweep (owner connection: every account) ------------------------------------------------
async def kick_due(conn: asyncpg.Connection, *, limit: int, rekick_after_s: float) -> list[asyncpg.Record]:
    """Endpoints whose head is due, that no drain holds and that were not kicked since
    they became due (or not for ``rekick_after_s``: that kick's message was lost). Marks
    them kicked; call inside the transaction that enqueues their drains."""
    return await conn.fetch(
        f"""WITH due AS (
                SELECT id FROM {S}.webhook_endpoints
                WHERE status = 'enabled' AND next_attempt_at <= now()
                  AND (drain_until IS NULL OR drain_until < now())
                  AND (kicked_at IS NULL OR kicked_at < next_attempt_at
                       OR kicked_at < now() - make_interval(secs => $2))
                ORDER BY next_attempt_at
                LIMIT $1
                FOR UPDATE SKIP LOCKED)
            UPDATE {S}.webhook_endpoints e SET kicked_at = now()
            FROM due WHERE e.id = due.id
            RETURNING e.account_id, e.id""",
        limit,
        rekick_after_s,
    )
