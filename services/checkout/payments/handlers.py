"""HTTP: /v1/payments, their refunds and their CRM associations."""

from __future__ import annotations

from collections import defaultdict

from aiohttp import web

from shared.web.auth import auth, require
from shared.web.keys import APP_POOL, EXTRAS
from shared.web.openapi import ListOf, operation
from shared.web.pagination import list_page
from shared.web.problem import Forbidden, NotFound
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from . import associations
from . import refunds as refunds_service
from . import repository as repo
from .schemas import (
    AssociationCreate,
    PaymentList,
    PaymentOut,
    RefundCreate,
    RefundList,
    RefundOut,
    payment_out,
    refund_out,
)

routes = web.RouteTableDef()


@routes.get("/v1/payments")
@operation("List payments", scope="payments:read", query=PaymentList, response=ListOf(PaymentOut))
async def list_payments(request: web.Request) -> web.Response:
    """Newest first; filters combine. ``subscription_id`` lists the payments billing took
    for the subscription (renewals, retries, a new payment method's charge; a failed attempt
    is a ``failed`` payment), whose ``source`` is ``{"type": "subscription", "id": ...}``."""
    ctx = require(request, "payments:read")
    q = parse_query(request, PaymentList)
    async with request_tx(request) as conn:
        rows = await repo.list_payments(
            conn,
            ctx.account_id,
            status=q.status,
            contact_id=q.contact_id,
            payment_link_id=q.payment_link_id,
            subscription_id=q.subscription_id,
            created_gte=q.created_gte,
            created_gt=q.created_gt,
            created_lte=q.created_lte,
            created_lt=q.created_lt,
            limit=q.fetch_limit,
            starting_after=q.starting_after,
        )
        refund_rows = await repo.refunds_of(conn, ctx.account_id, [r["id"] for r in rows[: q.limit]])
    by_payment = defaultdict(list)
    for refund in refund_rows:
        by_payment[refund["payment_id"]].append(refund)
    return list_page(rows, q, lambda row: payment_out(row, by_payment[row["id"]]))


@routes.get("/v1/payments/{payment_id}")
@operation("Get a payment", scope="payments:read", response=PaymentOut)
async def get_payment(request: web.Request) -> web.Response:
    ctx = require(request, "payments:read")
    async with request_tx(request) as conn:
        row = await repo.get_payment(conn, ctx.account_id, request.match_info["payment_id"])
        if row is None:
            raise NotFound("No such payment.")
        refund_rows = await repo.refunds_of(conn, ctx.account_id, [row["id"]])
    return web.json_response(payment_out(row, refund_rows))


# -- refunds -------------------------------------------------------------------------------
@routes.post("/v1/payments/{payment_id}/refunds")
@operation(
    "Refund a payment (all that remains, or `amount`)",
    scope="payments:write",
    body=RefundCreate,
    body_optional=True,
    example={"amount": 500},
    status=201,
    response=RefundOut,
    errors=(409,),
)
async def create_refund(request: web.Request) -> web.Response:
    """Full (no ``amount``) or partial refund; 201 with the refund (``pending`` while the
    processor has not decided). The refund row is committed before the processor call, in
    its own transactions (refunds.py); an ``Idempotency-Key`` is recorded on it."""
    ctx = require(request, "payments:write")
    body = await parse_body(request, RefundCreate, allow_empty=True)
    row = await refunds_service.refund(
        request.app[APP_POOL],
        request.app[EXTRAS]["processors"],
        ctx.account_id,
        request.match_info["payment_id"],
        body.amount,
        request.headers.get("Idempotency-Key"),
    )
    return web.json_response(refund_out(row), status=201)


@routes.get("/v1/payments/{payment_id}/refunds")
@operation("List a payment's refunds", scope="payments:read", query=RefundList, response=ListOf(RefundOut))
async def list_refunds(request: web.Request) -> web.Response:
    ctx = require(request, "payments:read")
    q = parse_query(request, RefundList)
    async with request_tx(request) as conn:
        payment = await repo.get_payment(conn, ctx.account_id, request.match_info["payment_id"])
        if payment is None:
            raise NotFound("No such payment.")
        rows = await repo.list_refunds(
            conn, ctx.account_id, payment["id"], limit=q.fetch_limit, starting_after=q.starting_after
        )
    return list_page(rows, q, refund_out)


# -- manual CRM associations -------------------------------------------------------------------
@routes.post("/v1/payments/{payment_id}/associations")
@operation(
    "Associate a payment with a contact, company or deal",
    scope=("payments:write", "crm:write"),
    body=AssociationCreate,
    example={"contact_id": "contact_0123456789abcdef0123456789"},
    response=PaymentOut,
    errors=(409,),
)
async def create_association(request: web.Request) -> web.Response:
    """``{contact_id | company_id | deal_id}`` → 200 with the payment. Needs
    ``payments:write`` or ``crm:write``."""
    ctx = auth(request)
    if not (ctx.allows("payments:write") or ctx.allows("crm:write")):
        raise Forbidden("This API key lacks the 'payments:write' or 'crm:write' scope.")
    body = await parse_body(request, AssociationCreate)
    async with request_tx(request) as conn:
        row = await associations.associate(conn, ctx.account_id, request.match_info["payment_id"], body)
        refund_rows = await repo.refunds_of(conn, ctx.account_id, [row["id"]])
    return web.json_response(payment_out(row, refund_rows))
