"""Finding what is due and putting one job per charge on the queue — set-based.

Every statement here works on a whole batch (``INSERT … SELECT``, ``UPDATE … FROM``)
and the enqueue is pipelined to Redis (`shared.broker.enqueue_many`): no
row-by-row loops. Any number of schedulers may run at once:

- a batch claims its subscriptions by marking each charged for its date in the statement
  that creates the charge (rows already marked by a concurrent scheduler are skipped), so
  a second scheduler — or a second run after downtime — creates nothing; a charge is
  unique per (subscription, payment index) besides (``ON CONFLICT DO NOTHING``);
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

import asyncio
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

#: Each account with its clock: ``$1`` only this account (NULL = all).
ACCOUNT_CLOCKS = f"""
SELECT a.id, a.settings, {ACCOUNT_TZ} AS tz, {ACCOUNT_NOW} AS account_now, {ACCOUNT_TODAY} AS today
FROM {S}.accounts a WHERE ($1::text IS NULL OR a.id = $1)
"""

#: A row ``d`` of ``due_dates`` in its index due_dates_due (migration 0007) for account
#: ``k``, up to that account's today: a subscription's payment date has come and has no
#: charge yet. Queries that read the index repeat its predicate, so the planner uses it.
DUE_RANGE = """
    d.account_id = k.id
    AND (d.charged_index IS NULL OR d.charged_index < d.next_index)
    AND d.next_payment_date <= k.today
"""

# ... charged automatically (``due_dates.chargeable``, kept with the subscription's
# collection method, saved method, amount and cancel-at-period-end).
_DUE_COLUMNS = (
    "d.subscription_id AS id, d.account_id, d.next_index, d.next_payment_date, d.amount, d.currency, "
    "k.tz, k.account_now"
)

# New charges for up to ``$2`` chargeable due subscriptions, walked in (account, date, id)
# order after the keyset cursor ``($4, $5, $6)`` — the rest of the cursor's account, then
# each following account from the start of its due range — so a batch reads only due rows.
# The UPDATE that marks a date charged (``due_dates.charged_index``, which takes it out of
# the index until the charge moves the subscription on) is the claim: it takes the rows in
# key order (no two schedulers deadlock) and only those still unmarked once a concurrent
# claim has committed, and only claimed rows get a charge — a second scheduler creates
# nothing for them. ``$3``: mark enqueued now (the periodic pass enqueues right after
# commit) or leave for the sweep (test clock). Returns the created charges (kind 'charge')
# and one 'cursor' row: the batch's last subscription and how many the batch read.
_CREATE_DUE = f"""
WITH k AS MATERIALIZED ({ACCOUNT_CLOCKS}),
due AS MATERIALIZED (
    (SELECT {_DUE_COLUMNS}
     FROM k JOIN {S}.due_dates d ON d.account_id = k.id
     WHERE k.id = $4 AND (d.next_payment_date, d.subscription_id) > ($5::date, $6::text)
       AND {DUE_RANGE} AND d.chargeable
     ORDER BY d.next_payment_date, d.subscription_id
     LIMIT $2)
    UNION ALL
    (SELECT x.* FROM (SELECT * FROM k WHERE $4::text IS NULL OR k.id > $4 ORDER BY k.id) k
     CROSS JOIN LATERAL (
         SELECT {_DUE_COLUMNS}
         FROM {S}.due_dates d
         WHERE {DUE_RANGE} AND d.chargeable
         ORDER BY d.next_payment_date, d.subscription_id
         LIMIT $2) x
     ORDER BY k.id, x.next_payment_date, x.id
     LIMIT $2)
),
batch AS MATERIALIZED (SELECT * FROM due ORDER BY account_id, next_payment_date, id LIMIT $2),
claimed AS (
    UPDATE {S}.due_dates d SET charged_index = d.next_index
    WHERE d.subscription_id = ANY (ARRAY(SELECT id FROM batch))
      AND (d.charged_index IS NULL OR d.charged_index < d.next_index)
    RETURNING d.subscription_id, d.next_index
),
created AS (
    INSERT INTO {S}.charges (id, account_id, subscription_id, period_index, due_date, amount, currency,
                             status, run_at, enqueued_at, created_at, updated_at)
    SELECT 'ch_' || replace(gen_random_uuid()::text, '-', ''), b.account_id, b.id, b.next_index,
           b.next_payment_date, b.amount, b.currency, 'scheduled',
           b.next_payment_date::timestamp AT TIME ZONE b.tz,
           CASE WHEN $3 THEN now() END, b.account_now, b.account_now
    -- (a date that moved on since the walk is left for the next pass)
    FROM claimed c JOIN batch b ON b.id = c.subscription_id AND b.next_index = c.next_index
    -- (a charge for the date exists only if charged_index was lost — restored backups)
    ON CONFLICT (subscription_id, period_index) DO NOTHING
    RETURNING id, account_id
)
SELECT 'charge' AS kind, id, account_id, NULL::date AS due_date, NULL::bigint AS read FROM created
UNION ALL
(SELECT 'cursor', id, account_id, next_payment_date, count(*) OVER ()
 FROM batch ORDER BY account_id DESC, next_payment_date DESC, id DESC LIMIT 1)
"""

# Charges whose job should be (re)queued: not on the queue and allowed to run (new from a
# test-clock move, or retrying), or put on the queue longer ago than the lease without
# reaching a final state (message lost: Redis wiped, crash before enqueue, retries
# exhausted while the outcome was unknown). The two ranges have their own indexes
# (migration 0007); ``run_at`` is bounded by the latest account clock so that range
# stops at what may run somewhere, and each row is then held to its own account's clock.
_CLAIM_RUNNABLE = f"""
UPDATE {S}.charges c SET enqueued_at = now()
FROM (
    SELECT c2.id FROM {S}.charges c2 JOIN {S}.accounts a ON a.id = c2.account_id
    WHERE c2.status IN ('scheduled', 'processing', 'retrying')
      AND ((c2.enqueued_at IS NULL
            AND c2.run_at <= (SELECT max(k.account_now) FROM ({ACCOUNT_CLOCKS}) k))
           -- the lease counts from the pass's start: what this pass queued is never re-queued by it
           OR (c2.enqueued_at IS NOT NULL AND c2.enqueued_at < COALESCE($4, now()) - $2 * interval '1 second'))
      AND c2.run_at <= {ACCOUNT_NOW}
      AND ($1::text IS NULL OR c2.account_id = $1)
    ORDER BY c2.run_at
    LIMIT $3
    FOR UPDATE OF c2 SKIP LOCKED
) d
WHERE c.id = d.id
RETURNING c.id, c.account_id
"""


#: A batch sorts and hashes tens of thousands of rows: in memory, and without JIT
#: compilation (its cost estimate is large, its run short); planned with its parameters
#: every time — the generic plan PostgreSQL switches a prepared statement to after five
#: runs on a connection does not know the cursor and reads every account's backlog
#: (P3 at 1,000,000: batch 6 went from 1.3 s to minutes).
BATCH_SETTINGS = "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off; SET LOCAL plan_cache_mode = force_custom_plan"


@dataclass(frozen=True, slots=True)
class PassResult:
    created: int
    enqueued: int


@dataclass(frozen=True, slots=True)
class DueBatch:
    """What one batch created, and where the walk goes on from."""

    created: list[asyncpg.Record]
    #: (account id, payment date, subscription id) of the last subscription read; None: none read
    cursor: tuple | None
    #: subscriptions the batch took (a charge created for each, bar conflicts)
    read: int


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
) -> DueBatch:
    """Charges for up to ``limit`` due subscriptions after the cursor ``after`` (the
    previous batch's `DueBatch.cursor`)."""
    after_account, after_date, after_id = after or (None, None, None)
    rows = await conn.fetch(_CREATE_DUE, account_id, limit, mark_enqueued, after_account, after_date, after_id)
    created = [r for r in rows if r["kind"] == "charge"]
    last = next((r for r in rows if r["kind"] == "cursor"), None)
    if last is None:
        return DueBatch(created, None, 0)
    return DueBatch(created, (last["account_id"], last["due_date"], last["id"]), last["read"])


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
    this account, for the scheduler process to enqueue once it is committed (NOTIFY).
    Batches like a pass; the account's rows are locked by the caller's transaction."""
    created, after = 0, None
    await conn.execute(BATCH_SETTINGS)
    while True:
        batch = await create_due_charges(conn, account_id=account_id, mark_enqueued=False, after=after)
        created += len(batch.created)
        if batch.cursor is None or batch.read < 50_000:
            break
        after = batch.cursor
    await conn.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', $1)", account_id)
    return created


async def run_pass(pool: asyncpg.Pool, redis, namespace: str, *, lease_s: float, batch: int = 50_000) -> PassResult:
    """One scheduler pass over every account: new due charges, then anything runnable
    that is not on the queue. Batches until a batch reads less than a batch."""
    created = enqueued = 0
    after = None
    pass_started = await pool.fetchval("SELECT clock_timestamp()")
    # A batch's jobs are enqueued while the next batch's statement runs (PostgreSQL works
    # while this process serialises and pipelines, `enqueue_many` yielding between its
    # pipelines): one enqueue in flight at a time, in order. A crash or an error with an
    # enqueue unfinished leaves committed charges off the queue: the lease brings them
    # back (the claim step below, or the next pass).
    sending: asyncio.Task[int] | None = None
    try:
        while True:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(BATCH_SETTINGS)
                due = await create_due_charges(conn, limit=batch, mark_enqueued=True, after=after)
            if sending is not None:
                enqueued += await sending
            sending = asyncio.create_task(enqueue_many(redis, namespace, charge_messages(due.created)))
            created += len(due.created)
            if due.cursor is None or due.read < batch:
                break
            after = due.cursor
        enqueued += await sending
        sending = None
    finally:
        if sending is not None:  # the pass failed (the error above is what it reports)
            sending.cancel()
            await asyncio.wait([sending])
            if not sending.cancelled():
                sending.exception()  # retrieved: not logged again as "never retrieved"
    while True:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(BATCH_SETTINGS)
            rows = await claim_runnable(conn, lease_s=lease_s, limit=batch, pass_started=pass_started)
        enqueued += await enqueue_many(redis, namespace, charge_messages(rows))
        if len(rows) < batch:
            break
    return PassResult(created, enqueued)
