"""HTTP: /v1/products, /v1/tax_rates, /v1/discount_codes."""

from __future__ import annotations

from aiohttp import web

from shared.accounts import load_account
from shared.web.auth import require
from shared.web.pagination import list_page
from shared.web.problem import NotFound
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from . import repository as repo
from . import service
from .schemas import (
    DiscountCodeCreate,
    DiscountCodeList,
    ProductCreate,
    ProductList,
    ProductPatch,
    TaxRateCreate,
    TaxRateList,
    discount_code_out,
    product_out,
    tax_rate_out,
)

routes = web.RouteTableDef()

NO_PRODUCT = "No such product."
NO_TAX_RATE = "No such tax rate."
NO_DISCOUNT_CODE = "No such discount code."


# -- products ---------------------------------------------------------------------------------
@routes.post("/v1/products")
async def create_product(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    body = await parse_body(request, ProductCreate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.create_product(conn, account, body)
    return web.json_response(product_out(row), status=201)


@routes.get("/v1/products")
async def list_products(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    query = parse_query(request, ProductList)
    async with request_tx(request) as conn:
        rows = await repo.list_products(
            conn, ctx.account_id, active=query.active, limit=query.fetch_limit, starting_after=query.starting_after
        )
    return list_page(rows, query, product_out)


@routes.get("/v1/products/{product_id}")
async def get_product(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    async with request_tx(request) as conn:
        row = await repo.get_product(conn, ctx.account_id, request.match_info["product_id"])
    if row is None:
        raise NotFound(NO_PRODUCT)
    return web.json_response(product_out(row))


@routes.patch("/v1/products/{product_id}")
async def update_product(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    patch = await parse_body(request, ProductPatch)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.update_product(conn, account, request.match_info["product_id"], patch)
        if row is None:
            raise NotFound(NO_PRODUCT)
    return web.json_response(product_out(row))


@routes.delete("/v1/products/{product_id}")
async def delete_product(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    product_id = request.match_info["product_id"]
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        if not await service.delete_product(conn, account, product_id):
            raise NotFound(NO_PRODUCT)
    return web.json_response({"id": product_id, "object": "product", "deleted": True})


# -- tax rates --------------------------------------------------------------------------------
@routes.post("/v1/tax_rates")
async def create_tax_rate(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    body = await parse_body(request, TaxRateCreate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.create_tax_rate(conn, account, body)
    return web.json_response(tax_rate_out(row), status=201)


@routes.get("/v1/tax_rates")
async def list_tax_rates(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    query = parse_query(request, TaxRateList)
    async with request_tx(request) as conn:
        rows = await repo.list_tax_rates(
            conn, ctx.account_id, active=query.active, limit=query.fetch_limit, starting_after=query.starting_after
        )
    return list_page(rows, query, tax_rate_out)


@routes.get("/v1/tax_rates/{tax_rate_id}")
async def get_tax_rate(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    async with request_tx(request) as conn:
        row = await repo.get_tax_rate(conn, ctx.account_id, request.match_info["tax_rate_id"])
    if row is None:
        raise NotFound(NO_TAX_RATE)
    return web.json_response(tax_rate_out(row))


# -- discount codes -----------------------------------------------------------------------------
@routes.post("/v1/discount_codes")
async def create_discount_code(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    body = await parse_body(request, DiscountCodeCreate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.create_discount_code(conn, account, body)
    return web.json_response(discount_code_out(row), status=201)


@routes.get("/v1/discount_codes")
async def list_discount_codes(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    query = parse_query(request, DiscountCodeList)
    async with request_tx(request) as conn:
        rows = await repo.list_discount_codes(
            conn, ctx.account_id, active=query.active, limit=query.fetch_limit, starting_after=query.starting_after
        )
    return list_page(rows, query, discount_code_out)


@routes.get("/v1/discount_codes/{discount_code_id}")
async def get_discount_code(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    async with request_tx(request) as conn:
        row = await repo.get_discount_code(conn, ctx.account_id, request.match_info["discount_code_id"])
    if row is None:
        raise NotFound(NO_DISCOUNT_CODE)
    return web.json_response(discount_code_out(row))


@routes.post("/v1/discount_codes/{discount_code_id}/deactivate")
async def deactivate_discount_code(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    async with request_tx(request) as conn:
        row = await service.deactivate_discount_code(conn, ctx.account_id, request.match_info["discount_code_id"])
    if row is None:
        raise NotFound(NO_DISCOUNT_CODE)
    return web.json_response(discount_code_out(row))
