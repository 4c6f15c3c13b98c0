"""Billing's invoice pass makes "overdue" a fact (decision 83), against a real database: an
open invoice whose due date is before its account's local today is marked once, with a
new version and its ``invoice.updated`` in the same transaction; a second pass, or
three at once, mark nothing more; invoices on time, paid, uncollectible or being paid by
a bank debit are left alone; the test clock moves "today"."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from services.billing.invoices import scheduler
from shared.config import CommonSettings
from shared.db import create_pool

SETTINGS = CommonSettings(environment="test")


@pytest.fixture
async def owner(dsn):
    conn = await asyncpg.connect(dsn("billing", owner=True))
    yield conn
    await conn.close()


@pytest.fixture
async def pool(dsn):
    """The scheduler's pool (the schema owner, with the services' JSON codecs)."""
    pool = await create_pool(dsn("billing", owner=True), application_name="test-overdue", min_size=1, max_size=4)
    yield pool
    await pool.close()


async def new_account(owner, time_zone: str = "Europe/Stockholm") -> str:
    account_id = f"acct_due_{uuid.uuid4().hex[:10]}"
    await owner.execute(
        "INSERT INTO billing.accounts (id, version, name, test_mode, settings) VALUES ($1, 1, 'Overdue', true, $2)",
        account_id,
        json.dumps({"time_zone": time_zone}),
    )
    return account_id


async def add_invoices(owner, account_id: str, n: int, *, due_in_days: int, status: str = "open", **extra) -> list[str]:
    """``n`` invoices due ``due_in_days`` from the account's local today (negative: past)."""
    ids = []
    for _ in range(n):
        invoice_id = f"inv_{uuid.uuid4().hex[:12]}"
        sequence = await owner.fetchval(
            "SELECT COALESCE(max(sequence), 0) + 1 FROM billing.invoices WHERE account_id = $1", account_id
        )
        await owner.execute(
            """INSERT INTO billing.invoices (id, account_id, number, sequence, status, issue_date, due_date,
                   currency, lines, subtotal, total, token_hash, test_mode, paid_at, payment_id,
                   created_at, updated_at)
               SELECT $1, $2, 'T-' || $3::int, $3::int, $4, today - 40, today + $5::int, 'USD', '[]', 1000, 1000,
                      decode(md5($1), 'hex'), true, CASE WHEN $4 = 'paid' THEN now() END, $6, now(), now()
               FROM (SELECT (now() AT TIME ZONE (settings->>'time_zone'))::date AS today
                     FROM billing.accounts WHERE id = $2) t""",
            invoice_id,
            account_id,
            sequence,
            status,
            due_in_days,
            extra.get("payment_id"),
        )
        ids.append(invoice_id)
    return ids


async def overdue_events(owner, account_id: str) -> list[dict]:
    rows = await owner.fetch(
        """SELECT envelope->'data' AS data FROM billing.outbox
           WHERE account_id = $1 AND type = 'invoice.updated' ORDER BY seq""",
        account_id,
    )
    return [json.loads(r["data"]) for r in rows]


async def marked(owner, account_id: str) -> dict[str, tuple]:
    rows = await owner.fetch(
        "SELECT id, overdue_at IS NOT NULL AS overdue, version FROM billing.invoices WHERE account_id = $1",
        account_id,
    )
    return {r["id"]: (r["overdue"], r["version"]) for r in rows}


async def test_open_invoices_past_due_are_marked_once_with_their_event(pool, owner):
    account_id = await new_account(owner)
    late = await add_invoices(owner, account_id, 5, due_in_days=-1)
    on_time = await add_invoices(owner, account_id, 1, due_in_days=0)  # the due date itself is on time
    await add_invoices(owner, account_id, 1, due_in_days=3)
    await add_invoices(owner, account_id, 1, due_in_days=-5, status="paid")
    await add_invoices(owner, account_id, 1, due_in_days=-5, status="uncollectible")
    paying = await add_invoices(owner, account_id, 1, due_in_days=-5, payment_id=f"pay_{uuid.uuid4().hex[:8]}")

    await scheduler.run_pass(pool, SETTINGS, batch=2)
    state = await marked(owner, account_id)
    assert {i for i, (overdue, _) in state.items() if overdue} == set(late)
    assert all(state[i] == (True, 2) for i in late) and state[on_time[0]] == (False, 1)
    assert state[paying[0]] == (False, 1)  # a bank debit is paying it: not overdue until it fails
    events = await overdue_events(owner, account_id)
    assert sorted(e["invoice_id"] for e in events) == sorted(late)
    assert all(e["status"] == "open" and e["previous_status"] == "open" for e in events)
    assert all(e["overdue_at"] and e["version"] == 2 for e in events)

    await scheduler.run_pass(pool, SETTINGS, batch=2)  # a second pass: nothing more
    assert len(await overdue_events(owner, account_id)) == 5


async def test_several_schedulers_at_once_mark_each_invoice_once(pool, owner):
    accounts = [await new_account(owner), await new_account(owner, "America/New_York")]
    late = [i for a in accounts for i in await add_invoices(owner, a, 15, due_in_days=-2)]
    await asyncio.gather(*(scheduler.run_pass(pool, SETTINGS, batch=4) for _ in range(3)))
    events = [e for a in accounts for e in await overdue_events(owner, a)]
    assert sorted(e["invoice_id"] for e in events) == sorted(late)  # one event each
    for a in accounts:
        assert set((await marked(owner, a)).values()) == {(True, 2)}


async def test_the_test_clock_makes_an_invoice_overdue(pool, owner):
    account_id = await new_account(owner)
    (invoice_id,) = await add_invoices(owner, account_id, 1, due_in_days=10)
    async with pool.acquire() as conn, conn.transaction():
        await scheduler.issue_due(conn, SETTINGS, account_id=account_id)
    assert (await marked(owner, account_id))[invoice_id] == (False, 1)
    await owner.execute(
        "UPDATE billing.accounts SET clock_offset_us = $2 WHERE id = $1", account_id, 11 * 86_400 * 1_000_000
    )
    async with pool.acquire() as conn, conn.transaction():  # what the test-clock hook runs for the account
        await scheduler.issue_due(conn, SETTINGS, account_id=account_id)
    assert (await marked(owner, account_id))[invoice_id] == (True, 2)
    (event,) = await overdue_events(owner, account_id)
    assert event["overdue_at"] > event["due_date"]  # the account's clock, 11 days on
