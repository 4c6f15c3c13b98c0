"""HTTP: /v1/payment_links and the simplified links created from CRM records."""

from __future__ import annotations

from aiohttp import web

from shared.accounts import load_account
from shared.web.auth import require
from shared.web.keys import SETTINGS
from shared.web.pagination import list_page
from shared.web.problem import NotFound
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from . import repository as repo
from . import service
from .schemas import LinkCreate, LinkList, LinkUpdate, SimplifiedLinkCreate, link_out

routes = web.RouteTableDef()


def _base(request: web.Request) -> str:
    return request.app[SETTINGS].common.public_base_url


async def _link(conn, account_id: str, request: web.Request, *, lock: bool = False):
    row = await repo.get_link(conn, account_id, request.match_info["link_id"], lock=lock)
    if row is None:
        raise NotFound("No such payment link.")
    return row


@routes.post("/v1/payment_links")
async def create_link(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    body = await parse_body(request, LinkCreate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.create_link(conn, account, body)
    return web.json_response(link_out(row, _base(request)), status=201)


@routes.get("/v1/payment_links")
async def list_links(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    q = parse_query(request, LinkList)
    async with request_tx(request) as conn:
        rows = await repo.list_links(
            conn, ctx.account_id, query=q.query, active=q.active, limit=q.fetch_limit, starting_after=q.starting_after
        )
    return list_page(rows, q, lambda row: link_out(row, _base(request)))


@routes.get("/v1/payment_links/{link_id}")
async def get_link(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    async with request_tx(request) as conn:
        row = await _link(conn, ctx.account_id, request)
    return web.json_response(link_out(row, _base(request)))


@routes.patch("/v1/payment_links/{link_id}")
async def update_link(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    body = await parse_body(request, LinkUpdate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        link = await _link(conn, ctx.account_id, request, lock=True)
        row = await service.update_link(conn, account, link, body)
    return web.json_response(link_out(row, _base(request)))


@routes.delete("/v1/payment_links/{link_id}")
async def delete_link(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        if not await repo.delete_link(conn, ctx.account_id, request.match_info["link_id"], account.clock.now()):
            raise NotFound("No such payment link.")
    return web.json_response({"id": request.match_info["link_id"], "object": "payment_link", "deleted": True})


@routes.post("/v1/payment_links/{link_id}/clone")
async def clone_link(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.clone_link(conn, account, await _link(conn, ctx.account_id, request))
    return web.json_response(link_out(row, _base(request)), status=201)


@routes.get("/v1/payment_links/{link_id}/embed")
async def embed(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    async with request_tx(request) as conn:
        row = await _link(conn, ctx.account_id, request)
    service.refuse_embed(row)
    url = link_out(row, _base(request))["url"]
    return web.json_response({"object": "embed", "html": service.embed_html(url, row["name"]), "url": url})


async def _simplified(request: web.Request, kind: str) -> web.Response:
    record_id = request.match_info[f"{kind}_id"]
    ctx = require(request, "links:write")
    body = await parse_body(request, SimplifiedLinkCreate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.create_simplified_link(conn, account, kind, record_id, body)
    return web.json_response(link_out(row, _base(request)), status=201)


@routes.post("/v1/contacts/{contact_id}/payment_links")
async def contact_link(request: web.Request) -> web.Response:
    return await _simplified(request, "contact")


@routes.post("/v1/companies/{company_id}/payment_links")
async def company_link(request: web.Request) -> web.Response:
    return await _simplified(request, "company")


@routes.post("/v1/deals/{deal_id}/payment_links")
async def deal_link(request: web.Request) -> web.Response:
    return await _simplified(request, "deal")
