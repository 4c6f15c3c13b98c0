"""TARGETS P7: the CRM's bulk upsert of contacts against a bare asyncpg ``INSERT … SELECT
unnest(...) ON CONFLICT`` at batch 1,000, and against one-row-at-a-time upserts, in one run
on the same data.

``python bench/p7_crm_upsert.py [--n 100000] [--single-n 3000] [--rounds 2] [--batch 1000] [--quick]``

Set-up (not timed): a fresh database with crm_sync's schema (`bench/_load.py`); one test
account in crm_sync's projection; ``n`` contacts as the batch API or the CLI hands them over
(dicts of text: e-mail, first and last name, phone, company, job title, city, country) and,
for the update phase, the same addresses in other letter cases with a new phone and city;
a bare table ``bench_p7.contacts`` with the columns of ``crm_sync.contacts``, its primary
key and the unique index the upsert needs (``(account_id, lower(email))``) — nothing else:
no other index, foreign key or row-level security.

After a warm-up of every path (not timed) and an ANALYZE, timed, each round in this
order, after a TRUNCATE of the tables and a CHECKPOINT, for the insert phase and then the
update phase:

1. **bare**: for each batch of ``--batch`` rows, the column arrays built from the dicts and
   ids made with `shared.ids.new_ids`, then one ``INSERT INTO bench_p7.contacts … SELECT …
   FROM unnest($1::text[], …) ON CONFLICT (account_id, lower(email)) DO UPDATE SET …``
   (each batch its own transaction);
2. **ours, import**: `services.crm_sync.contacts.upserts.upsert_stream` — what ``commerce
   crm import contacts`` runs: a tenant transaction per batch (crm_sync's runtime role,
   row-level security); every row checked, rows of one address merged (the next batch
   prepared in a thread meanwhile), one upsert statement that never erases a value with
   an empty one and skips rows that would not change, the batch's ``crm_records.updated``;
3. **ours, batch API**: `upserts.upsert_batch` per batch, one after the other, with a
   result (and id) per row — what ``POST /v1/contacts/batch/upsert`` runs, without HTTP.

Then, in the first round only, ``--single-n`` new contacts one row at a time:

4. **ours, one row at a time**: `upserts.upsert_batch` with one row per transaction (the
   same code at batch size 1, as a purchase upserts its buyer);
5. **bare, one row at a time**: the bare upsert's single-row form, ``INSERT … VALUES ($1,
   …) ON CONFLICT … DO UPDATE``, one statement per row in autocommit.

Python's cyclic GC is paused during each timed phase (all sides alike). Prints each phase
and ``P7: ratio_bare=… (target ≥ 0.80) ratio_rows=… (target ≥ 30)``: ``ratio_bare`` = bare
time / the import's time over all rounds and both phases (1.0 = as fast as bare;
``ratio_bare_api`` the same for the batch API's path), ``ratio_rows`` = the import's rows
per second / ours one row at a time (``ratio_rows_bare``: / bare one row at a time). Checks
that ours stored every contact once with the update phase's values, with one event per
batch (``CHECKS FAILED`` otherwise).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _load as load

TARGET_BARE = 0.80
TARGET_ROWS = 30.0

BARE_DDL = [
    "DROP SCHEMA IF EXISTS bench_p7 CASCADE",
    "CREATE SCHEMA bench_p7 AUTHORIZATION commerce_crm_sync",
]
# The columns of crm_sync.contacts, its primary key and the unique index the upsert needs.
BARE_TABLE = [
    """CREATE TABLE bench_p7.contacts (
        id text NOT NULL,
        account_id text NOT NULL,
        email text NOT NULL,
        firstname text, lastname text, phone text, company text, jobtitle text, website text,
        address text, city text, state text, zip text, country text,
        company_id text,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        version bigint NOT NULL DEFAULT 1,
        PRIMARY KEY (account_id, id)
    )""",
    "CREATE UNIQUE INDEX bench_p7_contacts_email ON bench_p7.contacts (account_id, lower(email))",
]


def _fields():
    from services.crm_sync.contacts.rows import FIELDS, TEXT_FIELDS

    return FIELDS, TEXT_FIELDS


def bare_statements() -> tuple[str, str]:
    fields, text = _fields()
    columns = ", ".join(fields)
    sets = ", ".join(f"{f} = EXCLUDED.{f}" for f in text) + ", updated_at = EXCLUDED.updated_at"
    bulk = f"""
        INSERT INTO bench_p7.contacts (id, account_id, {columns}, created_at, updated_at)
        SELECT t.id, $1, {", ".join("t." + f for f in fields)}, now(), now()
        FROM unnest({", ".join(f"${i + 2}::text[]" for i in range(len(fields) + 1))}) AS t(id, {columns})
        ON CONFLICT (account_id, lower(email)) DO UPDATE SET {sets}"""
    one = f"""
        INSERT INTO bench_p7.contacts (id, account_id, {columns}, created_at, updated_at)
        VALUES ($2, $1, {", ".join(f"${i + 3}" for i in range(len(fields)))}, now(), now())
        ON CONFLICT (account_id, lower(email)) DO UPDATE SET {sets}"""
    return bulk, one


def contacts(n: int, start: int = 0, *, update: bool = False) -> list[dict]:
    """Deterministic contacts; ``update``: the same addresses (other letter case), a new
    phone and city, the rest unchanged."""
    rows = []
    for i in range(start, start + n):
        email = f"person{i:07d}@example.com"
        rows.append(
            {
                "email": email.upper() if update else email,
                "firstname": f"First{i % 5000}",
                "lastname": f"Last{i % 7919}",
                "phone": f"+46 70 {(i * 7) % 10_000_000:07d}" if not update else f"+46 73 {i % 10_000_000:07d}",
                "company": f"Company {i % 1000}",
                "jobtitle": "Buyer",
                "city": ("Moved " if update else "") + f"City {i % 300}",
                "country": "SE",
            }
        )
    return rows


def batches(rows: list[dict], size: int) -> list[list[dict]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


async def bare_phase(conn, statement: str, account_id: str, chunks: list[list[dict]]) -> float:
    from shared.ids import new_ids

    fields, _ = _fields()
    with load.no_gc():
        started = time.perf_counter()
        for chunk in chunks:
            ids = new_ids("contact", len(chunk))
            await conn.execute(statement, account_id, ids, *[[r.get(f) for r in chunk] for f in fields])
        return time.perf_counter() - started


async def import_phase(pool, account_id: str, chunks: list[list[dict]]) -> tuple[float, dict[str, int]]:
    from services.crm_sync.contacts.upserts import upsert_stream

    counts = {"created": 0, "updated": 0, "unchanged": 0, "merged": 0, "failed": 0}

    def done(_tag, outcome) -> None:
        for key in counts:
            counts[key] += getattr(outcome, key)

    with load.no_gc():
        started = time.perf_counter()
        await upsert_stream(pool, account_id, ((None, c) for c in chunks), lambda: datetime.now(UTC), done)
        return time.perf_counter() - started, counts


async def api_phase(pool, account_id: str, chunks: list[list[dict]]) -> tuple[float, dict[str, int]]:
    from services.crm_sync.contacts.upserts import upsert_batch
    from shared.db import tenant_tx

    counts = {"created": 0, "updated": 0, "unchanged": 0, "merged": 0, "failed": 0}
    with load.no_gc():
        started = time.perf_counter()
        for chunk in chunks:
            async with tenant_tx(pool, account_id) as conn:
                outcome = await upsert_batch(conn, account_id, chunk, datetime.now(UTC))
            for key in counts:
                counts[key] += getattr(outcome, key)
        return time.perf_counter() - started, counts


async def our_single_phase(pool, account_id: str, rows: list[dict]) -> float:
    from services.crm_sync.contacts.upserts import upsert_batch
    from shared.db import tenant_tx

    with load.no_gc():
        started = time.perf_counter()
        for row in rows:
            async with tenant_tx(pool, account_id) as conn:
                await upsert_batch(conn, account_id, [row], datetime.now(UTC))
        return time.perf_counter() - started


async def bare_single_phase(conn, statement: str, account_id: str, rows: list[dict]) -> float:
    from shared.ids import new_id

    fields, _ = _fields()
    with load.no_gc():
        started = time.perf_counter()
        for row in rows:
            await conn.execute(statement, account_id, new_id("contact"), *[row.get(f) for f in fields])
        return time.perf_counter() - started


async def seed_account(app_url: str) -> str:
    from shared.accounts import apply_account_snapshot
    from shared.db import create_pool, tenant_tx
    from shared.events.models import AccountSnapshot

    account_id = f"acct_p7bench{uuid.uuid4().hex[:12]}"
    snapshot = AccountSnapshot(
        id=account_id, version=1, name="P7 bench", test_mode=True, settings={}, clock_offset_us=0, api_keys=[]
    )
    pool = await create_pool(app_url, application_name="p7-seed", max_size=1)
    try:
        async with tenant_tx(pool, account_id) as conn:
            await apply_account_snapshot(conn, "crm_sync", snapshot)
    finally:
        await pool.close()
    return account_id


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s" if seconds else "-"


async def run(args: argparse.Namespace, db: load.BenchDatabase) -> int:
    import asyncpg

    from shared.db import create_pool

    owner_url, app_url, admin_url = db.url("commerce_crm_sync"), db.url("commerce_crm_sync_app"), db.admin_db_url
    admin = await asyncpg.connect(admin_url)
    try:
        for statement in BARE_DDL:
            await admin.execute(statement)
        await admin.execute("SET ROLE commerce_crm_sync")
        for statement in BARE_TABLE:
            await admin.execute(statement)
    finally:
        await admin.close()
    account_id = await seed_account(app_url)
    bulk_sql, one_sql = bare_statements()
    inserts = batches(contacts(args.n), args.batch)
    updates = batches(contacts(args.n, update=True), args.batch)
    singles = contacts(args.single_n, start=10 * args.n)

    owner = await asyncpg.connect(owner_url)
    bare = await asyncpg.connect(owner_url, server_settings={"application_name": "p7-bare"})
    pool = await create_pool(app_url, application_name="p7-ours", min_size=1, max_size=1)
    totals = {"bare": 0.0, "import": 0.0, "api": 0.0}
    rows_each = 0
    single = {"ours": float("nan"), "bare": float("nan")}
    ok = True
    try:
        # Warm-up (not timed): prepared statements, the import's thread, plans; then ANALYZE
        # so that no side keeps a plan made while its table was empty (bench/_common.analyze).
        warm = batches(contacts(2 * args.batch, start=20 * args.n), args.batch)
        await bare_phase(bare, bulk_sql, account_id, warm)
        await import_phase(pool, account_id, warm)
        await api_phase(pool, account_id, [[{**r, "email": "api." + r["email"]} for r in c] for c in warm])
        await our_single_phase(pool, account_id, contacts(20, start=30 * args.n))
        await bare_single_phase(bare, one_sql, account_id, contacts(20, start=30 * args.n))
        await owner.execute("TRUNCATE bench_p7.contacts, crm_sync.contacts, crm_sync.outbox")
        await owner.execute("ANALYZE bench_p7.contacts; ANALYZE crm_sync.contacts; ANALYZE crm_sync.outbox")
        for round_no in range(1, args.rounds + 1):
            await owner.execute("TRUNCATE bench_p7.contacts, crm_sync.contacts, crm_sync.outbox")
            for label, chunks in (("insert", inserts), ("update", updates)):
                await load.checkpoint(admin_url)
                b = await bare_phase(bare, bulk_sql, account_id, chunks)
                await load.checkpoint(admin_url)
                i, counts = await import_phase(pool, account_id, chunks)
                expected = "created" if label == "insert" else "updated"
                ok &= counts[expected] == args.n
                # the API's path does the same work on a second copy of the rows (other addresses)
                api_chunks = [[{**r, "email": "api." + r["email"]} for r in chunk] for chunk in chunks]
                await load.checkpoint(admin_url)
                a, api_counts = await api_phase(pool, account_id, api_chunks)
                ok &= api_counts[expected] == args.n
                totals["bare"] += b
                totals["import"] += i
                totals["api"] += a
                rows_each += args.n
                load.say(
                    f"round {round_no} {label}: bare {b:.2f} s ({rate(args.n, b)}), ours import {i:.2f} s "
                    f"({rate(args.n, i)}) → {b / i:.2f}, ours batch API {a:.2f} s ({rate(args.n, a)}) → {b / a:.2f}"
                )
            stored = await owner.fetchval(
                "SELECT count(*) FROM crm_sync.contacts WHERE account_id = $1 AND city LIKE 'Moved %' "
                "AND email NOT LIKE 'api.%'",
                account_id,
            )
            ok &= stored == args.n
            if round_no == 1 and args.single_n:
                await load.checkpoint(admin_url)
                single["ours"] = await our_single_phase(pool, account_id, singles)
                await load.checkpoint(admin_url)
                single["bare"] = await bare_single_phase(bare, one_sql, account_id, singles)
                load.say(
                    f"round 1 one row at a time ({args.single_n:,} new contacts, a transaction each): "
                    f"ours {single['ours']:.2f} s ({rate(args.single_n, single['ours'])}), "
                    f"bare {single['bare']:.2f} s ({rate(args.single_n, single['bare'])})"
                )
    finally:
        await pool.close()
        await bare.close()
        await owner.close()

    import_rate = rows_each / totals["import"]
    ratio_rows = import_rate / (args.single_n / single["ours"])
    ratio_rows_bare = import_rate / (args.single_n / single["bare"])
    load.say(
        f"P7: ratio_bare={totals['bare'] / totals['import']:.2f} (target ≥ {TARGET_BARE:.2f}) "
        f"ratio_rows={ratio_rows:.1f} (target ≥ {TARGET_ROWS:.0f}) "
        f"ratio_bare_api={totals['bare'] / totals['api']:.2f} ratio_rows_bare={ratio_rows_bare:.1f} — "
        f"import {import_rate:,.0f} rows/s, batch API {rows_each / totals['api']:,.0f} rows/s, "
        f"bare {rows_each / totals['bare']:,.0f} rows/s, one row at a time: ours "
        f"{args.single_n / single['ours']:,.0f} rows/s, bare {args.single_n / single['bare']:,.0f} rows/s; "
        f"batch {args.batch:,}; {load.machine_load()}"
        f"{'' if ok else ' — CHECKS FAILED'}"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="contacts per phase")
    parser.add_argument("--single-n", type=int, default=3000, help="one-row upserts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5,000 contacts, 300 single rows, 1 round")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()
    if args.quick:
        args.n, args.single_n, args.rounds = 5000, 300, 1
    load.say(f"P7 — CRM bulk upsert vs bare unnest upsert and one-row upserts; {load.machine_load()}")
    return load.run_with_database("commerce_bench_p7", ("crm_sync",), lambda db: run(args, db), keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
