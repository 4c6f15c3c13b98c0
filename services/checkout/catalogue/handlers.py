"""HTTP: /v1/products, /v1/tax_rates, /v1/discount_codes."""

from __future__ import annotations

from aiohttp import web

from shared.accounts import load_account
from shared.web.auth import require
from shared.web.openapi import Deleted, ListOf, operation
from shared.web.pagination import list_page
from shared.web.problem import NotFound
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from . import repository as repo
from . import service
from .schemas import (
    DiscountCodeCreate,
    DiscountCodeList,
    DiscountCodeOut,
    ProductCreate,
    ProductList,
    ProductOut,
    ProductPatch,
    TaxRateCreate,
    TaxRateList,
    TaxRateOut,
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
@operation(
    "Create a product",
    scope="links:write",
    body=ProductCreate,
    example={"name": "Coffee beans, 1 kg", "unit_amount": 1250, "currency": "USD", "sku": "BEANS-1KG"},
    status=201,
    response=ProductOut,
)
async def create_product(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    body = await parse_body(request, ProductCreate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.create_product(conn, account, body)
    return web.json_response(product_out(row), status=201)


@routes.get("/v1/products")
@operation("List products", scope="links:read", query=ProductList, response=ListOf(ProductOut))
async def list_products(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    query = parse_query(request, ProductList)
    async with request_tx(request) as conn:
        rows = await repo.list_products(
            conn, ctx.account_id, active=query.active, limit=query.fetch_limit, starting_after=query.starting_after
        )
    return list_page(rows, query, product_out)


@routes.get("/v1/products/{product_id}")
@operation("Get a product", scope="links:read", response=ProductOut)
async def get_product(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    async with request_tx(request) as conn:
        row = await repo.get_product(conn, ctx.account_id, request.match_info["product_id"])
    if row is None:
        raise NotFound(NO_PRODUCT)
    return web.json_response(product_out(row))


@routes.patch("/v1/products/{product_id}")
@operation(
    "Change a product",
    scope="links:write",
    body=ProductPatch,
    example={"name": "Coffee beans, 500 g", "unit_amount": 700},
    response=ProductOut,
)
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
@operation("Delete a product", scope="links:write", response=Deleted)
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
@operation(
    "Create a tax rate",
    scope="links:write",
    body=TaxRateCreate,
    example={"name": "NY sales tax", "percentage": "8.875"},
    status=201,
    response=TaxRateOut,
)
async def create_tax_rate(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    body = await parse_body(request, TaxRateCreate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.create_tax_rate(conn, account, body)
    return web.json_response(tax_rate_out(row), status=201)


@routes.get("/v1/tax_rates")
@operation("List tax rates", scope="links:read", query=TaxRateList, response=ListOf(TaxRateOut))
async def list_tax_rates(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    query = parse_query(request, TaxRateList)
    async with request_tx(request) as conn:
        rows = await repo.list_tax_rates(
            conn, ctx.account_id, active=query.active, limit=query.fetch_limit, starting_after=query.starting_after
        )
    return list_page(rows, query, tax_rate_out)


@routes.get("/v1/tax_rates/{tax_rate_id}")
@operation("Get a tax rate", scope="links:read", response=TaxRateOut)
async def get_tax_rate(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    async with request_tx(request) as conn:
        row = await repo.get_tax_rate(conn, ctx.account_id, request.match_info["tax_rate_id"])
    if row is None:
        raise NotFound(NO_TAX_RATE)
    return web.json_response(tax_rate_out(row))


# -- discount codes -----------------------------------------------------------------------------
@routes.post("/v1/discount_codes")
@operation(
    "Create a discount code",
    scope="links:write",
    body=DiscountCodeCreate,
    example={"code": "SPRING25", "percent_off": "25", "max_redemptions": 100},
    status=201,
    response=DiscountCodeOut,
    errors=(409,),
)
async def create_discount_code(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    body = await parse_body(request, DiscountCodeCreate)
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        row = await service.create_discount_code(conn, account, body)
    return web.json_response(discount_code_out(row), status=201)


@routes.get("/v1/discount_codes")
@operation("List discount codes", scope="links:read", query=DiscountCodeList, response=ListOf(DiscountCodeOut))
async def list_discount_codes(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    query = parse_query(request, DiscountCodeList)
    async with request_tx(request) as conn:
        rows = await repo.list_discount_codes(
            conn, ctx.account_id, active=query.active, limit=query.fetch_limit, starting_after=query.starting_after
        )
    return list_page(rows, query, discount_code_out)


@routes.get("/v1/discount_codes/{discount_code_id}")
@operation("Get a discount code", scope="links:read", response=DiscountCodeOut)
async def get_discount_code(request: web.Request) -> web.Response:
    ctx = require(request, "links:read")
    async with request_tx(request) as conn:
        row = await repo.get_discount_code(conn, ctx.account_id, request.match_info["discount_code_id"])
    if row is None:
        raise NotFound(NO_DISCOUNT_CODE)
    return web.json_response(discount_code_out(row))


@routes.post("/v1/discount_codes/{discount_code_id}/deactivate")
@operation("Deactivate a discount code", scope="links:write", response=DiscountCodeOut)
async def deactivate_discount_code(request: web.Request) -> web.Response:
    ctx = require(request, "links:write")
    async with request_tx(request) as conn:
        row = await service.deactivate_discount_code(conn, ctx.account_id, request.match_info["discount_code_id"])
    if row is None:
        raise NotFound(NO_DISCOUNT_CODE)
    return web.json_response(discount_code_out(row))
