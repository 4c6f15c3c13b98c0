"""Subscription analytics (PRODUCT §6.7) and the dunning dry run (decision 25), per
account, computed from billing's own tables on the account's clock and time zone."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from shared.accounts import Account
from shared.clock import day_start, rfc3339
from shared.money import UnknownCurrency, normalize_currency
from shared.web.problem import ValidationProblem, field_error

from ..dunning import policy as dunning
from . import metrics
from . import repository as repo
from .schemas import AnalyticsQuery, DryRunIn


def _currency(value: str | None, default: str) -> str:
    try:
        return normalize_currency(value) if value is not None else default
    except UnknownCurrency:
        raise field_error("currency", "is not an ISO 4217 currency code") from None


def _month_of(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def _totals(rows: list[asyncpg.Record]) -> tuple[int, int]:
    """(count, MRR) of grouped (interval, subtotal, n) rows."""
    exact = metrics.exact_monthly((r["interval"], r["subtotal"]) for r in rows)
    return sum(r["n"] for r in rows), metrics.mrr(exact)


async def subscription_analytics(conn: asyncpg.Connection, account: Account, q: AnalyticsQuery) -> dict[str, Any]:
    currency = _currency(q.currency, account.settings.default_currency)
    tz = ZoneInfo(account.settings.time_zone)
    now = account.clock.now()
    month = _month_of(now.astimezone(tz).date())
    start = q.from_ or (month[0] if q.to is None else q.to.replace(day=1))
    end = q.to or (month[1] if q.from_ is None else _month_of(start)[1])
    if start > end:
        raise field_error("to", "must not be before from (the default is the end of from's month)")
    lo, hi = day_start(start, tz), day_start(end + timedelta(days=1), tz)

    live = await repo.live_amounts(conn, account.id, currency)
    exact = metrics.exact_monthly((r["interval"], r["subtotal"]) for r in live)
    new, new_mrr = _totals(await repo.created_between(conn, account.id, currency, lo, hi))
    churned, churned_mrr = _totals(await repo.canceled_between(conn, account.id, currency, lo, hi))
    payments = await repo.payment_outcomes(conn, account.id, currency, lo, hi)
    return {
        "object": "subscription_analytics",
        "currency": currency,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "as_of": rfc3339(now),
        "mrr": metrics.mrr(exact),
        "arr": metrics.arr(exact),
        "active": sum(r["n"] for r in live),
        "new": new,
        "new_mrr": new_mrr,
        "churned": churned,
        "churned_mrr": churned_mrr,
        "failed_payments": payments["failed"],
        "recovered_payments": payments["recovered"],
        "recovery_rate": metrics.rate_percent(payments["recovered"], payments["failed"]),
        "renewal_revenue": payments["revenue"],
    }


def _policy(account: Account, body: DryRunIn) -> dunning.RetryPolicy:
    current = account.settings.subscription_settings.model_dump()
    given = body.retry_policy.model_dump(exclude_unset=True)
    merged = {k: current[k] for k in ("retry_schedule_days", "retry_schedule_by_method", "after_final_failure")}
    merged.update({k: v for k, v in given.items() if v is not None})
    try:
        return dunning.RetryPolicy.from_json(merged, field_prefix="retry_policy.")
    except dunning.InvalidRetryPolicy as exc:
        raise ValidationProblem(exc.errors) from None


async def dunning_dry_run(conn: asyncpg.Connection, account: Account, body: DryRunIn) -> dict[str, Any]:
    """What a retry policy would have done with the account's past failed charges."""
    policy = _policy(account, body)
    currency = _currency(body.currency, "") if body.currency is not None else None
    tz = ZoneInfo(account.settings.time_zone)
    rows = await repo.past_failures(
        conn,
        account.id,
        currency=currency,
        due_from=body.from_,
        due_to=body.to,
        limit=dunning.MAX_DRY_RUN_FAILURES + 1,
    )
    truncated = len(rows) > dunning.MAX_DRY_RUN_FAILURES
    rows = rows[: dunning.MAX_DRY_RUN_FAILURES]
    failures, by_key = [], {}
    for row in rows:
        succeeded = row["succeeded_at"]
        if succeeded is not None and succeeded <= day_start(row["due_date"], tz):
            succeeded = None  # (cannot happen on one clock; the simulation refuses it)
        failures.append(
            dunning.PastFailure(
                key=row["charge_id"],
                due_date=row["due_date"],
                method_type=row["method_type"] or "card",
                decline_code=row["decline_code"],
                succeeded_at=succeeded,
            )
        )
        by_key[row["charge_id"]] = row
    now = account.clock.now()
    try:
        report = dunning.dry_run(policy, failures, tz, as_of=now)
    except dunning.InvalidDryRun as exc:
        raise ValidationProblem(exc.errors) from None
    out = report.to_json()
    results = []
    for result in out["results"]:
        row = by_key[result["key"]]
        refs = {"charge_id": row["charge_id"], "subscription_id": row["subscription_id"], "currency": row["currency"]}
        results.append({**result, **refs})
    return {
        "object": "dunning_dry_run",
        "retry_policy": out["retry_policy"],
        "as_of": rfc3339(now),
        "truncated": truncated,
        "summary": out["summary"],
        "results": results,
    }
