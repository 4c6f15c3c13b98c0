"""The one-round-trip checkout functions of migration 0008 (services/checkout/sessions/
fastpath.py), as the runtime role: the same outcomes as the code they replace, the
account's clock, and row-level security unchanged (the tenant they set does not outlive
their statement, and they read nothing of another account)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.checkout.sessions import fastpath
from shared.db import create_pool
from shared.ids import new_id, token_hash

ITEMS = [{"id": "li_1", "name": "Beans", "quantity": 1, "unit_amount": 2490}]
RECURRING = [{"id": "li_2", "name": "Box", "quantity": 1, "unit_amount": 900, "recurring": {"interval": "month"}}]


@pytest.fixture
async def owner(dsn):
    conn = await asyncpg.connect(dsn("checkout", owner=True))
    yield conn
    await conn.close()


@pytest.fixture
async def pool(dsn):
    pool = await create_pool(dsn("checkout"), application_name="fastpath-test", max_size=2)
    yield pool
    await pool.close()


async def _account(owner, *, test_mode=True, offset_us=0) -> str:
    account_id = f"acct_{uuid.uuid4().hex[:12]}"
    await owner.execute(
        "INSERT INTO checkout.accounts (id, version, name, test_mode, settings, clock_offset_us) "
        "VALUES ($1, 1, 'Fast shop', $2, '{}', $3)",
        account_id,
        test_mode,
        offset_us,
    )
    return account_id


async def _link(owner, account_id, *, items=ITEMS, active=True, deleted=False) -> str:
    slug = uuid.uuid4().hex
    await owner.execute(
        """INSERT INTO checkout.payment_links
             (id, account_id, slug, name, active, currency, line_items, settings, created_at, updated_at, deleted_at)
           VALUES ($1, $2, $3, 'Fast link', $4, 'USD', $5::jsonb, '{"contact_fields": []}', now(), now(),
                   CASE WHEN $6 THEN now() END)""",
        new_id("plink"),
        account_id,
        slug,
        active,
        json.dumps(items),
        deleted,
    )
    return slug


async def _open(pool, slug, *, test=False, ttl=timedelta(hours=24)) -> tuple[str, bytes]:
    hashed = token_hash(uuid.uuid4().hex)
    outcome = await fastpath.open_session(
        pool, slug, session_id=new_id("cs"), token_hash=hashed, csrf_token="csrf", ttl=ttl, test=test
    )
    return outcome, hashed


async def test_opens_a_session_copying_the_link_on_the_accounts_clock(pool, owner):
    day = 86_400_000_000
    account_id = await _account(owner, offset_us=3 * day)  # a test clock 3 days ahead
    slug = await _link(owner, account_id)
    before = datetime.now(UTC)
    outcome, hashed = await _open(pool, slug, ttl=timedelta(hours=2))
    assert outcome == fastpath.OK
    row = await owner.fetchrow("SELECT * FROM checkout.checkout_sessions WHERE token_hash = $1", hashed)
    assert row["account_id"] == account_id and row["source_type"] == "payment_link" and row["status"] == "open"
    assert row["currency"] == "USD" and row["test_mode"] is True
    assert json.loads(row["line_items"]) == ITEMS  # (the owner connection has no json codec)
    assert json.loads(row["settings"]) == {"contact_fields": [], "link_name": "Fast link"}
    shifted = row["created_at"] - timedelta(days=3)
    assert before - timedelta(seconds=5) < shifted < datetime.now(UTC) + timedelta(seconds=5)
    assert row["expires_at"] - row["created_at"] == timedelta(hours=2)

    account, session = await fastpath.load_session(pool, hashed)
    assert account.id == account_id and account.clock.offset_us == 3 * day and account.test_mode
    assert session["id"] == row["id"] and session["line_items"] == ITEMS and session["csrf_token"] == "csrf"


async def test_the_outcomes_of_open_from_link(pool, owner):
    account_id = await _account(owner)
    assert (await _open(pool, "no-such-slug"))[0] == fastpath.NOT_FOUND
    assert (await _open(pool, await _link(owner, account_id, deleted=True)))[0] == fastpath.NOT_FOUND
    assert (await _open(pool, await _link(owner, account_id, active=False)))[0] == fastpath.INACTIVE
    live = await _account(owner, test_mode=False)
    outcome, hashed = await _open(pool, await _link(owner, live))
    assert outcome == fastpath.OK
    assert not await owner.fetchval("SELECT test_mode FROM checkout.checkout_sessions WHERE token_hash = $1", hashed)
    recurring = await _link(owner, account_id, items=RECURRING)
    assert (await _open(pool, recurring, test=True))[0] == fastpath.TEST_REFUSED
    assert (await _open(pool, recurring))[0] == fastpath.OK
    outcome, hashed = await _open(pool, await _link(owner, account_id), test=True)
    assert outcome == fastpath.OK
    assert await owner.fetchval("SELECT test_mode FROM checkout.checkout_sessions WHERE token_hash = $1", hashed)


async def test_the_tenant_does_not_outlive_the_statement(pool, owner):
    account_id = await _account(owner)
    assert (await _open(pool, await _link(owner, account_id)))[0] == fastpath.OK
    async with pool.acquire() as conn:  # max_size 2: the same connections as above
        for _ in range(2):
            assert await conn.fetchval("SELECT current_setting('app.account_id', true)") in (None, "")
            assert await conn.fetchval("SELECT count(*) FROM checkout.checkout_sessions") == 0
    assert await fastpath.load_session(pool, token_hash("unknown")) is None


async def test_a_cached_account_follows_its_version(pool, owner):
    account_id = await _account(owner)
    _, hashed = await _open(pool, await _link(owner, account_id))
    first, _ = await fastpath.load_session(pool, hashed)
    again, _ = await fastpath.load_session(pool, hashed)
    assert again is first  # parsed once
    await owner.execute(
        "UPDATE checkout.accounts SET name = 'Renamed', version = version + 1 WHERE id = $1", account_id
    )
    renamed, _ = await fastpath.load_session(pool, hashed)
    assert renamed.name == "Renamed" and renamed.version == 2
