"""Draining an endpoint: its pending deliveries, oldest first, one at a time.

One drain per endpoint at a time, whatever the number of workers: a drain first takes
the endpoint's lease (a token and an expiry in its row, `repository.claim`), sends with
no transaction open, and records each outcome only while it still holds the lease. The
head is sent; on a 2xx the next follows at once; on a failure the head is given its next
attempt time (`policy.retry_delay`), the deliveries behind it stay held, and the drain
ends. Whoever finds the endpoint due later — the sweep, or the next event's kick —
drains it again, so a recovered endpoint receives the held deliveries in their order.

Crashes: a drain killed after a send and before its record leaves the lease to expire;
the delivery is sent again (receivers de-duplicate by ``Commerce-Event-Id``). A drain
frozen past its lease and resumed finds its token gone and stops after the one request
it had in flight.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter

from shared import webhook_signing as signing
from shared.config import CommonSettings
from shared.db import tenant_tx
from shared.logging import get_logger
from shared.secrets import SecretKeyMissing, decrypt

from ..events_feed.schemas import event_body
from . import repository as repo
from . import ssrf
from .policy import RETRY_SCHEDULE_S, retry_delay
from .sender import Sender

log = get_logger(__name__)

Kick = Callable[[str, str], Awaitable[None]]
ATTEMPTS = Counter(
    "commerce_webhook_attempts_total",
    "Webhook delivery attempts by outcome (delivered: 2xx; refused: the address is not allowed).",
    ["outcome"],
)


@dataclass(frozen=True)
class DrainDeps:
    app_pool: asyncpg.Pool
    sender: Sender
    common: CommonSettings
    #: Enqueue another drain of (account, endpoint): more is pending after this one.
    kick: Kick
    lease_s: int = 60
    #: A drain stops sending after this long and hands over to a new one (job time limit).
    budget_s: float = 25.0
    batch: int = 50
    schedule: Sequence[int] = RETRY_SCHEDULE_S
    #: Test-mode accounts may target loopback addresses (NOTIFICATIONS_WEBHOOK_TEST_MODE_LOOPBACK).
    test_loopback: bool = True


@dataclass
class DrainResult:
    claimed: bool = False
    delivered: int = 0
    failed: int = 0
    #: The lease was lost mid-drain (another drain took over).
    lost: bool = False
    #: More was pending when it ended, and another drain was kicked.
    more: bool = False


def headers_for(row, secrets: list[str], body: bytes, delivery_id: str) -> dict[str, str]:
    return {
        signing.SIGNATURE_HEADER: signing.sign(secrets, body),
        signing.EVENT_ID_HEADER: row["event_id"],
        signing.EVENT_TYPE_HEADER: row["type"],
        signing.DELIVERY_ID_HEADER: delivery_id,
        signing.ATTEMPT_HEADER: str(row["attempts"] + 1),
    }


async def drain(deps: DrainDeps, account_id: str, endpoint_id: str) -> DrainResult:
    token = uuid.uuid4().hex
    async with tenant_tx(deps.app_pool, account_id) as conn:
        target = await repo.claim(conn, account_id, endpoint_id, token, deps.lease_s)
    result = DrainResult(claimed=target is not None)
    if target is None:
        return result  # disabled, not due, or another drain holds it
    try:
        # the current secret first; while a rotation overlaps, the previous one signs too
        secrets = [decrypt(deps.common, target["secret_encrypted"])]
        if target["previous_secret_encrypted"]:
            try:
                secrets.append(decrypt(deps.common, target["previous_secret_encrypted"]))
            except SecretKeyMissing:  # encrypted under an older COMMERCE_SECRET_KEY: sign without it
                log.warning("the previous webhook secret cannot be decrypted", endpoint_id=endpoint_id)
        deadline = time.monotonic() + deps.budget_s
        while time.monotonic() < deadline:
            async with tenant_tx(deps.app_pool, account_id) as conn:
                batch = await repo.head(conn, account_id, endpoint_id, deps.batch)
            if not batch:
                break
            for row in batch:
                if time.monotonic() >= deadline:
                    break
                outcome = await _attempt(deps, account_id, endpoint_id, token, target, secrets, row)
                if outcome is None:
                    result.lost = True
                    log.warning("webhook drain lost its lease", endpoint_id=endpoint_id)
                    return result
                if not outcome:
                    result.failed += 1
                    return result  # the head waits for its retry; the rest are held behind it
                result.delivered += 1
        async with tenant_tx(deps.app_pool, account_id) as conn:
            result.more = await repo.finish(conn, account_id, endpoint_id, token)
    except BaseException:
        await asyncio.shield(_release(deps, account_id, endpoint_id, token))
        raise
    if result.more:
        await deps.kick(account_id, endpoint_id)
    return result


async def _attempt(
    deps: DrainDeps, account_id: str, endpoint_id: str, token: str, target, secrets: list[str], row
) -> bool | None:
    """Send one delivery and record the outcome: True delivered, False failed, None when
    the lease was lost (nothing recorded)."""
    body = event_body(row)
    attempted_at = datetime.now(UTC)
    policy = ssrf.Policy.for_account(target["test_mode"], test_loopback=deps.test_loopback)
    outcome = await deps.sender.send(target["url"], body, headers_for(row, secrets, body, row["id"]), policy)
    refused = (outcome.error or "").startswith("refused")
    ATTEMPTS.labels("delivered" if outcome.delivered else "refused" if refused else "failed").inc()
    async with tenant_tx(deps.app_pool, account_id) as conn:
        if outcome.delivered:
            kept = await repo.record_delivered(
                conn,
                account_id,
                endpoint_id,
                row["id"],
                token,
                lease_s=deps.lease_s,
                attempted_at=attempted_at,
                status=outcome.status,
                body=outcome.body,
            )
        else:
            delay = retry_delay(row["attempts"] + 1, deps.schedule)
            kept = await repo.record_failed(
                conn,
                account_id,
                endpoint_id,
                row["id"],
                token,
                retry_in_s=delay,
                attempted_at=attempted_at,
                status=outcome.status,
                body=outcome.body,
                error=outcome.error or "failed",
            )
            log.info(
                "webhook delivery failed",
                endpoint_id=endpoint_id,
                delivery_id=row["id"],
                attempt=row["attempts"] + 1,
                retry_in_s=delay,
                error=outcome.error,
            )
    if not kept:
        return None
    return outcome.delivered


async def _release(deps: DrainDeps, account_id: str, endpoint_id: str, token: str) -> None:
    try:
        async with tenant_tx(deps.app_pool, account_id) as conn:
            await repo.release(conn, account_id, endpoint_id, token)
    except Exception as exc:  # the lease expires by itself
        log.warning("releasing a webhook drain failed", endpoint_id=endpoint_id, error=repr(exc))
