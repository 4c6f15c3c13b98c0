"""HTTP: /v1/webhook_endpoints (and each endpoint's delivery log)."""

from __future__ import annotations

from aiohttp import web

from shared.accounts import load_account
from shared.secrets import encrypt
from shared.web.auth import require
from shared.web.keys import SETTINGS
from shared.web.openapi import Deleted, ListOf, operation
from shared.web.pagination import list_page
from shared.web.problem import NotFound, field_error
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from . import repository as repo
from . import service, ssrf
from .schemas import (
    DeliveryList,
    DeliveryOut,
    EndpointCreate,
    EndpointList,
    EndpointOut,
    EndpointPatch,
    delivery_out,
    endpoint_out,
)

routes = web.RouteTableDef()

NO_ENDPOINT = "No such webhook endpoint."
SCHEMA = "notifications"


def _answer(row, secret: str | None = None) -> web.Response:
    """The endpoint (with its secret, where this answer shows it), or 404."""
    if row is None:
        raise NotFound(NO_ENDPOINT)
    return web.json_response(endpoint_out(row, secret))


async def _vetted(request: web.Request, url: str, test_mode: bool) -> str:
    settings = request.app[SETTINGS]
    policy = ssrf.Policy.for_account(test_mode, test_loopback=settings.webhook_test_mode_loopback)
    return await service.vet_url(url, policy, resolve_timeout=settings.webhook_resolve_timeout_s)


@routes.post("/v1/webhook_endpoints")
@operation(
    "Register a webhook endpoint",
    scope="webhooks:write",
    body=EndpointCreate,
    example={"url": "http://127.0.0.1:9/webhooks", "events": ["payment.succeeded", "payment.failed"]},
    status=201,
    response=EndpointOut,
    errors=(409,),
    description="The answer carries the signing secret; it is not shown again. Live accounts may only "
    "target https:// URLs on public addresses; test-mode accounts also http:// and loopback.",
)
async def create_endpoint(request: web.Request) -> web.Response:
    ctx = require(request, "webhooks:write")
    body = await parse_body(request, EndpointCreate)
    await _vetted(request, body.url, ctx.test_mode)
    async with request_tx(request) as conn:
        account = await load_account(conn, SCHEMA, ctx.account_id)
        row, secret = await service.create_endpoint(
            conn, request.app[SETTINGS].common, account_id=ctx.account_id, body=body, now=account.clock.now()
        )
    return web.json_response(endpoint_out(row, secret), status=201)


@routes.get("/v1/webhook_endpoints")
@operation("List webhook endpoints", scope="webhooks:read", query=EndpointList, response=ListOf(EndpointOut))
async def list_endpoints(request: web.Request) -> web.Response:
    ctx = require(request, "webhooks:read")
    query = parse_query(request, EndpointList)
    async with request_tx(request) as conn:
        rows = await repo.list_endpoints(
            conn, ctx.account_id, limit=query.fetch_limit, starting_after=query.starting_after
        )
    return list_page(rows, query, endpoint_out)


@routes.get("/v1/webhook_endpoints/{webhook_endpoint_id}")
@operation("Get a webhook endpoint", scope="webhooks:read", response=EndpointOut)
async def get_endpoint(request: web.Request) -> web.Response:
    ctx = require(request, "webhooks:read")
    async with request_tx(request) as conn:
        row = await repo.get_endpoint(conn, ctx.account_id, request.match_info["webhook_endpoint_id"])
    return _answer(row)


@routes.patch("/v1/webhook_endpoints/{webhook_endpoint_id}")
@operation(
    "Change a webhook endpoint",
    scope="webhooks:write",
    body=EndpointPatch,
    example={"events": ["*"], "description": "Every event"},
    response=EndpointOut,
)
async def update_endpoint(request: web.Request) -> web.Response:
    ctx = require(request, "webhooks:write")
    patch = await parse_body(request, EndpointPatch)
    changes = service.patch_changes(patch)
    if "url" in changes:
        await _vetted(request, changes["url"], ctx.test_mode)
    async with request_tx(request) as conn:
        account = await load_account(conn, SCHEMA, ctx.account_id)
        endpoint_id = request.match_info["webhook_endpoint_id"]
        row = await repo.update_endpoint(conn, ctx.account_id, endpoint_id, changes, account.clock.now())
    return _answer(row)


@routes.delete("/v1/webhook_endpoints/{webhook_endpoint_id}")
@operation(
    "Delete a webhook endpoint",
    scope="webhooks:write",
    response=Deleted,
    description="Its pending deliveries and its delivery log go with it; the event feed keeps every event.",
)
async def delete_endpoint(request: web.Request) -> web.Response:
    ctx = require(request, "webhooks:write")
    endpoint_id = request.match_info["webhook_endpoint_id"]
    async with request_tx(request) as conn:
        if not await repo.delete_endpoint(conn, ctx.account_id, endpoint_id):
            raise NotFound(NO_ENDPOINT)
    return web.json_response({"id": endpoint_id, "object": "webhook_endpoint", "deleted": True})


@routes.post("/v1/webhook_endpoints/{webhook_endpoint_id}/retry")
@operation(
    "Send the held deliveries now",
    scope="webhooks:write",
    response=EndpointOut,
    description="For an endpoint that was failing and works again: its oldest pending delivery is sent at "
    "once instead of at its next retry, then the others in order.",
)
async def retry_endpoint(request: web.Request) -> web.Response:
    ctx = require(request, "webhooks:write")
    async with request_tx(request) as conn:
        row = await repo.retry_now(conn, ctx.account_id, request.match_info["webhook_endpoint_id"])
    return _answer(row)


@routes.post("/v1/webhook_endpoints/{webhook_endpoint_id}/rotate_secret")
@operation(
    "Rotate the signing secret",
    scope="webhooks:write",
    response=EndpointOut,
    description="The answer carries the new secret (shown once). For 24 hours the previous secret signs "
    "too: each delivery carries two v1 signatures, so receivers can switch at their pace.",
)
async def rotate_secret(request: web.Request) -> web.Response:
    ctx = require(request, "webhooks:write")
    secret = service.new_secret()
    encrypted = encrypt(request.app[SETTINGS].common, secret)
    async with request_tx(request) as conn:
        row = await repo.rotate_secret(
            conn, ctx.account_id, request.match_info["webhook_endpoint_id"], encrypted, service.ROTATION_OVERLAP_S
        )
    return _answer(row, secret)


@routes.get("/v1/webhook_endpoints/{webhook_endpoint_id}/deliveries")
@operation("The delivery log of an endpoint", scope="webhooks:read", query=DeliveryList, response=ListOf(DeliveryOut))
async def list_deliveries(request: web.Request) -> web.Response:
    ctx = require(request, "webhooks:read")
    query = parse_query(request, DeliveryList)
    endpoint_id = request.match_info["webhook_endpoint_id"]
    async with request_tx(request) as conn:
        if await repo.get_endpoint(conn, ctx.account_id, endpoint_id) is None:
            raise NotFound(NO_ENDPOINT)
        before = None
        if query.starting_after is not None:
            before = await repo.delivery_seq(conn, ctx.account_id, endpoint_id, query.starting_after)
            if before is None:
                raise field_error("starting_after", "is not a delivery of this endpoint")
        rows = await repo.list_deliveries(
            conn,
            ctx.account_id,
            endpoint_id,
            status=query.status,
            event_id=query.event_id,
            before_seq=before,
            limit=query.fetch_limit,
        )
    return list_page(rows, query, delivery_out)
