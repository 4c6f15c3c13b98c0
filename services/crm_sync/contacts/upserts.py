"""Contacts upserted in sets: the one path of bulk imports (``commerce crm import
contacts``), the batch API (``POST /v1/contacts/batch/upsert``) and purchases.

`upsert_batch` takes up to `BATCH_LIMIT` rows of contact fields and, in the caller's
transaction:
1. cleans and checks each row (`rows.clean_row`): a refused row gets its errors and the
   others go on;
2. merges rows of one e-mail address (any letter case) into one (`rows.merge`);
3. upserts them with one statement (`repository.upsert_contacts`): a contact is found
   by ``lower(email)``; a non-empty value replaces the stored one, an empty one never
   erases it; a contact whose values would not change is not written (no new version,
   no event), so importing a file twice changes nothing the second time;
4. announces the contacts created or changed with **one** ``crm_records.updated`` event
   (checkout's projection of CRM records), not one event per contact.

What an import may change: the contact-information fields, by non-empty values. Never
the stored e-mail's spelling, the contact's company record (``company_id``), or
anything else. A purchase (`upsert_contact`) follows the same rule through the same
statement and is never refused (checkout checked the buyer's input); it also sets the
company and associations (``crm/purchases.py``). See docs/decisions.md 70–72.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

import asyncpg

from shared.db import tenant_tx
from shared.ids import new_id, new_ids

from ..crm import records
from . import repository as repo
from .rows import FIELDS, Errors, Merged, Values, ascii_key, clean_row, merge, normalize

#: Rows per batch: the batch API's limit and the CLI's default batch size.
BATCH_LIMIT = 1000

Status = Literal["created", "updated", "unchanged", "merged", "failed"]
T = TypeVar("T")


@dataclass
class RowResult:
    """What became of one input row. ``merged``: the row's e-mail appeared earlier in the
    batch; it was merged into that row's contact (``id``)."""

    index: int
    status: Status
    id: str | None = None
    errors: Errors | None = None


@dataclass
class BatchOutcome:
    results: list[RowResult] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    failed: int = 0


async def keys_of(conn: asyncpg.Connection, emails: list[str | None]) -> list[str]:
    """The merge key of each e-mail: its lower case as the database's ``lower()`` gives
    it (asked only for addresses that are not ASCII; a key already known is kept)."""
    keys = [ascii_key(e) if e is not None else None for e in emails]
    others = [n for n, key in enumerate(keys) if key is None]
    if others:
        lowered = await repo.lower_case(conn, [emails[n] for n in others])  # type: ignore[misc]
        for n, key in zip(others, lowered, strict=True):
            keys[n] = key
    return keys  # type: ignore[return-value]


@dataclass
class Prepared:
    """A batch checked, and merged when every key was known without the database (ASCII
    addresses): the work of `prepare` can run while the database applies another batch."""

    size: int
    first_index: int
    failed: list[RowResult]
    accepted: list[tuple[int, Values]]
    merged: Merged | None = None
    ids: list[str] = field(default_factory=list)


def prepare(rows: Sequence[Mapping[str, Any]], *, first_index: int = 0) -> Prepared:
    """Check every row, and merge the accepted ones when their keys are plain ASCII (no
    I/O: safe in a worker thread)."""
    if len(rows) > BATCH_LIMIT:
        raise ValueError(f"at most {BATCH_LIMIT} rows per batch")
    failed: list[RowResult] = []
    accepted: list[tuple[int, Values]] = []
    for position, raw in enumerate(rows):
        values, errors = clean_row(raw)
        if errors:
            failed.append(RowResult(first_index + position, "failed", errors=errors))
        else:
            accepted.append((position, values))
    prepared = Prepared(len(rows), first_index, failed, accepted)
    keys = [ascii_key(values["email"]) for _, values in accepted]  # type: ignore[arg-type]
    if None not in keys:
        prepared.merged = merge(accepted, keys)  # type: ignore[arg-type]
        prepared.ids = new_ids("contact", len(prepared.merged))
    return prepared


async def apply(
    conn: asyncpg.Connection, account_id: str, prepared: Prepared, now: datetime, *, per_row: bool = True
) -> BatchOutcome:
    """Upsert a prepared batch in the caller's transaction and announce what changed.
    ``per_row=False`` (an import): the counts, and results for the refused rows only."""
    outcome = BatchOutcome(failed=len(prepared.failed))
    results: list[RowResult | None] = [None] * prepared.size
    for result in prepared.failed:
        results[result.index - prepared.first_index] = result
    merged, ids = prepared.merged, prepared.ids
    if merged is None and prepared.accepted:  # addresses beyond ASCII: the database keys them
        merged = merge(prepared.accepted, await keys_of(conn, [v["email"] for _, v in prepared.accepted]))
        ids = new_ids("contact", len(merged))
    if merged:
        changed = {r["key"]: r for r in await repo.upsert_contacts(conn, account_id, ids, merged.columns, now)}
        if not per_row:  # an import: counts, and the refused rows (already in results)
            for key, positions in zip(merged.keys, merged.sources, strict=True):
                row = changed.get(key)
                if row is None:
                    outcome.unchanged += 1
                elif row["created"]:
                    outcome.created += 1
                else:
                    outcome.updated += 1
                outcome.merged += len(positions) - 1
        else:
            unchanged = [key for key in merged.keys if key not in changed]
            known = await repo.ids_by_key(conn, account_id, unchanged) if unchanged else {}
            for key, positions in zip(merged.keys, merged.sources, strict=True):
                row = changed.get(key)
                if row is None:
                    status: Status = "unchanged"
                    contact_id = known.get(key)
                else:
                    status = "created" if row["created"] else "updated"
                    contact_id = row["id"]
                setattr(outcome, status, getattr(outcome, status) + 1)
                first, *later = positions
                results[first] = RowResult(prepared.first_index + first, status, contact_id)
                for position in later:
                    results[position] = RowResult(prepared.first_index + position, "merged", contact_id)
                outcome.merged += len(later)
        if changed:
            rows = list(changed.values())
            await records.records_changed(
                conn,
                account_id,
                "contact",
                [r["id"] for r in rows],
                [r["version"] for r in rows],
                {name: [r[name] for r in rows] for name in ("email", "name", "company_id")},
                now,
            )
    outcome.results = [r for r in results if r is not None]
    return outcome


async def upsert_batch(
    conn: asyncpg.Connection,
    account_id: str,
    rows: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    first_index: int = 0,
    per_row: bool = True,
) -> BatchOutcome:
    """Upsert ``rows`` (mappings of `rows.FIELDS`; at most `BATCH_LIMIT`) in the caller's
    transaction. Results are numbered from ``first_index``, one per row (``per_row=False``:
    only the refused rows', and the counts)."""
    return await apply(conn, account_id, prepare(rows, first_index=first_index), now, per_row=per_row)


async def upsert_stream(
    pool: asyncpg.Pool,
    account_id: str,
    batches: Iterator[tuple[T, Sequence[Mapping[str, Any]]]],
    clock: Callable[[], datetime],
    done: Callable[[T, BatchOutcome], None],
) -> None:
    """Many batches (an import), each in its own tenant transaction, in order: ``batches``
    yields ``(tag, rows)``; ``done(tag, outcome)`` is called after each commit. The next
    batch is read and prepared in a worker thread while the database applies the current
    one (the reading, checking and merging take about as long as the statement)."""
    loop = asyncio.get_running_loop()

    def produce() -> tuple[T, Prepared] | None:
        item = next(batches, None)
        return None if item is None else (item[0], prepare(item[1]))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="contact-import") as reader:
        pending = loop.run_in_executor(reader, produce)
        while (item := await pending) is not None:
            pending = loop.run_in_executor(reader, produce)
            tag, prepared = item
            try:
                async with tenant_tx(pool, account_id) as conn:
                    outcome = await apply(conn, account_id, prepared, clock(), per_row=False)
            except BaseException:
                with contextlib.suppress(BaseException):
                    await pending  # let the reader finish its batch before the file is closed
                raise
            done(tag, outcome)


async def upsert_contact(conn: asyncpg.Connection, account_id: str, contact: Mapping[str, Any], now: datetime) -> dict:
    """A purchase's contact (found by e-mail in any case, or created) through the same
    statement as `upsert_batch`: non-empty values replace stored ones, empty ones erase
    nothing. Never refused. Returns the whole contact row and ``created``; announcing it
    is the caller's (it may change the contact's company first)."""
    values = {name: normalize(contact.get(name)) for name in FIELDS}
    columns = {name: [value] for name, value in values.items()}
    changed = await repo.upsert_contacts(conn, account_id, [new_id("contact")], columns, now)
    row = await repo.find_by_email(conn, account_id, values["email"])
    return {**dict(row), "created": bool(changed and changed[0]["created"])}
