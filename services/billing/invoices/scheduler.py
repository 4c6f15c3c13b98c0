"""Issuing invoices on their payment dates — set-based, like the charge scheduler.

A pass, in one transaction per batch:
1. lock the subscriptions with a payment date to invoice (``FOR UPDATE SKIP LOCKED``:
   any number of schedulers, and the test-clock hook, may run at once);
2. work out every due period of each (a test-clock jump may make several due), its
   lines and totals, in Python (pure, `amounts.py`);
3. take the numbers of every account in one statement (`repository.take_numbers`) —
   issue order is the payment date, so numbers follow the calendar;
4. insert every invoice in one statement, advance every subscription in one statement,
   and write the ``invoice.updated`` / ``subscription.updated`` events in one statement.

Then open invoices past their due date are marked overdue, once each, with their
``invoice.updated`` snapshots (`overdue_batch`, decision 83).

A failure anywhere rolls the whole batch back, numbers included: no gaps. Issuing is
treated like a charge for the schedule (next index and date move on, a ``scheduled``
subscription becomes ``active``); ``payments_made`` counts when an invoice is paid
(`service.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.config import CommonSettings
from shared.ids import new_id
from shared.logging import get_logger
from shared.outbox import publish_many

from ..subscriptions.service import snapshot
from . import amounts
from . import repository as repo
from .events import invoice_event
from .numbering import assign, counts_by_account, default_prefix
from .tokens import invoice_token_hash

log = get_logger(__name__)
BATCH = 500


@dataclass(frozen=True, slots=True)
class IssueResult:
    issued: int
    subscriptions: int
    #: A full batch, or a subscription with more due periods than one pass issues.
    more: bool = False


def _invoice_rows(settings: CommonSettings, sub: Any, due: amounts.DuePeriods) -> list[dict[str, Any]]:
    """The invoices of one subscription's due periods, without their numbers."""
    chosen = amounts.resolve_settings(sub["invoice_settings"], sub["account_settings"])
    rows = []
    for period in due.periods:
        lines, totals = amounts.invoice_lines(amounts.lines_for(sub, period.index), period)
        invoice_id = new_id("inv")
        rows.append(
            {
                "id": invoice_id,
                "account_id": sub["account_id"],
                "subscription_id": sub["id"],
                "period_index": period.index,
                "issue_date": period.start.isoformat(),
                "due_date": amounts.due_date(period.start, sub["payment_terms_days"]).isoformat(),
                "payment_terms_days": sub["payment_terms_days"] or 0,
                "currency": sub["currency"],
                "lines": lines,
                "subtotal": totals.subtotal,
                "discount": totals.discount,
                "tax": totals.tax,
                "total": totals.total,
                "token_hash": invoice_token_hash(settings, invoice_id, 1).hex(),
                "language": chosen.language,
                "locale": chosen.locale,
                "comments": chosen.comments,
                "tax_ids": chosen.tax_ids,
                "email": sub["email"],
                "contact": sub["contact"],
                "contact_id": sub["contact_id"],
                "company_id": sub["company_id"],
                "billing_address": sub["billing_address"],
                "payment_settings": chosen.payment_settings(),
                "collect_payment_method": sub["collection_method"] == "charge_automatically",
                "test_mode": sub["test_mode"],
                "terms": {
                    "interval": sub["interval"],
                    "payments_total": sub["payments_total"],
                    "start_date": sub["start_date"].isoformat(),
                    "end_date": sub["end_date"].isoformat() if sub["end_date"] else None,
                },
                "at": sub["account_now"].isoformat(),
            }
        )
    return rows


async def issue_batch(
    conn: asyncpg.Connection, settings: CommonSettings, *, account_id: str | None = None, limit: int = BATCH
) -> IssueResult:
    """One batch, inside the caller's transaction (the scheduler's, or the test-clock
    hook's tenant transaction)."""
    subs = await repo.due_subscriptions(conn, account_id=account_id, limit=limit)
    invoices: list[dict[str, Any]] = []
    advances: list[dict[str, Any]] = []
    previous: dict[str, str] = {}
    more = len(subs) >= limit
    for sub in subs:
        due = amounts.due_periods(
            anchor=sub["start_date"],
            interval=sub["interval"],
            next_index=sub["next_index"],
            today=sub["account_today"],
            payments_total=sub["payments_total"],
            end_date=sub["end_date"],
            issued=sub["invoices_issued"],
        )
        if not due.periods:  # (next_payment_date past the terms: nothing to invoice, stop looking)
            log.warning("due subscription has no period to invoice", subscription_id=sub["id"])
        invoices += _invoice_rows(settings, sub, due)
        more = more or len(due.periods) >= amounts.MAX_PERIODS_PER_PASS
        previous[sub["id"]] = sub["status"]
        advances.append(
            {
                "id": sub["id"],
                "next_index": due.next_index,
                "next_payment_date": due.next_payment_date.isoformat() if due.next_payment_date else None,
                "status": "active" if sub["status"] == "scheduled" else sub["status"],
                "at": sub["account_now"].isoformat(),
            }
        )
    if not subs:
        return IssueResult(0, 0)
    # Issue order: by payment date, then subscription — numbers follow the calendar.
    invoices.sort(key=lambda r: (r["issue_date"], r["subscription_id"], r["period_index"]))
    counts = counts_by_account(r["account_id"] for r in invoices)
    if counts:
        taken = await repo.take_numbers(conn, {a: (default_prefix(a), n) for a, n in counts.items()})
        for row, (sequence, number) in zip(invoices, assign([r["account_id"] for r in invoices], taken), strict=True):
            row["sequence"], row["number"] = sequence, number
    inserted = await repo.insert_invoices(conn, invoices) if invoices else []
    advanced = await repo.advance_subscriptions(conn, advances)
    inserted.sort(key=lambda r: r["sequence"])
    await publish_many(
        conn,
        schema="billing",
        producer="billing",
        events=[(r["account_id"], invoice_event(settings, r, None), r["issued_at"]) for r in inserted]
        + [(r["account_id"], snapshot(r, previous[r["id"]]), r["updated_at"]) for r in advanced],
    )
    if inserted:
        log.info("invoices issued", count=len(inserted), subscriptions=len(subs))
    return IssueResult(len(inserted), len(subs), more)


async def overdue_batch(
    conn: asyncpg.Connection, settings: CommonSettings, *, account_id: str | None = None, limit: int = BATCH
) -> int:
    """Mark open invoices past their due date overdue — once each, in one statement — and
    write their ``invoice.updated`` snapshots in the same transaction (the caller's)."""
    marked = await repo.mark_overdue(conn, account_id=account_id, limit=limit)
    if marked:
        await publish_many(
            conn,
            schema="billing",
            producer="billing",
            events=[(r["account_id"], invoice_event(settings, r, r["status"]), r["overdue_at"]) for r in marked],
        )
        log.info("invoices overdue", count=len(marked))
    return len(marked)


async def issue_due(
    conn: asyncpg.Connection, settings: CommonSettings, *, account_id: str | None = None, limit: int = BATCH
) -> int:
    """Every invoice due (for one account, or all), in the caller's transaction: batches
    until one comes back short (a subscription advanced by a batch is not due again
    unless a long jump left more than a batch's worth of periods); then the invoices
    that became overdue."""
    issued = 0
    for _ in range(1000):
        result = await issue_batch(conn, settings, account_id=account_id, limit=limit)
        issued += result.issued
        if not result.more:
            break
    for _ in range(1000):
        if await overdue_batch(conn, settings, account_id=account_id, limit=limit) < limit:
            break
    return issued


async def run_pass(pool: asyncpg.Pool, settings: CommonSettings, *, batch: int = BATCH) -> int:
    """The scheduler process's pass over every account: a transaction per batch, issuing
    and then marking overdue. A bug here must not stop the charges that run after it in
    the same loop: anything but a database or network error is logged and the pass ends
    (its batch rolled back)."""
    issued = 0
    try:
        while True:
            async with pool.acquire() as conn, conn.transaction():
                result = await issue_batch(conn, settings, limit=batch)
            issued += result.issued
            if not result.more:
                break
        while True:
            async with pool.acquire() as conn, conn.transaction():
                if await overdue_batch(conn, settings, limit=batch) < batch:
                    break
    except (OSError, asyncpg.PostgresError):
        raise
    except Exception as exc:
        log.error("issuing invoices failed", error=repr(exc))
    return issued
