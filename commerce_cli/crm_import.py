"""``commerce crm import contacts FILE.csv --account ACCT``: a CSV file of contacts into
the CRM, through the same set-based upsert as the batch API
(`services.crm_sync.contacts.upserts.upsert_batch`).

- The file is streamed: one batch (``--batch-size``, default 1,000 rows) in memory at a
  time, each batch one transaction of crm_sync's runtime role (``CRM_SYNC_DATABASE_URL``,
  row-level security on the account), like the other ``commerce`` commands that work
  through a service's own code and role rather than over HTTP.
- The header names the columns: the API's contact fields (``email, firstname, lastname,
  phone, company, jobtitle, website, address, city, state, zip, country``) and common
  spellings of them (``E-mail``, ``First name``, ``Postal code``, …; `ALIASES`), or
  ``--column HEADER=FIELD``. Other columns are ignored (and named); without an e-mail
  column nothing is imported.
- Rows are checked one by one; a refused row is reported with its line number (and
  written to ``--errors FILE`` as CSV) and the others are imported.
- Re-running a file changes nothing that the first run wrote (values equal to the
  stored ones are not written), so an interrupted import is resumed by running it again.
- A progress bar on standard error (rows, rate, estimated time left; on by default when
  standard error is a terminal, a line every few seconds with ``--progress`` otherwise),
  and a summary at the end (``--json``: one JSON line).

Exit status: 0 every row imported; 1 some rows refused (the others imported); 2 nothing
done (no such file or account, no e-mail column, bad options); 3 stopped by an error
part-way (the batches before it are kept; running the file again finishes it).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

#: Normalised header (lower case, letters and digits only) -> contact field.
ALIASES: dict[str, str] = {
    **{k: "email" for k in ("email", "emailaddress", "mail", "email1")},
    **{k: "firstname" for k in ("firstname", "givenname", "first", "forename")},
    **{k: "lastname" for k in ("lastname", "surname", "familyname", "last")},
    **{k: "phone" for k in ("phone", "phonenumber", "telephone", "tel", "mobile", "mobilephone")},
    **{k: "company" for k in ("company", "companyname", "organization", "organisation")},
    **{k: "jobtitle" for k in ("jobtitle", "title", "position")},
    **{k: "website" for k in ("website", "websiteurl", "url", "web")},
    **{k: "address" for k in ("address", "streetaddress", "street", "address1")},
    **{k: "city" for k in ("city", "town")},
    **{k: "state" for k in ("state", "region", "stateregion", "province")},
    **{k: "zip" for k in ("zip", "zipcode", "postalcode", "postcode")},
    **{k: "country" for k in ("country", "countryregion")},
}
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3
SHOWN_ERRORS = 20


class UsageError(Exception):
    """Nothing can be imported (exit 2)."""


def normalise(header: str) -> str:
    return re.sub(r"[^0-9a-z]", "", header.strip().lower())


def map_columns(header: list[str], overrides: dict[str, str]) -> tuple[list[tuple[int, str]], list[str]]:
    """``([(column index, field)], ignored headers)`` for a header row. ``overrides``:
    header (as written, surrounding blanks ignored) -> field, or ``-`` to ignore it."""
    from services.crm_sync.contacts.rows import FIELDS

    for name, target in overrides.items():
        if target != "-" and target not in FIELDS:
            raise UsageError(f"--column {name}={target}: {target!r} is not a contact field ({', '.join(FIELDS)})")
    stripped = [h.strip() for h in header]
    missing = sorted(set(overrides) - set(stripped))
    if missing:
        raise UsageError(f"--column names headers the file does not have: {', '.join(missing)}")
    mapping: list[tuple[int, str]] = []
    ignored: list[str] = []
    taken: dict[str, str] = {}
    for index, name in enumerate(stripped):
        target = overrides.get(name) or ALIASES.get(normalise(name))
        if target is None or target == "-":
            ignored.append(name)
            continue
        if target in taken:
            raise UsageError(f"columns {taken[target]!r} and {name!r} both mean {target!r} (use --column to choose)")
        taken[target] = name
        mapping.append((index, target))
    if "email" not in taken:
        raise UsageError("no e-mail column in the header (name one with --column HEADER=email)")
    return mapping, ignored


# -- reading ---------------------------------------------------------------------------------------
@dataclass
class Batch:
    rows: list[dict[str, Any]]
    lines: list[int]  # the line each row starts on
    #: rows refused before the upsert (malformed lines): (line, errors)
    malformed: list[tuple[int, list[dict[str, str]]]] = field(default_factory=list)


def read_batches(text: IO[str], mapping: list[tuple[int, str]], width: int, size: int, reader: Any) -> Iterator[Batch]:
    """Batches of ``size`` rows from ``reader`` (a csv reader past the header)."""
    batch = Batch([], [])
    line = reader.line_num + 1
    for cells in reader:
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            line = reader.line_num + 1
            continue  # a blank line
        if len(cells) > width:
            message = f"has {len(cells)} cells where the header has {width}"
            batch.malformed.append((line, [{"field": "line", "message": message}]))
        else:
            batch.rows.append({name: cells[i] if i < len(cells) else None for i, name in mapping})
            batch.lines.append(line)
        line = reader.line_num + 1
        if len(batch.rows) + len(batch.malformed) >= size:
            yield batch
            batch = Batch([], [])
    if batch.rows or batch.malformed:
        yield batch


# -- progress ---------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on a terminal (redrawn at most 5 times a second), or a plain
    line every ``interval`` seconds elsewhere. Hand-written: rows, rate and ETA are all it
    shows, and the project has no progress-bar dependency."""

    def __init__(self, stream: IO[str], total_bytes: int, *, enabled: bool, terminal: bool, interval: float = 5.0):
        self.stream, self.total, self.enabled, self.terminal = stream, total_bytes, enabled, terminal
        self.interval = 0.2 if terminal else interval
        self.start()

    def start(self) -> None:
        self.started = self.last = time.monotonic()

    def update(self, rows: int, position: int, *, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self.last < self.interval:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        fraction = min(position / self.total, 1.0) if self.total else 1.0
        rate = rows / elapsed
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        bar = "#" * int(fraction * 30)
        text = (
            f"[{bar:<30}] {fraction:4.0%}  {rows:,} rows  {rate:,.0f} rows/s  "
            f"{'done in ' + _clock(elapsed) if final else 'ETA ' + _clock(eta)}"
        )
        if self.terminal:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# -- the import -------------------------------------------------------------------------------------
@dataclass
class Summary:
    file: str
    account_id: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    refused: int = 0
    seconds: float = 0.0
    ignored_columns: list[str] = field(default_factory=list)
    stopped: str | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class ErrorLog:
    """Refused rows: the first few on standard error, all of them in ``--errors FILE``."""

    def __init__(self, path: str | None) -> None:
        self.count = 0
        self.file = open(path, "w", newline="", encoding="utf-8") if path else None
        self.writer = csv.writer(self.file) if self.file else None
        if self.writer:
            self.writer.writerow(["line", "field", "message"])

    def add(self, line: int, errors: list[dict[str, str]]) -> None:
        self.count += 1
        if self.count <= SHOWN_ERRORS:
            text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            print(f"line {line}: refused — {text}", file=sys.stderr)
        if self.writer:
            for e in errors:
                self.writer.writerow([line, e["field"], e["message"]])

    def close(self) -> None:
        if self.count > SHOWN_ERRORS:
            print(f"… and {self.count - SHOWN_ERRORS:,} more refused rows", file=sys.stderr)
        if self.file:
            self.file.close()


async def run_import(
    path: str,
    account_id: str,
    *,
    dsn: str,
    batch_size: int,
    overrides: dict[str, str],
    encoding: str,
    delimiter: str,
    progress: Progress | None,
    errors: ErrorLog,
) -> Summary:
    import asyncpg

    from services.crm_sync.contacts import upserts
    from shared.accounts import load_account
    from shared.db import create_pool, tenant_tx

    summary = Summary(file=path, account_id=account_id)
    if not 1 <= batch_size <= upserts.BATCH_LIMIT:
        raise UsageError(f"--batch-size must be between 1 and {upserts.BATCH_LIMIT}")
    try:
        raw = open(path, "rb")  # noqa: ASYNC230 (streamed line by line below)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        pool = await create_pool(
            dsn, application_name="commerce-crm-import", min_size=1, max_size=1, statement_timeout_ms=120_000
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raw.close()
        raise UsageError(f"cannot connect to crm_sync's database (CRM_SYNC_DATABASE_URL): {exc}") from None
    try:
        async with tenant_tx(pool, account_id) as conn:
            account = await load_account(conn, "crm_sync", account_id)
        if account is None:
            raise UsageError(f"crm_sync knows no account {account_id} (created? are crm_sync's workers running?)")
        text = io.TextIOWrapper(raw, encoding=encoding, newline="")
        reader = csv.reader(text, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise UsageError(f"{path} is empty (a header row is needed)")
        mapping, summary.ignored_columns = map_columns(header, overrides)
        if summary.ignored_columns:
            print(f"ignored columns: {', '.join(summary.ignored_columns)}", file=sys.stderr)
        started = time.monotonic()
        if progress:
            progress.start()

        def done(batch: Batch, outcome: upserts.BatchOutcome) -> None:
            refused = [(batch.lines[r.index], r.errors or []) for r in outcome.results if r.status == "failed"]
            for line, row_errors in sorted(batch.malformed + refused, key=lambda item: item[0]):
                errors.add(line, row_errors)
            summary.created += outcome.created
            summary.updated += outcome.updated
            summary.unchanged += outcome.unchanged
            summary.merged += outcome.merged
            summary.refused += outcome.failed + len(batch.malformed)
            summary.rows += len(batch.rows) + len(batch.malformed)
            if progress:
                progress.update(summary.rows, raw.tell())

        batches = ((b, b.rows) for b in read_batches(text, mapping, len(header), batch_size, reader))
        try:
            await upserts.upsert_stream(pool, account_id, batches, account.clock.now, done)
        except (UnicodeDecodeError, csv.Error) as exc:
            summary.stopped = f"line {reader.line_num + 1}: {exc} (is --encoding / --delimiter right?)"
        except Exception as exc:  # a database error, a lost connection: the batches before it are kept
            summary.stopped = f"{type(exc).__name__}: {exc}"
        summary.seconds = time.monotonic() - started
        if progress:
            progress.update(summary.rows, raw.tell() if not raw.closed else 0, final=True)
        return summary
    finally:
        raw.close()
        await pool.close()


def print_summary(summary: Summary, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**asdict(summary), "rows_per_second": round(summary.rate)}))
        return
    print(f"{summary.file}: {summary.rows:,} rows in {summary.seconds:.1f} s ({summary.rate:,.0f} rows/s)")
    for label, value, note in (
        ("created", summary.created, ""),
        ("updated", summary.updated, ""),
        ("unchanged", summary.unchanged, "(nothing new: not written)"),
        ("merged", summary.merged, "(rows repeating an e-mail address of their batch)"),
        ("refused", summary.refused, ""),
    ):
        print(f"  {label:<10}{value:>12,}  {note}".rstrip())
    if summary.stopped:
        print(f"stopped: {summary.stopped} — the rows before it are imported; run the same file again to finish")


def command(args: Any) -> int:
    """``commerce crm import contacts`` (argparse namespace in, exit status out)."""
    from services.crm_sync.settings import CrmSettings

    overrides: dict[str, str] = {}
    for spec in args.column or []:
        name, sep, target = spec.partition("=")
        if not sep or not name.strip():
            print(f"commerce: --column {spec!r}: write HEADER=FIELD", file=sys.stderr)
            return EXIT_USAGE
        overrides[name.strip()] = target.strip().lower()
    if len(args.delimiter) != 1:
        print("commerce: --delimiter is one character", file=sys.stderr)
        return EXIT_USAGE
    terminal = sys.stderr.isatty()
    enabled = terminal if args.progress is None else args.progress
    size = os.path.getsize(args.file) if Path(args.file).is_file() else 0
    progress = Progress(sys.stderr, size, enabled=enabled, terminal=terminal)
    errors = ErrorLog(args.errors)
    try:
        summary = asyncio.run(
            run_import(
                args.file,
                args.account,
                dsn=CrmSettings().database_url,
                batch_size=args.batch_size,
                overrides=overrides,
                encoding=args.encoding,
                delimiter=args.delimiter,
                progress=progress,
                errors=errors,
            )
        )
    except UsageError as exc:
        print(f"commerce: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ncommerce: interrupted — the batches written so far are kept; run the same file again to finish")
        return EXIT_STOPPED
    finally:
        errors.close()
    print_summary(summary, as_json=args.json)
    if summary.stopped:
        return EXIT_STOPPED
    return EXIT_REFUSED if summary.refused else EXIT_OK
