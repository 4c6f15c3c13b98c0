"""HTTP: ``/billing/payment-method/{token}`` (the buyer's page) and
``/api/payment-method/{token}`` (its JSON endpoints). No API key: the token is the
credential; posts also need the page's CSRF token (derived from the link's token)."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from shared.db import tenant_tx
from shared.processor.registry import config_for
from shared.secrets import derive_token
from shared.web.keys import APP_POOL, EXTRAS, SETTINGS
from shared.web.openapi import Html, operation
from shared.web.pages import processor_origin, processor_view, security_headers
from shared.web.problem import Conflict, Forbidden, NotFound, Problem

from ..charging.service import ChargeDeps
from ..charging.timeline import dunning_timeline
from ..subscriptions.service import charged_lines
from . import service
from .schemas import CompleteOut, PaymentMethodPageOut, StartOut

routes = web.RouteTableDef()


class PaymentRequired(Problem):
    status = 402


def _csrf(request: web.Request, token: str) -> str:
    return derive_token(request.app[SETTINGS].common, "payment-method-csrf", token)


def _check_csrf(request: web.Request, token: str) -> None:
    sent = request.headers.get("X-CSRF-Token", "")
    if not hmac.compare_digest(sent.encode(), _csrf(request, token).encode()):
        raise Forbidden("Missing or wrong X-CSRF-Token.")


async def _resolve(request: web.Request) -> service.Resolved:
    try:
        return await service.resolve(request.app[APP_POOL], request.match_info["token"])
    except service.LinkNotFound:
        raise NotFound("This link is not valid.") from None


def _processor_view(request: web.Request, account) -> dict[str, Any]:
    return processor_view(config_for(account, request.app[SETTINGS].common))


async def _view(request: web.Request, resolved: service.Resolved) -> dict[str, Any]:
    account, sub = resolved.account, resolved.subscription
    async with tenant_tx(request.app[APP_POOL], account.id) as conn:
        timeline = await dunning_timeline(conn, account, sub["id"])
    return {
        "processor": _processor_view(request, account),
        "subscription": {
            "id": sub["id"],
            "status": sub["status"],
            "currency": sub["currency"],
            "amount": sub["amount"],
            "interval": sub["interval"],
            "next_payment_date": sub["next_payment_date"].isoformat() if sub["next_payment_date"] else None,
            "amount_due": (timeline or {}).get("amount_due", 0),
            "attempts": (timeline or {}).get("attempts", []),
            "next_retry_at": (timeline or {}).get("next_retry_at"),
            "final_outcome": (timeline or {}).get("final_outcome"),
            "final_outcome_at": (timeline or {}).get("final_outcome_at"),
            "payment_method": {"type": sub["method_type"]} if sub["payment_method_id"] else None,
            "lines": [line.model_dump() for line in charged_lines(sub)],
            "updatable": sub["status"] not in service.CLOSED,
        },
        "merchant": {"name": account.name},
        "csrf_token": _csrf(request, request.match_info["token"]),
    }


@routes.get("/billing/payment-method/{token}")
@operation("The buyer's update-payment-method page", response=Html(), html_errors=True)
async def page(request: web.Request) -> web.Response:
    """Shows the subscription, what is owed and the dunning timeline, and the processor's
    fields to save a new method (a past-due subscription is retried with it at once)."""
    try:
        resolved = await service.resolve(request.app[APP_POOL], request.match_info["token"])
    except service.LinkNotFound:
        return web.Response(
            status=404,
            text="<!doctype html><title>Link not valid</title><p>This link is not valid.</p>",
            content_type="text/html",
            charset="utf-8",
            headers=security_headers(),
        )
    view = await _view(request, resolved)
    html = (
        request.app[EXTRAS]["templates"]
        .get_template("payment_method.html")
        .render(view=view, token=request.match_info["token"], account=resolved.account)
    )
    headers = security_headers(processor_origin(view["processor"]["script_url"]))
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=headers)


@routes.get("/api/payment-method/{token}")
@operation("The update page's data", response=PaymentMethodPageOut)
async def get_view(request: web.Request) -> web.Response:
    resolved = await _resolve(request)
    return web.json_response(await _view(request, resolved))


def _deps(request: web.Request) -> ChargeDeps:
    return ChargeDeps(request.app[APP_POOL], request.app[EXTRAS]["processors"], request.app[SETTINGS].common)


@routes.post("/api/payment-method/{token}")
@operation(
    "Start saving a new payment method",
    response=StartOut,
    errors=(403, 409),
    headers={"X-CSRF-Token": (True, "csrf_token from GET /api/payment-method/{token}")},
)
async def start(request: web.Request) -> web.Response:
    """A SetupIntent for the processor's fields: ``{payment: {intent_type, client_secret}}``."""
    resolved = await _resolve(request)
    _check_csrf(request, request.match_info["token"])
    processor = request.app[EXTRAS]["processors"].for_account(resolved.account)
    try:
        payment = await service.start_setup(request.app[APP_POOL], processor, resolved)
    except service.LinkClosed:
        raise Conflict("This subscription has ended; its payment method cannot be changed.") from None
    return web.json_response({"payment": payment})


@routes.post("/api/payment-method/{token}/complete")
@operation(
    "Save the confirmed payment method (and retry what is owed)",
    response=CompleteOut,
    errors=(402, 403, 409),
    headers={"X-CSRF-Token": (True, "csrf_token from GET /api/payment-method/{token}")},
)
async def complete(request: web.Request) -> web.Response:
    """``{status: "updated", retry: null | {payment_id, status}}``; 402 while the
    processor has not confirmed the method."""
    resolved = await _resolve(request)
    _check_csrf(request, request.match_info["token"])
    processor = request.app[EXTRAS]["processors"].for_account(resolved.account)
    try:
        _, retry = await service.complete(_deps(request), processor, resolved)
    except service.LinkClosed:
        raise Conflict("This subscription has ended; its payment method cannot be changed.") from None
    except service.SetupNotConfirmed as exc:
        raise PaymentRequired(f"The processor has not confirmed the payment method ({exc.status}).") from None
    return web.json_response(
        {"status": "updated", "retry": {"payment_id": retry.payment_id, "status": retry.status} if retry else None}
    )
