"""Accounts, API keys, processor connection and the test clock: the rules.

Every change bumps the account's version and publishes an ``account.updated`` snapshot
through the outbox in the same transaction; the other services keep their projection
from it. Callers that must read their own write in another service (a new key used at
once, a test clock that must have scheduled everything) wait with `wait_propagated`.
"""

from __future__ import annotations

import secrets
import string
from datetime import datetime

import asyncpg
from pydantic import ValidationError

from shared.accounts import Account, AccountSettings
from shared.clock import ClockMovedBackwards, advanced_offset
from shared.config import CommonSettings
from shared.db import tenant_tx
from shared.events.models import AccountSnapshot, AccountUpdatedV1, ApiKeySnapshot, ProcessorSnapshot
from shared.ids import new_id
from shared.outbox import publish_event, wait_delivered
from shared.secrets import encrypt
from shared.web.auth import hash_api_key
from shared.web.problem import Conflict, ValidationProblem, field_error
from shared.web.request import validation_errors

from . import repository as repo

SCHEMA = "checkout"
_ALPHABET = string.ascii_letters + string.digits


def generate_api_key(test_mode: bool) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(40))  # ~238 bits
    return f"ck_{'test' if test_mode else 'live'}_{body}"


def test_processor_settings(common: CommonSettings) -> dict:
    return {
        "type": "test",
        "publishable_key": None,
        "api_base": None,
        "webhook_secret_encrypted": encrypt(common, "whsec_" + secrets.token_urlsafe(32)),
    }


async def publish_snapshot(
    conn: asyncpg.Connection, account: Account, *, clock_advanced_from_us: int | None = None
) -> str:
    keys = await repo.list_api_keys(conn, account.id)
    processor = account.processor
    snapshot = AccountSnapshot(
        id=account.id,
        version=account.version,
        name=account.name,
        test_mode=account.test_mode,
        settings=account.settings.model_dump(mode="json"),
        clock_offset_us=account.clock.offset_us,
        processor=ProcessorSnapshot.model_validate(processor) if processor else None,
        api_keys=[
            ApiKeySnapshot(
                id=k["id"],
                prefix=k["prefix"],
                key_hash=k["key_hash"],
                scopes=list(k["scopes"]),
                revoked_at=k["revoked_at"],
            )
            for k in keys
        ],
    )
    return await publish_event(
        conn,
        schema=SCHEMA,
        producer="checkout",
        account_id=account.id,
        event=AccountUpdatedV1(account=snapshot, clock_advanced_from_us=clock_advanced_from_us),
        occurred_at=account.clock.now(),
    )


async def _add_key(conn: asyncpg.Connection, account: Account, scopes: list[str]) -> tuple[str, asyncpg.Record]:
    key = generate_api_key(account.test_mode)
    row = await repo.insert_api_key(
        conn,
        key_id=new_id("key"),
        account_id=account.id,
        prefix=key[:12],
        key_hash=hash_api_key(key),
        scopes=scopes,
    )
    return key, row


async def create_account(
    pool: asyncpg.Pool,
    common: CommonSettings,
    *,
    name: str,
    currency: str,
    test_mode: bool,
    scopes: list[str] | None = None,
) -> tuple[Account, str, str]:
    """Returns (account, the API key in clear — shown once, the snapshot event id)."""
    try:
        settings = AccountSettings(default_currency=currency, currencies=[currency])
    except ValidationError as exc:
        raise ValidationProblem(validation_errors(exc)) from None
    account_id = new_id("acct")
    async with tenant_tx(pool, account_id) as conn:
        account = await repo.insert_account(
            conn,
            account_id=account_id,
            name=name,
            test_mode=test_mode,
            settings=settings.model_dump(mode="json"),
            processor=test_processor_settings(common) if test_mode else None,
        )
        key, _row = await _add_key(conn, account, scopes or ["*"])
        event_id = await publish_snapshot(conn, account)
    return account, key, event_id


async def create_key(conn: asyncpg.Connection, account_id: str, scopes: list[str]) -> tuple[str, asyncpg.Record, str]:
    account = await repo.lock_account(conn, account_id)
    key, row = await _add_key(conn, account, scopes)
    account = await repo.bump_version(conn, account_id)
    return key, row, await publish_snapshot(conn, account)


async def revoke_key(
    conn: asyncpg.Connection, account_id: str, key_id: str
) -> tuple[asyncpg.Record | None, str | None]:
    account = await repo.lock_account(conn, account_id)
    row = await repo.revoke_api_key(conn, account_id, key_id, account.clock.now())
    if row is None:
        return None, None
    account = await repo.bump_version(conn, account_id)
    return row, await publish_snapshot(conn, account)


async def update_settings(conn: asyncpg.Connection, account_id: str, changes: dict) -> tuple[Account, str]:
    account = await repo.lock_account(conn, account_id)
    name = changes.pop("name", None)
    current = account.settings.model_dump(mode="json")
    # Nested settings objects (link defaults, subscription settings, notifications) are
    # merged one level deep: a PATCH names only what it changes.
    merged = {
        key: {**current[key], **value} if isinstance(value, dict) and isinstance(current.get(key), dict) else value
        for key, value in changes.items()
    }
    merged = {**current, **merged}
    try:
        settings = AccountSettings.model_validate(merged)
    except ValidationError as exc:
        raise ValidationProblem(validation_errors(exc)) from None
    if settings.default_currency not in settings.currencies:
        raise field_error("default_currency", "must be one of the account's currencies")
    account = await repo.update_account(conn, account_id, name=name, settings=settings.model_dump(mode="json"))
    return account, await publish_snapshot(conn, account)


async def connect_processor(conn: asyncpg.Connection, account_id: str, processor: dict) -> tuple[Account, str]:
    await repo.lock_account(conn, account_id)
    try:
        account = await repo.update_account(conn, account_id, processor=processor)
    except asyncpg.UniqueViolationError:
        raise Conflict("This Stripe account is already connected to another account.") from None
    return account, await publish_snapshot(conn, account)


async def advance_clock(conn: asyncpg.Connection, account_id: str, to: datetime) -> tuple[Account, str]:
    account = await repo.lock_account(conn, account_id)
    if not account.test_mode:
        raise Conflict("Only test-mode accounts have a test clock.")
    try:
        offset = advanced_offset(account.clock, to)
    except ClockMovedBackwards:
        raise field_error("to", "must not be earlier than the test clock's current time") from None
    before = account.clock.offset_us
    account = await repo.update_account(conn, account_id, clock_offset_us=offset)
    return account, await publish_snapshot(conn, account, clock_advanced_from_us=before)


async def wait_propagated(pool: asyncpg.Pool, account_id: str, event_ids: list[str], timeout: float) -> bool:
    return await wait_delivered(lambda: tenant_tx(pool, account_id), SCHEMA, event_ids, timeout=timeout)
