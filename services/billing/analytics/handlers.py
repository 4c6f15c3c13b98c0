"""HTTP: /v1/analytics/subscriptions and /v1/analytics/dunning_dry_run."""

from __future__ import annotations

from aiohttp import web

from shared.accounts import load_account
from shared.web.auth import require
from shared.web.openapi import operation
from shared.web.problem import ServiceUnavailable
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from . import service
from .schemas import AnalyticsOut, AnalyticsQuery, DryRunIn, DryRunOut

routes = web.RouteTableDef()


async def _account(conn, account_id: str):
    account = await load_account(conn, "billing", account_id)
    if account is None:  # the account's first snapshot has not arrived yet
        raise ServiceUnavailable("This account is not known to billing yet; retry shortly.")
    return account


@routes.get("/v1/analytics/subscriptions")
@operation("Subscription analytics", scope="subscriptions:read", query=AnalyticsQuery, response=AnalyticsOut)
async def subscription_analytics(request: web.Request) -> web.Response:
    """MRR, ARR and active subscriptions now; new and churned subscriptions, failed and
    recovered payments and renewal revenue in the period (account-local dates, default
    the current month); one currency per call (default the account's)."""
    ctx = require(request, "subscriptions:read")
    q = parse_query(request, AnalyticsQuery)
    async with request_tx(request) as conn:
        account = await _account(conn, ctx.account_id)
        body = await service.subscription_analytics(conn, account, q)
    return web.json_response(body)


@routes.post("/v1/analytics/dunning_dry_run")
@operation(
    "Dry-run a retry policy on past failures",
    scope="subscriptions:read",
    body=DryRunIn,
    body_optional=True,
    example={"retry_policy": {"retry_schedule_days": [2, 5, 10], "after_final_failure": "unpaid"}},
    response=DryRunOut,
)
async def dunning_dry_run(request: web.Request) -> web.Response:
    """What the policy would have done with the account's failed subscription charges
    (nothing is changed; decision 25). Keys of ``retry_policy`` left out are the
    account's current settings."""
    ctx = require(request, "subscriptions:read")
    body = await parse_body(request, DryRunIn, allow_empty=True)
    async with request_tx(request) as conn:
        account = await _account(conn, ctx.account_id)
        result = await service.dunning_dry_run(conn, account, body)
    return web.json_response(result)
