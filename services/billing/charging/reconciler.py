"""Resolving attempts whose outcome is unknown or not yet final (TARGETS R3).

An attempt is written before its processor call; if the answer never came back (a crash,
a timeout, a lost response) it stays ``pending``; a bank debit's stays ``processing``
until it settles. The charge job itself replays a pending attempt with its stored
idempotency key while its retries last; whatever is left after
``RECONCILE_AFTER_S`` is resolved here by **asking the processor**:

- ``processing``: retrieve the intent; record it once it succeeded or failed;
- ``pending``: search for the intent carrying the attempt's id. Found: record what it
  says. Not found: the request never reached the processor, so the call is made now —
  with the same idempotency key, so that even a request still in flight cannot make a
  second charge.
"""

from __future__ import annotations

import asyncpg

from shared.accounts import load_account
from shared.db import tenant_tx
from shared.logging import get_logger
from shared.processor.base import ProcessorError

from . import repository as repo
from .service import SCHEMA, ChargeDeps, call_processor, record_outcome

log = get_logger(__name__)
RECONCILE_AFTER_S = 60.0
#: A processing bank debit is only read (retrieve), never retried: it can be asked often.
PROCESSING_POLL_S = 5.0


async def reconcile_once(
    owner_pool: asyncpg.Pool,
    deps: ChargeDeps,
    *,
    older_than_s: float,
    processing_after_s: float = PROCESSING_POLL_S,
    limit: int = 200,
) -> int:
    async with owner_pool.acquire() as conn:
        stale = await repo.stale_attempts(
            conn, pending_after_s=older_than_s, processing_after_s=processing_after_s, limit=limit
        )
    resolved = 0
    for attempt in stale:
        try:
            resolved += await reconcile_attempt(deps, attempt)
        except ProcessorError as exc:  # the processor is unavailable: next pass
            log.warning("reconcile failed", attempt_id=attempt["id"], error=str(exc))
    return resolved


async def reconcile_attempt(deps: ChargeDeps, attempt: asyncpg.Record) -> int:
    account_id = attempt["account_id"]
    async with tenant_tx(deps.pool, account_id) as conn:
        account = await load_account(conn, SCHEMA, account_id)
    processor = deps.processors.for_account(account)
    if attempt["status"] == "processing" and attempt["processor_payment_intent_id"]:
        outcome = await processor.retrieve_payment_intent(attempt["processor_payment_intent_id"])
        if outcome.status == "processing":
            return 0
    else:
        found = await processor.find_payment_intent("commerce_attempt_id", attempt["id"])
        how = "found" if found is not None else "replayed"
        outcome = found if found is not None else await call_processor(processor, attempt)
        log.info("reconciled attempt", attempt_id=attempt["id"], how=how, status=outcome.status)
    async with tenant_tx(deps.pool, account_id) as conn:
        account = await load_account(conn, SCHEMA, account_id) or account
        recorded = await record_outcome(conn, deps.settings, account, attempt["id"], outcome)
    return int(recorded is not None)
