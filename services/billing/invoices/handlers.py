"""HTTP: /v1/invoices (admin) and /invoices/{token} (the buyer's page).

Paying happens in checkout (``POST /api/invoices/{token}/checkout``, routed there by the
gateway): the page's button posts to it as a form and is redirected to the checkout.
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from aiohttp import web

from shared.accounts import Account, load_account
from shared.db import tenant_tx
from shared.ids import token_hash
from shared.web.auth import require
from shared.web.keys import APP_POOL, SETTINGS
from shared.web.openapi import Html, ListOf, operation
from shared.web.pagination import list_page
from shared.web.problem import NotFound
from shared.web.request import parse_query
from shared.web.tx import request_tx

from ..subscriptions import repository as subs_repo
from . import amounts, document, service
from . import repository as repo
from .schemas import DocumentQuery, InvoiceList, InvoiceOut, invoice_out

routes = web.RouteTableDef()
SCHEMA = "billing"


def _today(account: Account) -> date:
    return account.clock.now().astimezone(ZoneInfo(account.settings.time_zone)).date()


async def _account(conn, account_id: str) -> Account:
    account = await load_account(conn, SCHEMA, account_id)
    if account is None:
        raise NotFound("No such account.")
    return account


def _out(request: web.Request, row, today: date) -> dict:
    return invoice_out(
        request.app[SETTINGS].common, row, overdue=amounts.is_overdue(row["status"], row["due_date"], today)
    )


@routes.get("/v1/invoices")
@operation("List invoices", scope="subscriptions:read", query=InvoiceList, response=ListOf(InvoiceOut))
async def list_invoices(request: web.Request) -> web.Response:
    """Newest first; ``subscription_id`` and ``status`` filter. ``overdue`` is computed on
    read (open and past the due date on the account's clock); ``status`` stays ``open``."""
    ctx = require(request, "subscriptions:read")
    q = parse_query(request, InvoiceList)
    async with request_tx(request) as conn:
        today = _today(await _account(conn, ctx.account_id))
        rows = await repo.list_invoices(
            conn,
            ctx.account_id,
            subscription_id=q.subscription_id,
            status=q.status,
            limit=q.fetch_limit,
            starting_after=q.starting_after,
        )
    return list_page(rows, q, lambda row: _out(request, row, today))


@routes.get("/v1/invoices/{invoice_id}")
@operation("Get an invoice", scope="subscriptions:read", response=InvoiceOut)
async def get_invoice(request: web.Request) -> web.Response:
    ctx = require(request, "subscriptions:read")
    async with request_tx(request) as conn:
        today = _today(await _account(conn, ctx.account_id))
        row = await repo.get(conn, ctx.account_id, request.match_info["invoice_id"])
    if row is None:
        raise NotFound("No such invoice.")
    return web.json_response(_out(request, row, today))


async def _transition(request: web.Request, action) -> web.Response:
    ctx = require(request, "subscriptions:write")
    async with request_tx(request) as conn:
        account = await _account(conn, ctx.account_id)
        row = await action(
            conn, request.app[SETTINGS].common, ctx.account_id, request.match_info["invoice_id"], account.clock.now()
        )
        out = _out(request, row, _today(account))
    return web.json_response(out)


@routes.post("/v1/invoices/{invoice_id}/void")
@operation("Void an invoice", scope="subscriptions:write", response=InvoiceOut, errors=(409,))
async def void_invoice(request: web.Request) -> web.Response:
    """An open or uncollectible invoice is cancelled and can no longer be paid; it keeps
    its number (numbering stays gapless). 409 once paid or already void."""
    return await _transition(request, service.void)


@routes.post("/v1/invoices/{invoice_id}/mark_paid")
@operation("Mark an invoice paid (outside the system)", scope="subscriptions:write", response=InvoiceOut, errors=(409,))
async def mark_paid(request: web.Request) -> web.Response:
    """Paid by other means (a bank transfer): ``amount_paid`` becomes the total, no payment
    is recorded, and the subscription counts the payment. 409 once paid or void."""
    return await _transition(request, service.mark_paid)


@routes.post("/v1/invoices/{invoice_id}/mark_uncollectible")
@operation("Mark an invoice uncollectible", scope="subscriptions:write", response=InvoiceOut, errors=(409,))
async def mark_uncollectible(request: web.Request) -> web.Response:
    """An open invoice the merchant no longer expects to be paid (it can still be paid,
    or voided). 409 for any other status."""
    return await _transition(request, service.mark_uncollectible)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=document.security_headers()
    )


@routes.get("/v1/invoices/{invoice_id}/document")
@operation("The printable invoice (HTML)", scope="subscriptions:read", query=DocumentQuery, response=Html())
async def invoice_document(request: web.Request) -> web.Response:
    """In the invoice's language and locale formats; ``?lang=sv`` prints it in Swedish
    (``en`` in English) whatever the invoice's language."""
    ctx = require(request, "subscriptions:read")
    q = parse_query(request, DocumentQuery)
    async with request_tx(request) as conn:
        account = await _account(conn, ctx.account_id)
        row = await repo.get(conn, ctx.account_id, request.match_info["invoice_id"])
        if row is None:
            raise NotFound("No such invoice.")
        sub = await subs_repo.get(conn, ctx.account_id, row["subscription_id"]) if row["subscription_id"] else None
    return _html(document.render(row, account, subscription=sub, today=_today(account), language=q.lang))


_NOT_FOUND_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found</title></head>'
    "<body><h1>Not found</h1><p>This invoice does not exist.</p></body></html>"
)


@routes.get("/invoices/{token}")
@operation("The invoice's page (pay online)", response=Html(), html_errors=True)
async def invoice_page(request: web.Request) -> web.Response:
    """The invoice as printed, and a "Pay online" button (a form posting to
    ``/api/invoices/{token}/checkout``) while it is open and online payment is on."""
    pool = request.app[APP_POOL]
    token = request.match_info["token"]
    found = await repo.resolve_token(pool, token_hash(token))
    if found is None:
        return _html(_NOT_FOUND_PAGE, status=404)
    async with tenant_tx(pool, found["account_id"]) as conn:
        account = await load_account(conn, SCHEMA, found["account_id"])
        row = await repo.get(conn, found["account_id"], found["invoice_id"])
        sub = (
            await subs_repo.get(conn, row["account_id"], row["subscription_id"])
            if row and row["subscription_id"]
            else None
        )
    if row is None or account is None or row["status"] == "draft":
        return _html(_NOT_FOUND_PAGE, status=404)
    payable = (
        row["status"] in amounts.PAYABLE
        and (row["payment_settings"] or {}).get("online_payment", True) is not False
        and document.amount_due(row) > 0
        and not row["payment_id"]
    )
    pay_action = f"/api/invoices/{token}/checkout" if payable else None
    return _html(document.render(row, account, subscription=sub, today=_today(account), pay_action=pay_action))
