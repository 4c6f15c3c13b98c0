"""One-round-trip reads and writes of the buyer's checkout (TARGETS P1).

`open_session` and `load_session` each make ONE database call (the SQL functions of
migration 0008), where the straightforward code makes six or seven: resolve the public
secret, BEGIN, set the tenant, SELECT the account, SELECT (and INSERT), COMMIT. Row-level
security applies unchanged (the functions run as the runtime role).

Accounts are cached per process by (id, version, clock offset): every change of an
account bumps its version, so a cached `Account` (settings parsed by pydantic, clock)
is reused only while the row it came from is still current; each `load_session` reads
the current version and offset to compare with (and the whole row only on a change).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from shared.accounts import Account, account_from_row

S = "checkout"
OPEN_SQL = f"SELECT {S}.open_link_session($1, $2, $3, $4, $5, $6, $7)"
#: The session's columns, then its account's version and clock offset (enough to tell
#: whether the cached `Account` is current; the whole row is read only when it is not).
#: ``content_md5`` fingerprints what the session's page is rendered from besides its token
#: and CSRF token (the items and settings snapshot): the page cache's key (handlers.py).
LOAD_SQL = (
    f"SELECT s.*, a.version AS acct_version, a.clock_offset_us AS acct_clock_offset_us, "
    f"md5(s.line_items::text || coalesce(s.settings::text, '')) AS content_md5 "
    f"FROM {S}.load_session($1) s CROSS JOIN LATERAL {S}.tenant_account(s.account_id) a"
)
ACCOUNT_SQL = f"SELECT * FROM {S}.tenant_account($1)"
#: open_link_session's outcomes
OK, NOT_FOUND, INACTIVE, TEST_REFUSED = "ok", "not_found", "inactive", "test_refused"

_ACCOUNTS: dict[str, tuple[tuple[int, int], Account]] = {}
_MAX_CACHED = 10_000


def _cached(account_id: str, version: int, clock_offset_us: int) -> Account | None:
    hit = _ACCOUNTS.get(account_id)
    return hit[1] if hit is not None and hit[0] == (version, clock_offset_us) else None


def _remember(row: asyncpg.Record) -> Account:
    account = account_from_row(row)
    if len(_ACCOUNTS) >= _MAX_CACHED:
        _ACCOUNTS.clear()
    _ACCOUNTS[account.id] = ((row["version"], row["clock_offset_us"]), account)
    return account


async def open_session(
    pool: asyncpg.Pool,
    slug: str,
    *,
    session_id: str,
    token_hash: bytes,
    csrf_token: str,
    ttl: timedelta,
    test: bool = False,
) -> str:
    """Create a checkout session from the link ``slug``; returns the outcome (`OK`, …).
    Its timestamps are the account's clock (system time + the test clock's offset)."""
    return await pool.fetchval(OPEN_SQL, slug, session_id, token_hash, csrf_token, datetime.now(UTC), ttl, test)


async def load_session(pool: asyncpg.Pool, token_hash: bytes) -> tuple[Account, asyncpg.Record] | None:
    """The account and the session of a token hash, or None (one round trip, two when
    the account changed since this process last parsed it). The session record also
    carries ``acct_version``, ``acct_clock_offset_us`` and ``content_md5``."""
    row = await pool.fetchrow(LOAD_SQL, token_hash)
    if row is None:
        return None
    account = _cached(row["account_id"], row["acct_version"], row["acct_clock_offset_us"])
    if account is None:
        account_row = await pool.fetchrow(ACCOUNT_SQL, row["account_id"])
        if account_row is None:  # (deleted in between: as if the session did not exist)
            return None
        account = _remember(account_row)
    return account, row
