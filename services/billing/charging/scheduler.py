"""Finding what is due and putting one job per charge on the queue — set-based.

Every statement here works on a whole batch (``INSERT … SELECT``, ``UPDATE … FROM``)
and the enqueue is one pipelined Redis round trip (`shared.broker.enqueue_many`): no
row-by-row loops. Any number of schedulers may run at once:

- a charge is unique per (subscription, payment index), so ``ON CONFLICT DO NOTHING``
  makes a second scheduler — or a second run after downtime — create nothing;
- re-enqueueing claims rows with ``FOR UPDATE SKIP LOCKED``;
- the charge row is its own outbox: ``enqueued_at`` is set in the transaction that
  creates (or re-claims) it and the job is enqueued after commit; a crash in between
  leaves a row whose ``enqueued_at`` is older than the lease, which the next pass
  enqueues again. The job is idempotent (it locks the row and checks its status), so an
  extra copy is harmless.

"Due" is measured on each account's own clock (``now() + clock_offset_us``, the test
clock) in its own time zone: a payment date is due from the start of that local day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.broker import OutgoingMessage, enqueue_many

S = "billing"
CHARGE_ACTOR = "billing.charge"
NOTIFY_CHANNEL = "billing_scheduler"

#: The account's clock and local date, for an accounts row ``a``.
ACCOUNT_NOW = "(now() + a.clock_offset_us * interval '1 microsecond')"
ACCOUNT_TZ = "COALESCE(a.settings->>'time_zone', 'UTC')"
ACCOUNT_TODAY = f"({ACCOUNT_NOW} AT TIME ZONE {ACCOUNT_TZ})::date"

# New charges for every chargeable subscription whose next payment date has come.
# ``$1``: only this account (NULL = all); ``$2``: batch size; ``$3``: mark enqueued now
# (the periodic pass enqueues right after commit) or leave for the sweep (test clock).
_CREATE_DUE = f"""
WITH due AS (
    SELECT s.id, s.account_id, s.next_index, s.next_payment_date, s.amount, s.currency,
           {ACCOUNT_TZ} AS tz, {ACCOUNT_NOW} AS account_now
    FROM {S}.subscriptions s JOIN {S}.accounts a ON a.id = s.account_id
    WHERE s.status IN ('scheduled', 'active')
      AND s.collection_method = 'charge_automatically'
      AND s.payment_method_id IS NOT NULL  -- none saved yet: nothing to charge (decision 33)
      AND s.next_payment_date IS NOT NULL
      AND s.amount > 0
      AND NOT s.cancel_at_period_end
      AND s.next_payment_date <= {ACCOUNT_TODAY}
      AND ($1::text IS NULL OR s.account_id = $1)
      -- a pass walks the due subscriptions once (keyset cursor $4, $5) ...
      AND ($4::date IS NULL OR (s.next_payment_date, s.id) > ($4::date, $5::text))
      -- ... skipping those whose date already has its charge (in flight, or retrying)
      AND NOT EXISTS (SELECT 1 FROM {S}.charges c WHERE c.subscription_id = s.id AND c.period_index = s.next_index)
    ORDER BY s.next_payment_date, s.id
    LIMIT $2
)
INSERT INTO {S}.charges (id, account_id, subscription_id, period_index, due_date, amount, currency,
                         status, run_at, enqueued_at, created_at, updated_at)
SELECT 'ch_' || replace(gen_random_uuid()::text, '-', ''), due.account_id, due.id, due.next_index,
       due.next_payment_date, due.amount, due.currency, 'scheduled',
       due.next_payment_date::timestamp AT TIME ZONE due.tz,
       CASE WHEN $3 THEN now() END, due.account_now, due.account_now
FROM due
ON CONFLICT (subscription_id, period_index) DO NOTHING
RETURNING id, account_id, due_date, subscription_id
"""

# Charges whose job should be (re)queued: never enqueued, or enqueued longer ago than the
# lease without reaching a final state (message lost: Redis wiped, crash before enqueue,
# retries exhausted while the outcome was unknown).
_CLAIM_RUNNABLE = f"""
UPDATE {S}.charges c SET enqueued_at = now()
FROM (
    SELECT c2.id FROM {S}.charges c2 JOIN {S}.accounts a ON a.id = c2.account_id
    WHERE c2.status IN ('scheduled', 'processing', 'retrying')
      -- the lease counts from the pass's start: what this pass queued is never re-queued by it
      AND (c2.enqueued_at IS NULL OR c2.enqueued_at < COALESCE($4, now()) - $2 * interval '1 second')
      AND c2.run_at <= {ACCOUNT_NOW}
      AND ($1::text IS NULL OR c2.account_id = $1)
    ORDER BY c2.run_at
    LIMIT $3
    FOR UPDATE OF c2 SKIP LOCKED
) d
WHERE c.id = d.id
RETURNING c.id, c.account_id
"""


@dataclass(frozen=True, slots=True)
class PassResult:
    created: int
    enqueued: int


def charge_messages(rows: list[asyncpg.Record]) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(actor_name=CHARGE_ACTOR, queue_name="billing", args=(r["account_id"], r["id"])) for r in rows
    ]


async def create_due_charges(
    conn: asyncpg.Connection,
    *,
    account_id: str | None = None,
    limit: int = 50_000,
    mark_enqueued: bool,
    after: tuple | None = None,
) -> list[asyncpg.Record]:
    """Charges for up to ``limit`` due subscriptions after the cursor ``after`` (the
    (date, subscription id) of the previous batch's last row)."""
    after_date, after_id = after or (None, None)
    return await conn.fetch(_CREATE_DUE, account_id, limit, mark_enqueued, after_date, after_id)


def cursor_of(rows: list[asyncpg.Record]) -> tuple | None:
    return max(((r["due_date"], r["subscription_id"]) for r in rows), default=None)


async def claim_runnable(
    conn: asyncpg.Connection,
    *,
    account_id: str | None = None,
    lease_s: float,
    limit: int = 50_000,
    pass_started: datetime | None = None,
) -> list[asyncpg.Record]:
    return await conn.fetch(_CLAIM_RUNNABLE, account_id, lease_s, limit, pass_started)


async def schedule_for_account(conn: asyncpg.Connection, account_id: str) -> int:
    """Inside a tenant transaction (the test clock moved): create what became due for
    this account, for the scheduler process to enqueue once it is committed (NOTIFY)."""
    rows = await create_due_charges(conn, account_id=account_id, mark_enqueued=False)
    await conn.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', $1)", account_id)
    return len(rows)


async def run_pass(pool: asyncpg.Pool, redis, namespace: str, *, lease_s: float, batch: int = 50_000) -> PassResult:
    """One scheduler pass over every account: new due charges, then anything runnable
    that is not on the queue. Batches until a pass finds less than a batch."""
    created = enqueued = 0
    after = None
    pass_started = await pool.fetchval("SELECT clock_timestamp()")
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await create_due_charges(conn, limit=batch, mark_enqueued=True, after=after)
        enqueued += await enqueue_many(redis, namespace, charge_messages(rows))
        created += len(rows)
        if len(rows) < batch:
            break
        after = cursor_of(rows)
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await claim_runnable(conn, lease_s=lease_s, limit=batch, pass_started=pass_started)
        enqueued += await enqueue_many(redis, namespace, charge_messages(rows))
        if len(rows) < batch:
            break
    return PassResult(created, enqueued)
