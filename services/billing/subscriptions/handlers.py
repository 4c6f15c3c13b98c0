"""HTTP: /v1/subscriptions (thin: the rules live in `admin.py`)."""

from __future__ import annotations

from aiohttp import web

from shared.accounts import Account, load_account
from shared.web.auth import require
from shared.web.keys import SETTINGS
from shared.web.openapi import ListOf, operation
from shared.web.pagination import list_page
from shared.web.problem import ServiceUnavailable
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from ..charging.timeline import dunning_timeline
from . import admin
from . import repository as repo
from .schemas import (
    CancelIn,
    PaymentMethodLinkIn,
    PaymentMethodLinkOut,
    SubscriptionCreate,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionUpdate,
    subscription_out,
)

routes = web.RouteTableDef()

CREATE_EXAMPLE = {
    "email": "ada@example.com",
    "firstname": "Ada",
    "lastname": "Lovelace",
    "currency": "USD",
    "interval": "monthly",
    "line_items": [
        {"name": "Support plan", "quantity": 2, "unit_amount": 5000, "tax_percent": "8.875"},
        {"name": "Onboarding", "quantity": 1, "unit_amount": 2000, "unit_discount": {"percent_off": "10"}},
    ],
    "collection": {"method": "send_invoice", "payment_terms_days": 30},
    "metadata": {"crm_ref": "A-17"},
}


def _id(request: web.Request) -> str:
    return request.match_info["subscription_id"]


async def _out(conn, account: Account, row) -> web.Response:
    return web.json_response(subscription_out(row, await dunning_timeline(conn, account, row["id"])))


async def _account(conn, account_id: str) -> Account:
    account = await load_account(conn, "billing", account_id)
    if account is None:  # the account's first snapshot has not arrived yet
        raise ServiceUnavailable("This account is not known to billing yet; retry shortly.")
    return account


@routes.post("/v1/subscriptions")
@operation(
    "Create a subscription",
    scope="subscriptions:write",
    body=SubscriptionCreate,
    example=CREATE_EXAMPLE,
    status=201,
    response=SubscriptionOut,
)
async def create_subscription(request: web.Request) -> web.Response:
    """From scratch: the billing contact, line items priced per period, schedule and
    collection. ``charge_automatically`` starts without a payment method: its charges
    wait until the buyer saves one through the update link (``payment_method_link``)."""
    ctx = require(request, "subscriptions:write")
    body = await parse_body(request, SubscriptionCreate)
    async with request_tx(request) as conn:
        account = await _account(conn, ctx.account_id)
        row = await admin.create(conn, request.app[SETTINGS].common, account, body)
    return web.json_response(subscription_out(row), status=201)


@routes.get("/v1/subscriptions")
@operation("List subscriptions", scope="subscriptions:read", query=SubscriptionList, response=ListOf(SubscriptionOut))
async def list_subscriptions(request: web.Request) -> web.Response:
    """Newest first; ``status`` and ``contact_id`` filter."""
    ctx = require(request, "subscriptions:read")
    q = parse_query(request, SubscriptionList)
    async with request_tx(request) as conn:
        rows = await repo.list_subscriptions(
            conn,
            ctx.account_id,
            status=q.status,
            contact_id=q.contact_id,
            limit=q.fetch_limit,
            starting_after=q.starting_after,
        )
    return list_page(rows, q, subscription_out)


@routes.get("/v1/subscriptions/{subscription_id}")
@operation("Get a subscription", scope="subscriptions:read", response=SubscriptionOut)
async def get_subscription(request: web.Request) -> web.Response:
    """With ``dunning``: the latest charge's retry timeline once it has failed."""
    ctx = require(request, "subscriptions:read")
    async with request_tx(request) as conn:
        row = await admin.get_or_404(conn, ctx.account_id, _id(request))
        return await _out(conn, await _account(conn, ctx.account_id), row)


@routes.patch("/v1/subscriptions/{subscription_id}")
@operation(
    "Change a subscription",
    scope="subscriptions:write",
    body=SubscriptionUpdate,
    example={
        "line_items": [{"name": "Support plan", "quantity": 3, "unit_amount": 5000, "tax_percent": "8.875"}],
        "metadata": {"crm_ref": "A-18"},
    },
    response=SubscriptionOut,
    errors=(409,),
)
async def update_subscription(request: web.Request) -> web.Response:
    """Only the fields given change. New ``line_items`` apply to the payments charged
    after the change (a charge already made keeps its amount); ``end_date: null`` removes
    the end. Status, amounts, currency and schedule are not set directly (see cancel,
    pause, resume)."""
    ctx = require(request, "subscriptions:write")
    body = await parse_body(request, SubscriptionUpdate)
    async with request_tx(request) as conn:
        account = await _account(conn, ctx.account_id)
        row = await admin.update(conn, account, _id(request), body)
        return await _out(conn, account, row)


@routes.post("/v1/subscriptions/{subscription_id}/cancel")
@operation(
    "Cancel a subscription",
    scope="subscriptions:write",
    body=CancelIn,
    body_optional=True,
    example={"at_period_end": True},
    response=SubscriptionOut,
    errors=(409,),
)
async def cancel_subscription(request: web.Request) -> web.Response:
    """Now (its open charges are dropped) or, with ``at_period_end``, when its next
    payment date comes (nothing more is charged)."""
    ctx = require(request, "subscriptions:write")
    body = await parse_body(request, CancelIn, allow_empty=True)
    async with request_tx(request) as conn:
        account = await _account(conn, ctx.account_id)
        row = await admin.cancel(conn, account, _id(request), at_period_end=body.at_period_end)
        return await _out(conn, account, row)


@routes.post("/v1/subscriptions/{subscription_id}/pause")
@operation("Pause a subscription", scope="subscriptions:write", response=SubscriptionOut, errors=(409,))
async def pause_subscription(request: web.Request) -> web.Response:
    """Nothing is charged while paused (a payment in retries is dropped)."""
    ctx = require(request, "subscriptions:write")
    async with request_tx(request) as conn:
        account = await _account(conn, ctx.account_id)
        row = await admin.pause(conn, account, _id(request))
        return await _out(conn, account, row)


@routes.post("/v1/subscriptions/{subscription_id}/resume")
@operation("Resume a paused subscription", scope="subscriptions:write", response=SubscriptionOut, errors=(409,))
async def resume_subscription(request: web.Request) -> web.Response:
    """The next payment is the first payment date from the anchor on or after today;
    the paused periods are not charged."""
    ctx = require(request, "subscriptions:write")
    async with request_tx(request) as conn:
        account = await _account(conn, ctx.account_id)
        row = await admin.resume(conn, account, _id(request))
        return await _out(conn, account, row)


@routes.post("/v1/subscriptions/{subscription_id}/payment_method_link")
@operation(
    "Get the buyer's payment-method update link",
    scope="subscriptions:write",
    body=PaymentMethodLinkIn,
    body_optional=True,
    example={"rotate": False},
    response=PaymentMethodLinkOut,
    errors=(409,),
)
async def payment_method_link(request: web.Request) -> web.Response:
    """The link the buyer saves a payment method with; ``rotate: true`` makes a new one
    and the old one stops working."""
    ctx = require(request, "subscriptions:write")
    body = await parse_body(request, PaymentMethodLinkIn, allow_empty=True)
    async with request_tx(request) as conn:
        account = await _account(conn, ctx.account_id)
        url, rotated = await admin.payment_method_link(
            conn, request.app[SETTINGS].common, account, _id(request), rotate=body.rotate
        )
    return web.json_response(
        {"object": "payment_method_link", "subscription_id": _id(request), "url": url, "rotated": rotated}
    )
