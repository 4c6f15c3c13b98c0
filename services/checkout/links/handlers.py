"""HTTP: /v1/payment_links and the simplified links created from CRM records."""

from __future__ import annotations

from aiohttp import web

from shared.accounts import load_account
from shared.web.auth import require
from shared.web.keys import SETTINGS
from shared.web.openapi import Deleted, ListOf, operation
from shared.web.pagination import list_page
from shared.web.problem import NotFound
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from . import repository as repo
from . import service
from .schemas import EmbedOut, LinkCreate, LinkList, LinkOut, LinkUpdate, SimplifiedLinkCreate, link_out

routes = web.RouteTableDef()


def _base(request: web.Request) -> str:
    return request.app[SETTINGS].common.public_base_url


async def _link(conn, account_id: str, request: web.Request, *, lock: bool = False):
    row = await repo.get_link(conn, account_id, request.match_info["link_id"], lock=lock)
    if row is None:
        raise NotFound("No such payment link.")
    return row


@routes.post("/v1/payment_links")
@operation(
    "Create a payment link",
    scope="links:write",
    body=LinkCreate,
    example={
        "name": "Coffee beans",
        "currency": "USD",
        "line_items": [{"name": "Coffee beans, 1 kg", "quantity": 2, "unit_amount": 1250}],
    },
    status=201,
    response=LinkOut,
)
async def create_link(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    body = await parse_body(request, LinkCreate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.create_link(conn, account, body)
    return web.json_response(link_out(row, _base(request)), status=201)


@routes.get("/v1/payment_links")
@operation("List payment links", scope="links:read", query=LinkList, response=ListOf(LinkOut))
async def list_links(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    q = parse_query(request, LinkList)
    async with request_tx(request) as conn:
        rows = await repo.list_links(
            conn, ctx.account_id, query=q.query, active=q.active, limit=q.fetch_limit, starting_after=q.starting_after
        )
    return list_page(rows, q, lambda row: link_out(row, _base(request)))


@routes.get("/v1/payment_links/{link_id}")
@operation("Get a payment link", scope="links:read", response=LinkOut)
async def get_link(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    async with request_tx(request) as conn:
        row = await _link(conn, ctx.account_id, request)
    return web.json_response(link_out(row, _base(request)))


@routes.patch("/v1/payment_links/{link_id}")
@operation(
    "Change a payment link",
    scope="links:write",
    body=LinkUpdate,
    example={"name": "Coffee beans (spring)", "allow_discount_codes": True},
    response=LinkOut,
)
async def update_link(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    body = await parse_body(request, LinkUpdate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        link = await _link(conn, ctx.account_id, request, lock=True)
        row = await service.update_link(conn, account, link, body)
    return web.json_response(link_out(row, _base(request)))


@routes.delete("/v1/payment_links/{link_id}")
@operation("Delete a payment link", scope="links:write", response=Deleted)
async def delete_link(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        if not await repo.delete_link(conn, ctx.account_id, request.match_info["link_id"], account.clock.now()):
            raise NotFound("No such payment link.")
    return web.json_response({"id": request.match_info["link_id"], "object": "payment_link", "deleted": True})


@routes.post("/v1/payment_links/{link_id}/clone")
@operation("Clone a payment link", scope="links:write", status=201, response=LinkOut)
async def clone_link(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.clone_link(conn, account, await _link(conn, ctx.account_id, request))
    return web.json_response(link_out(row, _base(request)), status=201)


@routes.get("/v1/payment_links/{link_id}/embed")
@operation("Get the HTML that embeds a payment link", scope="links:read", response=EmbedOut, errors=(409,))
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
@operation(
    "Create a payment link from a contact",
    scope="links:write",
    body=SimplifiedLinkCreate,
    example={"name": "Consulting", "item_name": "Workshop, one day", "unit_amount": 90000, "currency": "USD"},
    status=201,
    response=LinkOut,
)
async def contact_link(request: web.Request) -> web.Response:
    return await _simplified(request, "contact")


@routes.post("/v1/companies/{company_id}/payment_links")
@operation(
    "Create a payment link from a company",
    scope="links:write",
    body=SimplifiedLinkCreate,
    example={"name": "Consulting", "item_name": "Workshop, one day", "unit_amount": 90000, "currency": "USD"},
    status=201,
    response=LinkOut,
)
async def company_link(request: web.Request) -> web.Response:
    return await _simplified(request, "company")


@routes.post("/v1/deals/{deal_id}/payment_links")
@operation(
    "Create a payment link from a deal",
    scope="links:write",
    body=SimplifiedLinkCreate,
    example={"name": "Consulting", "item_name": "Workshop, one day", "unit_amount": 90000, "currency": "USD"},
    status=201,
    response=LinkOut,
)
async def deal_link(request: web.Request) -> web.Response:
    return await _simplified(request, "deal")
