"""HTTP: /v1/pipelines, /v1/companies, /v1/deals (scopes crm:read / crm:write)."""

from __future__ import annotations

from aiohttp import web

from shared.web.auth import require
from shared.web.openapi import ListOf, operation
from shared.web.pagination import list_page
from shared.web.problem import NotFound
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from ..contacts import repository as contacts_repo
from . import repository as repo
from . import service
from .quote_events import quote_cards
from .schemas import (
    AssociationsOut,
    CompanyCreate,
    CompanyList,
    CompanyOut,
    CompanyUpdate,
    DealCreate,
    DealList,
    DealOut,
    DealUpdate,
    PipelineCreate,
    PipelineList,
    PipelineOut,
    associations_out,
    company_out,
    deal_out,
    pipeline_out,
)

routes = web.RouteTableDef()


# -- pipelines ----------------------------------------------------------------------------------
@routes.post("/v1/pipelines")
@operation(
    "Create a pipeline",
    scope="crm:write",
    body=PipelineCreate,
    example={"name": "Wholesale", "stages": [{"name": "New"}, {"name": "Won", "kind": "closed_won"}]},
    status=201,
    response=PipelineOut,
    errors=(409,),
)
async def create_pipeline(request: web.Request) -> web.Response:
    ctx = require(request, "crm:write")
    body = await parse_body(request, PipelineCreate)
    async with request_tx(request) as conn:
        now = await service.account_now(conn, ctx.account_id)
        row = await service.create_pipeline(conn, ctx.account_id, body, now)
    return web.json_response(pipeline_out(row), status=201)


@routes.get("/v1/pipelines")
@operation("List pipelines", scope="crm:read", query=PipelineList, response=ListOf(PipelineOut))
async def list_pipelines(request: web.Request) -> web.Response:
    ctx = require(request, "crm:read")
    q = parse_query(request, PipelineList)
    async with request_tx(request) as conn:
        await service.ensure_default_pipeline(conn, ctx.account_id)
        rows = await repo.list_pipelines(conn, ctx.account_id, limit=q.fetch_limit, starting_after=q.starting_after)
    return list_page(rows, q, pipeline_out)


@routes.get("/v1/pipelines/{pipeline_id}")
@operation("Get a pipeline", scope="crm:read", response=PipelineOut)
async def get_pipeline(request: web.Request) -> web.Response:
    ctx = require(request, "crm:read")
    async with request_tx(request) as conn:
        row = await repo.get_pipeline(conn, ctx.account_id, request.match_info["pipeline_id"])
    if row is None:
        raise NotFound("No such pipeline.")
    return web.json_response(pipeline_out(row))


# -- companies ----------------------------------------------------------------------------------
@routes.post("/v1/companies")
@operation(
    "Create a company",
    scope="crm:write",
    body=CompanyCreate,
    example={"name": "Analytical Engines Ltd", "domain": "engines.example.com"},
    status=201,
    response=CompanyOut,
    errors=(409,),
)
async def create_company(request: web.Request) -> web.Response:
    ctx = require(request, "crm:write")
    body = await parse_body(request, CompanyCreate)
    async with request_tx(request) as conn:
        now = await service.account_now(conn, ctx.account_id)
        row = await service.create_company(conn, ctx.account_id, body, now)
    return web.json_response(company_out(row), status=201)


@routes.get("/v1/companies")
@operation("List companies", scope="crm:read", query=CompanyList, response=ListOf(CompanyOut))
async def list_companies(request: web.Request) -> web.Response:
    ctx = require(request, "crm:read")
    q = parse_query(request, CompanyList)
    async with request_tx(request) as conn:
        rows = await repo.list_companies(
            conn,
            ctx.account_id,
            name=q.name,
            domain=q.domain,
            limit=q.fetch_limit,
            starting_after=q.starting_after,
        )
    return list_page(rows, q, company_out)


@routes.get("/v1/companies/{company_id}")
@operation("Get a company", scope="crm:read", response=CompanyOut)
async def get_company(request: web.Request) -> web.Response:
    ctx = require(request, "crm:read")
    async with request_tx(request) as conn:
        row = await repo.get_company(conn, ctx.account_id, request.match_info["company_id"])
    if row is None:
        raise NotFound("No such company.")
    return web.json_response(company_out(row))


@routes.patch("/v1/companies/{company_id}")
@operation(
    "Change a company",
    scope="crm:write",
    body=CompanyUpdate,
    example={"industry": "Computing", "city": "London"},
    response=CompanyOut,
    errors=(409,),
)
async def update_company(request: web.Request) -> web.Response:
    ctx = require(request, "crm:write")
    body = await parse_body(request, CompanyUpdate)
    async with request_tx(request) as conn:
        now = await service.account_now(conn, ctx.account_id)
        row = await service.update_company(conn, ctx.account_id, request.match_info["company_id"], body, now)
    return web.json_response(company_out(row))


@routes.get("/v1/companies/{company_id}/associations")
@operation("List a company's associated records", scope="crm:read", response=AssociationsOut)
async def company_associations(request: web.Request) -> web.Response:
    ctx = require(request, "crm:read")
    async with request_tx(request) as conn:
        row = await repo.get_company(conn, ctx.account_id, request.match_info["company_id"])
        if row is None:
            raise NotFound("No such company.")
        related = await contacts_repo.related(conn, ctx.account_id, "company", row["id"])
    return web.json_response(associations_out("company", row["id"], related))


# -- deals ---------------------------------------------------------------------------------------
@routes.post("/v1/deals")
@operation(
    "Create a deal",
    scope="crm:write",
    body=DealCreate,
    example={"name": "Annual supply", "amount": 120000, "currency": "USD"},
    status=201,
    response=DealOut,
    errors=(409,),
)
async def create_deal(request: web.Request) -> web.Response:
    ctx = require(request, "crm:write")
    body = await parse_body(request, DealCreate)
    async with request_tx(request) as conn:
        now = await service.account_now(conn, ctx.account_id)
        row = await service.create_deal(conn, ctx.account_id, body, now)
    return web.json_response({**deal_out(row), "quotes": []}, status=201)


@routes.get("/v1/deals")
@operation("List deals", scope="crm:read", query=DealList, response=ListOf(DealOut))
async def list_deals(request: web.Request) -> web.Response:
    ctx = require(request, "crm:read")
    q = parse_query(request, DealList)
    async with request_tx(request) as conn:
        rows = await repo.list_deals(
            conn,
            ctx.account_id,
            pipeline=q.pipeline,
            stage=q.stage,
            company_id=q.company_id,
            contact_id=q.contact_id,
            limit=q.fetch_limit,
            starting_after=q.starting_after,
        )
    return list_page(rows, q, deal_out)


@routes.get("/v1/deals/{deal_id}")
@operation("Get a deal", scope="crm:read", response=DealOut)
async def get_deal(request: web.Request) -> web.Response:
    ctx = require(request, "crm:read")
    async with request_tx(request) as conn:
        row = await repo.get_deal(conn, ctx.account_id, request.match_info["deal_id"])
        cards = await quote_cards(conn, ctx.account_id, row["id"]) if row is not None else []
    if row is None:
        raise NotFound("No such deal.")
    return web.json_response({**deal_out(row), "quotes": cards})


@routes.patch("/v1/deals/{deal_id}")
@operation(
    "Change a deal",
    scope="crm:write",
    body=DealUpdate,
    example={"amount": 150000},
    response=DealOut,
    errors=(409,),
)
async def update_deal(request: web.Request) -> web.Response:
    ctx = require(request, "crm:write")
    body = await parse_body(request, DealUpdate)
    async with request_tx(request) as conn:
        now = await service.account_now(conn, ctx.account_id)
        row = await service.update_deal(conn, ctx.account_id, request.match_info["deal_id"], body, now)
        cards = await quote_cards(conn, ctx.account_id, row["id"])
    # The same representation as GET, so a client can replace its copy with the answer.
    return web.json_response({**deal_out(row), "quotes": cards})


@routes.get("/v1/deals/{deal_id}/associations")
@operation("List a deal's associated records", scope="crm:read", response=AssociationsOut)
async def deal_associations(request: web.Request) -> web.Response:
    ctx = require(request, "crm:read")
    async with request_tx(request) as conn:
        row = await repo.get_deal(conn, ctx.account_id, request.match_info["deal_id"])
        if row is None:
            raise NotFound("No such deal.")
        related = await contacts_repo.related(conn, ctx.account_id, "deal", row["id"])
    return web.json_response(associations_out("deal", row["id"], related))
