"""All SQL on ``billing.invoices`` and ``billing.invoice_sequences``.

Batches go in as one JSON array (``jsonb_to_recordset``): one statement inserts every
invoice of a scheduler pass, one advances every subscription, whatever the batch size.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from shared.db import assignments

from ..charging.scheduler import ACCOUNT_CLOCKS, ACCOUNT_TODAY, DUE_RANGE
from .numbering import Taken, taken_from_next

S = "billing"

# Subscriptions with a payment date to invoice: collected by invoice, or charged
# automatically but collecting the payment method on the first invoice (until a method
# is saved). Locked, so two issuers never invoice one subscription at once.
_DUE = f"""
SELECT s.*, k.account_now, k.today AS account_today, k.settings AS account_settings,
       (SELECT count(*) FROM {S}.invoices i WHERE i.subscription_id = s.id AND i.status <> 'void')::int
           AS invoices_issued
FROM ({ACCOUNT_CLOCKS}) k
CROSS JOIN LATERAL (
    SELECT s.* FROM {S}.due_dates d JOIN {S}.subscriptions s ON s.id = d.subscription_id
    WHERE {DUE_RANGE}
      AND s.status IN ('scheduled', 'active')
      AND s.amount > 0
      AND NOT s.cancel_at_period_end
      AND (s.collection_method = 'send_invoice'
           OR (s.collection_method = 'charge_automatically' AND s.collect_method_on_first_invoice
               AND s.payment_method_id IS NULL))
    ORDER BY d.next_payment_date, d.subscription_id
    LIMIT $2
    FOR UPDATE OF s SKIP LOCKED
) s
ORDER BY s.next_payment_date, s.id
LIMIT $2
"""

# Take ``k`` numbers per account: the sequence row is created on first use (numbers 1..k)
# or moved on by k; RETURNING gives the new ``next``. Rows are upserted in account order,
# so two transactions taking numbers of several accounts never deadlock.
_TAKE = f"""
INSERT INTO {S}.invoice_sequences (account_id, prefix, next)
SELECT t.account_id, t.prefix, 1 + t.k
FROM unnest($1::text[], $2::text[], $3::int[]) AS t(account_id, prefix, k)
ORDER BY t.account_id
ON CONFLICT (account_id) DO UPDATE SET next = {S}.invoice_sequences.next + (EXCLUDED.next - 1)
RETURNING account_id, prefix, next
"""

_INSERT = f"""
INSERT INTO {S}.invoices (
    id, account_id, number, sequence, subscription_id, period_index, status, issue_date, due_date,
    payment_terms_days, currency, lines, subtotal, discount, tax, total, token_hash, language, locale,
    comments, tax_ids, email, contact, contact_id, company_id, billing_address, payment_settings,
    collect_payment_method, test_mode, terms, issued_at, created_at, updated_at)
SELECT r.id, r.account_id, r.number, r.sequence, r.subscription_id, r.period_index, 'open', r.issue_date,
       r.due_date, r.payment_terms_days, r.currency, r.lines, r.subtotal, r.discount, r.tax, r.total,
       decode(r.token_hash, 'hex'), r.language, r.locale, r.comments, r.tax_ids, r.email,
       COALESCE(r.contact, '{{}}'), r.contact_id, r.company_id, r.billing_address, r.payment_settings,
       r.collect_payment_method, r.test_mode, r.terms, r.at, r.at, r.at
FROM jsonb_to_recordset($1::jsonb) AS r(
    id text, account_id text, number text, sequence int, subscription_id text, period_index int,
    issue_date date, due_date date, payment_terms_days int, currency text, lines jsonb, subtotal bigint,
    discount bigint, tax bigint, total bigint, token_hash text, language text, locale text, comments text,
    tax_ids jsonb, email text, contact jsonb, contact_id text, company_id text, billing_address jsonb,
    payment_settings jsonb, collect_payment_method boolean, test_mode boolean, terms jsonb, at timestamptz)
ORDER BY r.sequence
RETURNING *
"""

# Open invoices past their due date on their account's clock, not yet marked overdue
# (index invoices_not_yet_overdue, migration 0008: its predicate is repeated here), up to
# ``$2`` per batch: marked once, with a new version (decision 83). Locked SKIP LOCKED, so
# concurrent passes (schedulers, the test-clock hook) mark disjoint rows; a payment that
# holds the row's lock is waited for by nobody, and an invoice a bank debit is paying is
# not overdue until that debit fails (no message a later one contradicts, PRODUCT §11).
_OVERDUE = f"""
WITH k AS MATERIALIZED ({ACCOUNT_CLOCKS}),
due AS MATERIALIZED (
    SELECT i.id, k.account_now FROM k
    CROSS JOIN LATERAL (
        SELECT i.id FROM {S}.invoices i
        WHERE i.account_id = k.id AND i.status = 'open' AND i.overdue_at IS NULL AND i.payment_id IS NULL
          AND i.due_date < k.today
        ORDER BY i.due_date, i.id
        LIMIT $2
        FOR NO KEY UPDATE OF i SKIP LOCKED
    ) i
    LIMIT $2
)
UPDATE {S}.invoices i
SET overdue_at = due.account_now, version = i.version + 1, updated_at = due.account_now
FROM due
WHERE i.id = due.id
RETURNING i.*
"""

_ADVANCE = f"""
UPDATE {S}.subscriptions s
SET next_index = r.next_index, next_payment_date = r.next_payment_date, status = r.status,
    version = s.version + 1, updated_at = r.at
FROM jsonb_to_recordset($1::jsonb) AS r(id text, next_index int, next_payment_date date, status text, at timestamptz)
WHERE s.id = r.id
RETURNING s.*
"""


async def due_subscriptions(conn: asyncpg.Connection, *, account_id: str | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(_DUE, account_id, limit)


async def mark_overdue(conn: asyncpg.Connection, *, account_id: str | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(_OVERDUE, account_id, limit)


async def take_numbers(conn: asyncpg.Connection, wanted: dict[str, tuple[str, int]]) -> dict[str, Taken]:
    """``wanted``: account id -> (prefix for a new sequence, how many numbers)."""
    ids = sorted(wanted)
    rows = await conn.fetch(_TAKE, ids, [wanted[a][0] for a in ids], [wanted[a][1] for a in ids])
    return {r["account_id"]: taken_from_next(r["prefix"], r["next"], wanted[r["account_id"]][1]) for r in rows}


async def insert_invoices(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> list[asyncpg.Record]:
    return await conn.fetch(_INSERT, rows)


async def advance_subscriptions(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> list[asyncpg.Record]:
    return await conn.fetch(_ADVANCE, rows)


async def get(conn: asyncpg.Connection, account_id: str, invoice_id: str, *, lock: bool = False):
    return await conn.fetchrow(
        f"SELECT * FROM {S}.invoices WHERE account_id = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        account_id,
        invoice_id,
    )


async def list_invoices(
    conn: asyncpg.Connection,
    account_id: str,
    *,
    subscription_id: str | None,
    status: str | None,
    limit: int,
    starting_after: str | None,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT * FROM {S}.invoices
            WHERE account_id = $1
              AND ($2::text IS NULL OR subscription_id = $2)
              AND ($3::text IS NULL OR status = $3)
              AND ($4::text IS NULL OR id < $4)
            ORDER BY id DESC LIMIT $5""",
        account_id,
        subscription_id,
        status,
        starting_after,
        limit,
    )


async def update(conn: asyncpg.Connection, invoice_id: str, changes: dict[str, Any], at: datetime) -> asyncpg.Record:
    """Apply ``changes`` and bump the version (each change is a new ``invoice.updated``)."""
    sets, values = assignments(changes, "version = version + 1", "updated_at = $2", first=3)
    return await conn.fetchrow(f"UPDATE {S}.invoices SET {sets} WHERE id = $1 RETURNING *", invoice_id, at, *values)


async def open_invoices_of(conn: asyncpg.Connection, account_id: str, subscription_id: str) -> int:
    return await conn.fetchval(
        f"""SELECT count(*) FROM {S}.invoices
            WHERE account_id = $1 AND subscription_id = $2 AND status IN ('draft', 'open')""",
        account_id,
        subscription_id,
    )


async def cancel_scheduled_charge(
    conn: asyncpg.Connection, subscription_id: str, period_index: int, at: datetime
) -> None:
    """An invoiced period must never also be charged: a charge the charge scheduler made
    for it in a race (before the subscription moved on) is canceled before it runs (the
    charge job locks the same row, so one of the two wins cleanly)."""
    await conn.execute(
        f"""UPDATE {S}.charges SET status = 'canceled', updated_at = $3
            WHERE subscription_id = $1 AND period_index = $2 AND status = 'scheduled'""",
        subscription_id,
        period_index,
        at,
    )


async def resolve_token(conn: asyncpg.Connection | asyncpg.Pool, token_hash: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT account_id, invoice_id FROM {S}.resolve_invoice_token($1)", token_hash)


async def account_today(conn: asyncpg.Connection, account_id: str):
    return await conn.fetchval(
        f"SELECT {ACCOUNT_TODAY} FROM {S}.accounts a WHERE a.id = $1",
        account_id,
    )
