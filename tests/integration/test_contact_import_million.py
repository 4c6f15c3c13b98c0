"""A million contacts through the real CLI (``commerce crm import contacts``), in a database
of its own (crm_sync's schema only, dropped afterwards), twice:

- the file is written on the fly, line by line, into a temporary directory: 1,000,000 rows
  (header ``Email, First name, Last name, Phone, City``), among them, in every block of
  1,000 lines, one row repeating the address of the row before it in upper case with a
  phone (merged within its batch), and — from the second block on — one row repeating the
  address of a row 1,500 lines earlier in mixed case, adding a job title (an update of a
  contact written by an earlier batch);
- the first run creates one contact per address (case-insensitively), merges and updates
  as counted, announces the changes with one event per batch, and shows its progress;
- the second run of the same file changes nothing: no contact created or written, no
  version or ``updated_at`` moved, no event.

Set ``COMMERCE_HEAVY_TEST_LOCK=/path/to/lockfile`` to run the imports under an exclusive
``flock`` of that file (machines shared with benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from commerce_cli.database import bootstrap, drop_database
from shared.accounts import apply_account_snapshot
from shared.db import create_pool, tenant_tx
from shared.events.models import AccountSnapshot
from shared.migrations import upgrade

ROOT = Path(__file__).resolve().parents[2]
LINES = 1_000_000
BLOCK = 1_000  # the CLI's batch size: the within-batch duplicates stay within their batch


def email(n: int) -> str:
    return f"contact{n:07d}@million.example"


def write_csv(path: Path) -> dict[str, int]:
    """The file, streamed; returns the expected counts."""
    counts = {"merged": 0, "updated": 0}
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("Email,First name,Last name,Phone,City,Job title\n")
        lines = []
        for n in range(LINES):
            within = n % BLOCK
            if within == 500:  # the row before, again: merged into it (same batch)
                lines.append(f"{email(n - 1).upper()},,,+46 70 {n:07d},,\n")
                counts["merged"] += 1
            elif within == 700 and n >= BLOCK:  # a row of an earlier batch: adds a job title
                lines.append(f"{email(n - 1500).capitalize()},,,,,Returning buyer\n")
                counts["updated"] += 1
            else:
                lines.append(f"{email(n)},First{n % 5000},Last{n % 7919},,City {n % 300},\n")
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)
    counts["created"] = LINES - counts["merged"] - counts["updated"]
    return counts


@contextlib.contextmanager
def heavy_lock():
    path = os.environ.get("COMMERCE_HEAVY_TEST_LOCK")
    if not path:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def crm_database(postgres):
    name = f"commerce_import_{uuid.uuid4().hex[:8]}"
    asyncio.run(bootstrap(postgres.admin_url(), name))
    try:
        upgrade("crm_sync", "crm_sync", postgres.url("commerce_crm_sync", name))
        yield {"app": postgres.url("commerce_crm_sync_app", name), "owner": postgres.url("commerce_crm_sync", name)}
    finally:
        asyncio.run(drop_database(postgres.admin_url(), name))


async def seed_account(app_url: str) -> str:
    account_id = f"acct_million_{uuid.uuid4().hex[:10]}"
    snapshot = AccountSnapshot(
        id=account_id, version=1, name="A million", test_mode=True, settings={}, clock_offset_us=0, api_keys=[]
    )
    pool = await create_pool(app_url, application_name="test-import", max_size=1)
    try:
        async with tenant_tx(pool, account_id) as conn:
            assert await apply_account_snapshot(conn, "crm_sync", snapshot)
    finally:
        await pool.close()
    return account_id


def run_cli(app_url: str, account_id: str, path: Path) -> tuple[dict, str, float]:
    env = {**os.environ, "CRM_SYNC_DATABASE_URL": app_url}
    argv = [sys.executable, "-m", "commerce_cli.main", "crm", "import", "contacts", str(path)]
    started = time.monotonic()
    done = subprocess.run(
        [*argv, "--account", account_id, "--json", "--progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr, elapsed


async def state(owner_url: str, account_id: str) -> dict:
    conn = await asyncpg.connect(owner_url)
    try:
        return dict(
            await conn.fetchrow(
                """SELECT count(*) AS contacts, count(DISTINCT lower(email)) AS addresses,
                          sum(version) AS versions, max(updated_at) AS last_update,
                          count(*) FILTER (WHERE jobtitle IS NOT NULL) AS returning,
                          count(*) FILTER (WHERE phone IS NOT NULL) AS phones,
                          (SELECT count(*) FROM crm_sync.outbox o WHERE o.account_id = $1) AS events,
                          (SELECT coalesce(sum(jsonb_array_length(o.envelope->'data'->'record_ids')), 0)
                           FROM crm_sync.outbox o WHERE o.account_id = $1) AS announced
                   FROM crm_sync.contacts WHERE account_id = $1""",
                account_id,
            )
        )
    finally:
        await conn.close()


@pytest.mark.timeout(1200)
def test_a_million_contacts_imported_twice(crm_database, tmp_path, capsys):
    path = tmp_path / "million.csv"
    expected = write_csv(path)
    account_id = asyncio.run(seed_account(crm_database["app"]))

    with heavy_lock():
        first, progress, first_s = run_cli(crm_database["app"], account_id, path)
        after_first = asyncio.run(state(crm_database["owner"], account_id))
        second, _, second_s = run_cli(crm_database["app"], account_id, path)
        after_second = asyncio.run(state(crm_database["owner"], account_id))
    with capsys.disabled():
        print(
            f"\n1,000,000-contact import: first run {first_s:.1f} s ({first['rows_per_second']:,} rows/s), "
            f"second run {second_s:.1f} s ({second['rows_per_second']:,} rows/s)"
        )

    assert first["rows"] == LINES and first["refused"] == 0 and first["stopped"] is None
    assert (first["created"], first["merged"], first["updated"], first["unchanged"]) == (
        expected["created"],
        expected["merged"],
        expected["updated"],
        0,
    )
    assert after_first["contacts"] == after_first["addresses"] == expected["created"]
    assert after_first["returning"] == expected["updated"] and after_first["phones"] == expected["merged"]
    assert after_first["versions"] == expected["created"] + expected["updated"]
    assert after_first["events"] == LINES // BLOCK  # one per batch, not one per contact
    assert after_first["announced"] == expected["created"] + expected["updated"]
    assert "rows/s" in progress and "100%" in progress  # the progress bar

    # the same file again: nothing to write
    assert second["rows"] == LINES and second["refused"] == 0
    assert (second["created"], second["updated"], second["merged"]) == (0, 0, expected["merged"])
    assert second["unchanged"] == expected["created"] + expected["updated"]
    assert after_second == after_first
