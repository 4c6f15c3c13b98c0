"""Sending the send ledger's messages, each exactly once (decisions 9, 84).

Two ways a queued message is sent, both by claiming its row first (``sending``, a lease
in ``next_attempt_at``, one more attempt):

- **after the fact's commit** — the event handler's after-commit step (`send_for_fact`)
  claims that fact's due messages and sends them at once; it runs on every delivery of
  the event, so a crash between the commit and the send is repaired by the redelivery;
- **the sweep** — every notifications worker runs `run_sweeper`, which claims due
  messages of any account (``SKIP LOCKED``; any number of workers): retries whose
  backoff is over, and messages whose sender died mid-send (lease expired).

The outcome is written to the row: ``sent``; ``bounced`` / ``failed`` for a permanent
refusal (never retried); or — SMTP down, 4xx, a timeout — ``queued`` again with the next
attempt after an exponential backoff (business retries live in rows, not in the queue:
the event is acknowledged, and the sweep takes it from there), until it has been failing
for ``give_up_after_s`` (``failed``). Queue retries are for what is transient in *our*
dependencies (the database).

A message whose sender died after the server accepted it, before the row said so, is
sent again after the lease with the same Message-ID (receivers can de-duplicate by it).
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime

import asyncpg
from prometheus_client import Counter

from shared.accounts import Account, load_account
from shared.db import UNAVAILABLE_ERRORS, tenant_tx
from shared.inbox import HandlerContext
from shared.logging import get_logger

from . import repository as repo
from .mailer import PermanentDeliveryError, SmtpMailer
from .render import build_message

log = get_logger(__name__)
SCHEMA = "notifications"
#: How long recording "sent" is retried through a database outage (within the job's time limit).
MARK_SENT_PATIENCE_S = 30.0
SEND_ATTEMPTS = Counter(
    "commerce_email_send_attempts_total",
    "SMTP send attempts by kind and outcome (sent, retry, bounced, failed).",
    ["kind", "outcome"],
)


def retry_delay(attempts: int, base_s: float, max_s: float, jitter: float = 0.2) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: base × 2^(n−1),
    at most ``max_s``, minus up to ``jitter`` of it (so messages that failed together do
    not all come back in the same instant)."""
    delay = min(max_s, base_s * 2 ** min(max(attempts - 1, 0), 30))
    return delay * (1 - jitter * random.random())


async def send_for_fact(ctx: HandlerContext, account_id: str, fact_key: str) -> None:
    """After commit: send this fact's messages that are due now."""
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        rows = await repo.claim_fact(conn, account_id, fact_key, ctx.settings.sending_lease_s)
    await send_claimed(ctx, rows)


async def sweep_once(ctx: HandlerContext, stop: asyncio.Event | None = None, *, account_id: str | None = None) -> int:
    """Claim and send up to a batch of due messages of any account (or of one); how
    many were claimed."""
    async with ctx.owner_pool.acquire() as conn:
        rows = await repo.claim_due(conn, ctx.settings.sending_lease_s, ctx.settings.send_sweep_batch, account_id)
    if rows:
        log.info("sweep claimed messages", messages=len(rows))
        await send_claimed(ctx, rows, stop)
    return len(rows)


async def run_sweeper(ctx: HandlerContext, stop: asyncio.Event) -> None:
    """The worker's background sweep, until ``stop`` is set (worker shutdown: the message
    being sent is finished, the rest of the batch given back)."""
    interval = ctx.settings.send_sweep_interval_s
    while not stop.is_set():
        try:
            claimed = await sweep_once(ctx, stop)
        except Exception as exc:  # the database or the network: try again next time
            log.warning("send sweep failed", error=repr(exc))
            claimed = 0
        if claimed < ctx.settings.send_sweep_batch:
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass


async def send_claimed(ctx: HandlerContext, rows: list[asyncpg.Record], stop: asyncio.Event | None = None) -> None:
    """Send claimed rows one by one. Past half the lease (a slow or hanging server), or
    when the worker stops, the rest are given back unsent: a lease must never run out
    on a message still to be sent here, or another sender would send it too."""
    claimed_at = time.monotonic()
    accounts: dict[str, Account] = {}
    for i, row in enumerate(rows):
        if (stop is not None and stop.is_set()) or time.monotonic() - claimed_at > ctx.settings.sending_lease_s / 2:
            await _give_back(ctx, rows[i:])
            return
        account = accounts.get(row["account_id"])
        if account is None:
            account = accounts[row["account_id"]] = await _account(ctx, row["account_id"])
        await _send_one(ctx, account, row)


async def _give_back(ctx: HandlerContext, rows: list[asyncpg.Record]) -> None:
    by_account: dict[str, list[str]] = {}
    for row in rows:
        by_account.setdefault(row["account_id"], []).append(row["id"])
    for account_id, ids in by_account.items():
        async with tenant_tx(ctx.app_pool, account_id) as conn:
            await repo.give_back(conn, ids)
    log.info("claimed messages given back unsent", messages=len(rows))


async def _account(ctx: HandlerContext, account_id: str) -> Account:
    async with tenant_tx(ctx.app_pool, account_id) as conn:
        account = await load_account(conn, SCHEMA, account_id)
    if account is None:  # rows reference the account: it exists
        raise RuntimeError(f"account {account_id} is not known here")
    return account


async def _send_one(ctx: HandlerContext, account: Account, row: asyncpg.Record) -> None:
    settings = ctx.settings
    mailer: SmtpMailer = ctx.extras["mailer"]
    message = build_message(
        sender=settings.from_address,
        sender_name=account.name,
        recipient=row["recipient"],
        subject=row["subject"],
        text=row["text_body"],
        html=row["html_body"],
        message_id=row["message_id"],
        sent_at=account.clock.now(),
    )
    try:
        await mailer.send(message)
    except PermanentDeliveryError as exc:
        log.warning("smtp refused the message for good", email_id=row["id"], status=exc.status, error=str(exc))
        async with tenant_tx(ctx.app_pool, account.id) as conn:
            await repo.mark_final(conn, row["id"], exc.status, str(exc))
        SEND_ATTEMPTS.labels(row["kind"], exc.status).inc()
        return
    except Exception as exc:  # SMTP down, busy or slow: back off and try again
        delay = retry_delay(row["attempts"], settings.retry_base_s, settings.retry_max_s)
        async with tenant_tx(ctx.app_pool, account.id) as conn:
            status = await repo.mark_retry(conn, row["id"], repr(exc), delay, settings.give_up_after_s)
        SEND_ATTEMPTS.labels(row["kind"], "retry" if status == "queued" else "failed").inc()
        log.warning(
            "smtp send failed",
            email_id=row["id"],
            attempts=row["attempts"],
            status=status,
            retry_in_s=round(delay, 1),
            error=repr(exc),
        )
        return
    await _record_sent(ctx, account.id, row["id"], account.clock.now())
    SEND_ATTEMPTS.labels(row["kind"], "sent").inc()


async def _record_sent(ctx: HandlerContext, account_id: str, email_id: str, at: datetime) -> None:
    """The server accepted the message: record it even across a short database outage —
    giving up would leave the row "sending" and send it a second time after its lease."""
    deadline = time.monotonic() + MARK_SENT_PATIENCE_S
    delay = 0.25
    while True:
        try:
            async with tenant_tx(ctx.app_pool, account_id) as conn:
                await repo.mark_sent(conn, email_id, at)
            return
        except UNAVAILABLE_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("recording a sent e-mail failed; retrying", email_id=email_id, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)
