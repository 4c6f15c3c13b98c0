"""HTTP: /v1/quotes (the merchant's), /quotes/{token} (the buyer's page) and
/api/quotes/{token}/checkout (its Check out buttons)."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from shared.accounts import load_account
from shared.db import tenant_tx
from shared.ids import token_hash
from shared.locale_format import day
from shared.pricing import line_amount
from shared.web.auth import require
from shared.web.keys import APP_POOL, SETTINGS
from shared.web.openapi import Html, ListOf, Redirect, operation
from shared.web.pagination import list_page
from shared.web.problem import NotFound, Problem
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from ..sessions import sources
from . import repository as repo
from . import service
from .schemas import ConvertIn, QuoteCheckoutOut, QuoteCreate, QuoteList, QuoteOut, QuoteUpdate, quote_out

routes = web.RouteTableDef()
S = "checkout"

INTERVALS = {
    "weekly": "week",
    "biweekly": "2 weeks",
    "monthly": "month",
    "quarterly": "quarter",
    "semiannually": "6 months",
    "annually": "year",
    "every_2_years": "2 years",
    "every_3_years": "3 years",
    "every_4_years": "4 years",
    "every_5_years": "5 years",
}
EXAMPLE = {
    "title": "Website care, 2027",
    "currency": "USD",
    "deal_id": "deal_01example",
    "contact_id": "contact_01example",
    "owner_email": "owner@example.com",
    "expires_on": "2027-03-31",
    "line_items": [
        {"name": "Set-up", "quantity": 1, "unit_amount": 50000},
        {"name": "Care plan", "quantity": 1, "unit_amount": 9900, "recurring": {"interval": "monthly", "payments": 12}},
    ],
}


def _out(request: web.Request, row, account) -> dict:
    settings = request.app[SETTINGS].common
    return quote_out(
        row,
        url=service.page_url(settings, row["id"]),
        status=service.status_of(row, service.local_today(account)),
        summary=service.published_summary(row, account),
    )


async def _quote(conn, account_id: str, request: web.Request, *, lock: bool = False):
    row = await repo.get_quote(conn, account_id, request.match_info["quote_id"], lock=lock)
    if row is None:
        raise NotFound("No such quote.")
    return row


@routes.post("/v1/quotes")
@operation("Create a quote", scope="quotes:write", body=QuoteCreate, example=EXAMPLE, status=201, response=QuoteOut)
async def create_quote(request: web.Request) -> web.Response:
    ctx = require(request, "quotes:write")
    body = await parse_body(request, QuoteCreate)
    async with request_tx(request) as conn:
        account = await load_account(conn, S, ctx.account_id)
        row = await service.create(conn, account, request.app[SETTINGS].common, body)
    return web.json_response(_out(request, row, account), status=201)


@routes.get("/v1/quotes")
@operation("List quotes", scope="quotes:read", query=QuoteList, response=ListOf(QuoteOut))
async def list_quotes(request: web.Request) -> web.Response:
    ctx = require(request, "quotes:read")
    q = parse_query(request, QuoteList)
    async with request_tx(request) as conn:
        account = await load_account(conn, S, ctx.account_id)
        rows = await repo.list_quotes(
            conn,
            ctx.account_id,
            status=q.status,
            today_expired_before=service.local_today(account),
            deal_id=q.deal_id,
            contact_id=q.contact_id,
            limit=q.fetch_limit,
            starting_after=q.starting_after,
        )
    return list_page(rows, q, lambda row: _out(request, row, account))


@routes.get("/v1/quotes/{quote_id}")
@operation("Get a quote", scope="quotes:read", response=QuoteOut)
async def get_quote(request: web.Request) -> web.Response:
    ctx = require(request, "quotes:read")
    async with request_tx(request) as conn:
        account = await load_account(conn, S, ctx.account_id)
        row = await _quote(conn, ctx.account_id, request)
    return web.json_response(_out(request, row, account))


@routes.patch("/v1/quotes/{quote_id}")
@operation(
    "Change a draft quote",
    scope="quotes:write",
    body=QuoteUpdate,
    example={"title": "Website care, 2027 (revised)", "expires_on": "2027-04-30"},
    response=QuoteOut,
    errors=(409,),
)
async def update_quote(request: web.Request) -> web.Response:
    ctx = require(request, "quotes:write")
    body = await parse_body(request, QuoteUpdate)
    async with request_tx(request) as conn:
        account = await load_account(conn, S, ctx.account_id)
        row = await service.update(conn, account, await _quote(conn, ctx.account_id, request, lock=True), body)
    return web.json_response(_out(request, row, account))


@routes.post("/v1/quotes/{quote_id}/publish")
@operation("Publish a quote (its page goes live)", scope="quotes:write", response=QuoteOut, errors=(409,))
async def publish_quote(request: web.Request) -> web.Response:
    ctx = require(request, "quotes:write")
    async with request_tx(request) as conn:
        account = await load_account(conn, S, ctx.account_id)
        row = await _quote(conn, ctx.account_id, request, lock=True)
        row = await service.publish(conn, account, request.app[SETTINGS].common, row)
    return web.json_response(_out(request, row, account))


@routes.post("/v1/quotes/{quote_id}/recall")
@operation("Recall a published quote for editing", scope="quotes:write", response=QuoteOut, errors=(409,))
async def recall_quote(request: web.Request) -> web.Response:
    ctx = require(request, "quotes:write")
    async with request_tx(request) as conn:
        account = await load_account(conn, S, ctx.account_id)
        row = await service.recall(conn, account, await _quote(conn, ctx.account_id, request, lock=True))
    return web.json_response(_out(request, row, account))


@routes.post("/v1/quotes/{quote_id}/convert_to_subscription")
@operation(
    "Turn a published quote's recurring items into subscriptions (manual collection)",
    scope="quotes:write",
    body=ConvertIn,
    example={"collection_method": "send_invoice", "payment_terms_days": 30},
    response=QuoteOut,
    errors=(409,),
)
async def convert_quote(request: web.Request) -> web.Response:
    ctx = require(request, "quotes:write")
    body = await parse_body(request, ConvertIn)
    async with request_tx(request) as conn:
        account = await load_account(conn, S, ctx.account_id)
        row = await service.convert(conn, account, await _quote(conn, ctx.account_id, request, lock=True), body)
    return web.json_response(_out(request, row, account))


# -- the buyer's side -----------------------------------------------------------------------------
def _terms(recurring: dict | None) -> str | None:
    if not recurring:
        return None
    every = INTERVALS.get(recurring["interval"], recurring["interval"])
    text = f"Every {every}"
    if recurring.get("payments"):
        text += f", {recurring['payments']} payments"
    elif recurring.get("end_date"):
        text += f", until {recurring['end_date']}"
    start = recurring.get("start") or {}
    if start.get("date"):
        text += f", from {start['date']}"
    elif start.get("delay_days"):
        text += f", starting {start['delay_days']} days after checkout"
    elif start.get("delay_months"):
        text += f", starting {start['delay_months']} months after checkout"
    return text


def _page_context(request: web.Request, row, account, token: str) -> dict:
    from ..sessions.handlers import _money_filter

    money = _money_filter(request)
    locale = account.settings.language
    published = row["published"]
    currency = published["currency"]
    summary = service.published_summary(row, account)
    by_id = {line["line_item_id"]: line for line in (summary or {}).get("lines", [])}
    lines = []
    for li in published["line_items"]:
        priced = by_id.get(li["id"], {})
        rate = li.get("tax_rate")
        lines.append(
            {
                "name": li["name"],
                "description": li.get("description"),
                "terms": _terms(li.get("recurring")),
                "quantity": li["quantity"],
                "unit_price": money(li["unit_amount"], currency, locale),
                "unit_discount": money(priced["unit_discount"], currency, locale)
                if priced.get("unit_discount")
                else None,
                "amount": money(
                    priced.get("amount", line_amount(li["unit_amount"], li["quantity"], None)[1]), currency, locale
                ),
                "tax_name": rate["name"] if rate else None,
                "tax_percentage": rate["percentage"] if rate else None,
            }
        )
    today = service.local_today(account)
    if row["status"] == "paid":
        state = "paid"
    elif row["status"] == "draft":
        state = "revising"
    elif service.is_expired(row, today):
        state = "expired"
    elif row["converted_at"] is not None:
        state = "converted"
    else:
        state = "open"
    tz = ZoneInfo(account.settings.time_zone)
    return {
        "locale": locale,
        "merchant": account.name,
        "quote": {"title": published["title"]},
        "token": token,
        "state": state,
        "version": row["published_version"],
        "expires_on": day(date.fromisoformat(published["expires_on"]), locale),
        "paid_on": day(row["paid_at"].astimezone(tz).date(), locale) if row["paid_at"] else None,
        "comments": published.get("comments"),
        "lines": lines,
        "summary": {
            "subtotal": money(summary["subtotal_due_now"], currency, locale),
            "discounts": [
                {"name": d["name"], "amount": money(d["amount"], currency, locale)}
                for d in summary["discounts_due_now"]
            ],
            "tax": money(summary["tax_due_now"], currency, locale),
            "total": money(summary["total_due_now"], currency, locale),
            "future": [
                {"date": day(date.fromisoformat(p["date"]), locale), "amount": money(p["amount"], currency, locale)}
                for p in summary["future_payments"]
            ],
        }
        if summary and state in ("open", "expired", "revising")
        else None,
    }


async def _resolve(request: web.Request, token: str):
    found = await repo.resolve_token(request.app[APP_POOL], token_hash(token))
    if found is None:
        raise NotFound("This quote does not exist.")
    return found


@routes.get("/quotes/{token}")
@operation("The buyer's page of a published quote", response=Html(), html_errors=True)
async def quote_page(request: web.Request) -> web.Response:
    from ..sessions.handlers import _message_page, _page

    token = request.match_info["token"]
    try:
        found = await _resolve(request, token)
    except Problem as problem:
        return _message_page(request, problem)
    async with tenant_tx(request.app[APP_POOL], found["account_id"]) as conn:
        account = await load_account(conn, S, found["account_id"])
        row = await repo.get_quote(conn, found["account_id"], found["quote_id"])
    if row is None or account is None:
        return _message_page(request, NotFound("This quote does not exist."))
    context = _page_context(request, row, account, token)
    return _page(request, "quote.html", headers={"Cache-Control": "no-store"}, **context)


async def _checkout(request: web.Request, token: str) -> str:
    found = await _resolve(request, token)
    settings = request.app[SETTINGS]
    async with tenant_tx(request.app[APP_POOL], found["account_id"]) as conn:
        account = await load_account(conn, S, found["account_id"])
        row = await repo.get_quote(conn, found["account_id"], found["quote_id"], lock=True)
        if row is None or account is None:
            raise NotFound("This quote does not exist.")
        return await service.checkout_session_for(
            conn, account, settings.common, row, timedelta(hours=settings.session_ttl_hours)
        )


@routes.post("/api/quotes/{token}/checkout")
@operation(
    "Open a checkout session to pay a quote",
    status=201,
    response=QuoteCheckoutOut,
    responses={303: Redirect("A form post (the quote page's buttons): to /checkout/{session_token}")},
    errors=(409, 410),
)
async def quote_checkout(request: web.Request) -> web.Response:
    """201 ``{session_token, url}``; the page's buttons post a form and are sent to the
    checkout page (303). 410 once the quote has expired, 409 once it is paid."""
    return await sources.pay_button(request, lambda: _checkout(request, request.match_info["token"]))
