"""HTTP, buyer side: /pay/{slug}, /checkout/{token} (pages) and /api/checkout/{token} (JSON).

Pages answer errors as HTML (404 / 410 with a clear message); the JSON endpoints as
problem+json. Form posts carry the session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from urllib.parse import urlsplit

from aiohttp import web

from shared.accounts import load_account
from shared.clock import rfc3339
from shared.processor.registry import config_for
from shared.web.keys import APP_POOL, EXTRAS, SETTINGS
from shared.web.problem import Forbidden, Problem
from shared.web.request import parse_body

from . import limits, service
from .schemas import CheckoutSubmit

routes = web.RouteTableDef()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


STRIPE_JS_ORIGIN = "https://js.stripe.com"


def security_headers(processor_origin: str | None = None) -> dict[str, str]:
    """Strict CSP: no inline script or style; only our assets and the processor's."""
    script, connect, frame = ["'self'"], ["'self'"], ["'none'"]
    if processor_origin == STRIPE_JS_ORIGIN:
        script.append(STRIPE_JS_ORIGIN)
        connect.append("https://api.stripe.com")
        frame = [STRIPE_JS_ORIGIN, "https://hooks.stripe.com"]
    elif processor_origin:  # the test processor serves its script and API from one origin
        script.append(processor_origin)
        connect.append(processor_origin)
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(script),
            "connect-src " + " ".join(connect),
            "frame-src " + " ".join(frame),
            "style-src 'self'",
            "img-src 'self' https: data:",
            "font-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _page(
    request: web.Request, template: str, *, status: int = 200, headers: dict | None = None, **context
) -> web.Response:
    context.setdefault("locale", "en")
    context.setdefault("preview", False)
    html = request.app[EXTRAS]["templates"].get_template(template).render(**context)
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**security_headers(), **(headers or {})},
    )


def _message_page(request: web.Request, problem: Problem) -> web.Response:
    titles = {404: "Not found", 410: "No longer available", 429: "Too many requests"}
    return _page(
        request,
        "message.html",
        status=problem.status,
        headers=problem.headers,
        title=titles.get(problem.status, problem.title),
        message=problem.detail,
    )


def _ttl(request: web.Request) -> timedelta:
    return timedelta(hours=request.app[SETTINGS].session_ttl_hours)


@routes.get("/pay/{slug}")
async def open_link(request: web.Request) -> web.StreamResponse:
    try:
        await limits.check_open(request, request.match_info["slug"])
        token = await service.open_from_link(
            request.app[APP_POOL], request.match_info["slug"], ttl=_ttl(request), test=request.query.get("test") == "1"
        )
    except Problem as problem:
        if problem.status >= 500:
            raise
        return _message_page(request, problem)
    raise web.HTTPSeeOther(
        f"/checkout/{token}", headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


def _processor_view(request: web.Request, account, test_mode: bool = False) -> dict:
    """What the page needs of the account's processor, cached per account version (it
    decrypts the account's processor settings)."""
    views = request.app[EXTRAS].setdefault("processor_views", {})
    key = (account.id, account.version, test_mode)
    view = views.get(key)
    if view is None:
        if len(views) > 10_000:
            views.clear()
        view = views[key] = _build_processor_view(request, account, test_mode)
    return dict(view)


def _build_processor_view(request: web.Request, account, test_mode: bool) -> dict:
    config = config_for(account, request.app[SETTINGS].common, test_mode=test_mode)
    view = {"type": config.type, "publishable_key": config.publishable_key}
    if config.type == "test":
        view["api_base"] = config.browser_api_base
        view["script_url"] = f"{config.browser_api_base.rstrip('/')}/js.stripe.com/v3/"
    else:
        view["script_url"] = f"{STRIPE_JS_ORIGIN}/v3/"
    return view


@routes.get("/checkout/{token}")
async def checkout_page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    try:
        opened = await service.load(request.app[APP_POOL], token)
        service.ensure_open(opened)
    except Problem as problem:
        if problem.status >= 500:
            raise
        return _message_page(request, problem)
    account, session = opened.account, opened.session
    processor = _processor_view(request, account, session["test_mode"])
    return _page(
        request,
        "checkout.html",
        headers=security_headers(_origin(processor["script_url"])),
        account=account,
        session=session,
        token=token,
        summary=service.initial_summary(opened),
        processor=processor,
        locale=account.settings.language,
    )


@routes.get("/api/checkout/{token}")
async def session_json(request: web.Request) -> web.Response:
    opened = await service.load(request.app[APP_POOL], request.match_info["token"])
    account, session = opened.account, opened.session
    status = "expired" if service.is_expired(session, account) else session["status"]
    processor = _processor_view(request, account, session["test_mode"])
    processor.pop("script_url")
    settings = session["settings"] or {}
    return web.json_response(
        {
            "object": "checkout_session",
            "status": status,
            "currency": session["currency"],
            "merchant": {"name": account.name, "logo_url": account.settings.logo_url},
            "line_items": [
                {
                    "id": li["id"],
                    "name": li["name"],
                    "description": li.get("description"),
                    "quantity": li["quantity"],
                    "unit_amount": li["unit_amount"],
                    "optional": li.get("optional", False),
                    "adjustable_quantity": li.get("adjustable_quantity"),
                    "custom_amount": li.get("custom_amount"),
                    "recurring": li.get("recurring"),
                }
                for li in session["line_items"]
            ],
            "summary": session["summary"] or service.initial_summary(opened),
            "contact_fields": settings.get("contact_fields", []),
            "payment_methods": settings.get("payment_methods", ["card"]),
            "collect_billing_address": settings.get("collect_billing_address", False),
            "collect_shipping_address": settings.get("collect_shipping_address", False),
            "allow_discount_codes": settings.get("allow_discount_codes", False),
            "processor": processor,
            "expires_at": rfc3339(session["expires_at"]),
            "payment_id": session["payment_id"],
            "csrf_token": session["csrf_token"] if status == "open" else None,
        },
        headers={"Cache-Control": "no-store"},
    )


async def _check_csrf(request: web.Request) -> None:
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site not in (None, "same-origin", "none"):
        raise Forbidden("Cross-site requests are not accepted.")
    opened = await service.load(request.app[APP_POOL], request.match_info["token"])
    sent = request.headers.get("X-CSRF-Token", "")
    if not hmac.compare_digest(sent.encode(), opened.session["csrf_token"].encode()):
        raise Forbidden("Missing or wrong X-CSRF-Token; reload the checkout page.")


@routes.post("/api/checkout/{token}")
async def submit(request: web.Request) -> web.Response:
    await limits.check_submit(request, request.match_info["token"])
    await _check_csrf(request)
    body = await parse_body(request, CheckoutSubmit)
    result = await service.submit(
        request.app[APP_POOL], request.app[EXTRAS]["processors"], request.match_info["token"], body
    )
    return web.json_response(result, headers={"Cache-Control": "no-store"})


@routes.post("/api/checkout/{token}/complete")
async def complete(request: web.Request) -> web.Response:
    await limits.check_submit(request, request.match_info["token"])
    await _check_csrf(request)
    result = await service.complete(
        request.app[APP_POOL], request.app[EXTRAS]["processors"], request.match_info["token"]
    )
    if result.status == "complete":
        body = {"status": "complete", "payment_id": result.payment_id}
        if result.redirect_url:
            body["redirect_url"] = result.redirect_url
        return web.json_response(body)
    if result.status == "requires_action":
        return web.json_response({"status": "requires_action", "client_secret": result.client_secret}, status=402)
    return web.json_response({"status": "declined", "message": result.message}, status=402)


@routes.get("/v1/payment_links/{link_id}/preview")
async def preview(request: web.Request) -> web.Response:
    """The buyer's page rendered from the link, without creating a session (PRODUCT §3.3)."""
    from shared.web.auth import require
    from shared.web.problem import NotFound
    from shared.web.tx import request_tx

    from ..links import repository as links_repo

    ctx = require(request, "links:read")
    async with request_tx(request) as conn:
        account = await load_account(conn, "checkout", ctx.account_id)
        link = await links_repo.get_link(conn, ctx.account_id, request.match_info["link_id"])
    if link is None:
        raise NotFound("No such payment link.")
    session = {
        "id": None, "csrf_token": "", "currency": link["currency"], "line_items": link["line_items"],
        "settings": {**(link["settings"] or {}), "link_name": link["name"]}, "test_mode": account.test_mode,
        "status": "open", "summary": None,
    }  # fmt: skip
    opened = service.Opened(account, session)
    return _page(
        request, "checkout.html", account=account, session=session, token="",
        summary=service.initial_summary(opened), processor={"publishable_key": "", "script_url": ""},
        locale=account.settings.language, preview=True,
    )  # fmt: skip
