"""HTTP, buyer side: /pay/{slug}, /checkout/{token} (pages) and /api/checkout/{token} (JSON).

Pages answer errors as HTML (404 / 410 with a clear message); the JSON endpoints as
problem+json. Form posts carry the session's CSRF token in ``X-CSRF-Token``.
``POST /api/checkout/{token}/summary`` prices the buyer's choices while they change them
(the page's live summary); every amount the page shows is formatted here (`display`).
"""

from __future__ import annotations

import functools
import hmac
import re
import secrets
from datetime import date, timedelta

from aiohttp import web
from markupsafe import Markup, escape
from pydantic import BaseModel, ConfigDict, Field

from shared.accounts import load_account
from shared.clock import rfc3339
from shared.link_settings import DEFAULT_LABELS, sanitize_checkout_text
from shared.money import exponent
from shared.processor.registry import config_for
from shared.web.keys import APP_POOL, EXTRAS, SETTINGS
from shared.web.openapi import Html, Redirect, operation
from shared.web.pages import processor_origin, processor_view, security_headers
from shared.web.problem import Forbidden, Gone, Problem, ValidationProblem
from shared.web.request import parse_body

from ..links import service as links_service
from . import limits, service
from .schemas import (
    AddressIn,
    CheckoutSessionOut,
    CheckoutSubmit,
    CompleteNotPaid,
    CompleteOut,
    ContactIn,
    ItemChoice,
    PricedOut,
    SubmitOut,
)

routes = web.RouteTableDef()


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


@functools.lru_cache(maxsize=4)
def _ttl_of(hours: int) -> timedelta:
    return timedelta(hours=hours)


def _ttl(request: web.Request) -> timedelta:
    return _ttl_of(request.app[SETTINGS].session_ttl_hours)


# -- what the page shows of a session ----------------------------------------------------------
#: (type, autocomplete, maxlength) of each contact property's input (ContactIn's limits)
CONTACT_INPUTS = {
    "email": ("email", "email", 320),
    "firstname": ("text", "given-name", 200),
    "lastname": ("text", "family-name", 200),
    "phone": ("tel", "tel", 40),
    "company": ("text", "organization", 200),
    "jobtitle": ("text", "organization-title", 200),
    "website": ("url", "url", 500),
    "address": ("text", "street-address", 200),
    "city": ("text", "address-level2", 200),
    "state": ("text", "address-level1", 200),
    "zip": ("text", "postal-code", 20),
    "country": ("text", "country-name", 200),
}
#: (part, label, autocomplete token, maxlength) of an address block (AddressIn)
ADDRESS_PARTS = (
    ("line1", "Address line 1", "address-line1", 200),
    ("line2", "Address line 2", "address-line2", 200),
    ("city", "City", "address-level2", 200),
    ("state", "State / region", "address-level1", 200),
    ("postal_code", "Postal code", "postal-code", 20),
    ("country", "Country", "country", 2),
)
#: Later payments listed by date under the total; the rest are counted.
LATER_LISTED = 3
#: Babel territories that are not countries (regions, groupings, unknown).
_NOT_COUNTRIES = {"EU", "EZ", "UN", "QO", "ZZ", "XA", "XB"}


@functools.lru_cache(maxsize=8)
def _countries(locale: str) -> tuple[tuple[str, str], ...]:
    """(ISO 3166 alpha-2 code, name in the page's language), sorted by name."""
    from babel import Locale

    names = Locale.parse(locale).territories
    found = [(code, name) for code, name in names.items() if len(code) == 2 and code.isalpha()]
    return tuple(sorted((c for c in found if c[0] not in _NOT_COUNTRIES), key=lambda c: c[1].casefold()))


def _major_units(amount: int, currency: str, separator: str) -> str:
    """Minor units as the major-unit text a buyer types (2500 USD -> "25.00"), exactly."""
    digits = exponent(currency)
    if not digits:
        return str(amount)
    text = str(amount).rjust(digits + 1, "0")
    return f"{text[:-digits]}{separator}{text[-digits:]}"


def _money_filter(request: web.Request):
    return request.app[EXTRAS]["templates"].filters["money"]


def display(request: web.Request, summary: dict, currency: str, locale: str) -> dict:
    """The summary's numbers as the page shows them, formatted here (the page's script
    never formats or computes an amount): the same for the first render and each update."""
    from babel.dates import format_date

    money = _money_filter(request)

    def fmt(amount: int) -> str:
        return money(amount, currency, locale)

    later = summary.get("future_payments") or []
    total = fmt(summary["total_due_now"])
    return {
        "lines": {line["line_item_id"]: fmt(line["amount"]) for line in summary["lines"]},
        "subtotal_due_now": fmt(summary["subtotal_due_now"]),
        "discounts_due_now": [
            {"name": d["name"] or "Discount", "amount": "−" + fmt(d["amount"])} for d in summary["discounts_due_now"]
        ],
        "tax_due_now": fmt(summary["tax_due_now"]) if summary["tax_due_now"] else None,
        "total_due_now": total,
        "pay_label": f"Pay {total}",
        "later_payments": [
            {"date": format_date(date.fromisoformat(p["date"]), "medium", locale=locale), "amount": fmt(p["amount"])}
            for p in later[:LATER_LISTED]
        ],
        "later_more": max(0, len(later) - LATER_LISTED),
    }


def page_context(request: web.Request, opened: service.Opened, locale: str) -> dict:
    """Everything checkout.html renders besides the processor: the items with their
    controls, contact fields, address blocks, discount box, checkout text, confirmation."""
    from babel.numbers import get_decimal_symbol

    session = opened.session
    settings = session["settings"] or {}
    currency = session["currency"]
    money = _money_filter(request)
    summary = service.initial_summary(opened)
    separator = get_decimal_symbol(locale)
    items = []
    for index, li in enumerate(session["line_items"]):
        custom = li.get("custom_amount")
        bounds = None
        if custom:
            low = money(custom["minimum"], currency, locale)
            bounds = (
                f"Between {low} and {money(custom['maximum'], currency, locale)}"
                if custom.get("maximum")
                else f"At least {low}"
            )
        items.append(
            {
                "index": index,
                "id": li["id"],
                "name": li["name"],
                "description": li.get("description"),
                "quantity": li["quantity"],
                "unit_price": money(li["unit_amount"], currency, locale),
                "optional": bool(li.get("optional")),
                "adjustable": li.get("adjustable_quantity"),
                "custom": custom,
                "custom_value": _major_units(li["unit_amount"], currency, separator) if custom else None,
                "custom_bounds": bounds,
                "recurring": (li.get("recurring") or {}).get("interval"),
            }
        )
    fields = settings.get("contact_fields") or [{"property": "email", "required": True}]
    contact_fields = [
        {
            "property": f["property"],
            "label": f.get("label") or DEFAULT_LABELS[f["property"]],
            "help_text": f.get("help_text"),
            "required": bool(f.get("required")) or f["property"] == "email",
            "type": CONTACT_INPUTS[f["property"]][0],
            "autocomplete": CONTACT_INPUTS[f["property"]][1],
            "maxlength": CONTACT_INPUTS[f["property"]][2],
        }
        for f in fields
    ]
    addresses = [
        {"kind": kind, "legend": legend, "token": token}
        for kind, legend, token in (
            ("billing_address", "Billing address", "billing"),
            ("shipping_address", "Shipping address", "shipping"),
        )
        if settings.get(f"collect_{kind}")
    ]
    text = settings.get("checkout_text")
    after = settings.get("after_completion") or {}
    return {
        "summary": summary,
        "display": display(request, summary, currency, locale),
        "items": items,
        "exponent": exponent(currency),
        "contact_fields": contact_fields,
        "addresses": addresses,
        "address_parts": [
            {"part": p, "label": label, "autocomplete": ac, "maxlength": n, "required": p in service.ADDRESS_REQUIRED}
            for p, label, ac, n in ADDRESS_PARTS
        ],
        "countries": _countries(locale) if addresses else (),
        "allow_discount_codes": bool(settings.get("allow_discount_codes")),
        # sanitised when saved; again here, so that no stored value can reach the page raw
        "checkout_text": Markup(sanitize_checkout_text(text)) if text else None,  # noqa: S704 (nh3-cleaned)
        "confirmation_message": after.get("message") if after.get("type", "message") == "message" else None,
    }


@routes.get("/pay/{slug}")
@operation(
    "Open a checkout for a payment link",
    status=303,
    response=Redirect("To /checkout/{session_token}: a new checkout session each time"),
    query_params={"test": "1: open the link in test mode"},
    errors=(409, 410, 429),
    html_errors=True,
)
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
    # what ``raise web.HTTPSeeOther(...)`` answers, built directly: an exception unwinding
    # through every middleware, and the URL parsing of HTTPMove, cost more than the rest
    return web.Response(
        status=303, body=_SEE_OTHER_BODY, headers={**_SEE_OTHER_HEADERS, "Location": f"/checkout/{token}"}
    )


_SEE_OTHER_BODY = b"303: See Other"
_SEE_OTHER_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Type": "text/plain; charset=utf-8",
}


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
    return processor_view(config_for(account, request.app[SETTINGS].common, test_mode=test_mode))


# -- the checkout page, cached per "same page" -------------------------------------------------
#: Two sessions opened from the same link render the same page but for their token and
#: CSRF token: the page is rendered once per key below with placeholders in their place
#: (they pass autoescaping unchanged), then served by joining the parts with each session's
#: escaped values — byte for byte the page a fresh render would give
#: (tests/e2e/test_checkout_page_cache.py). The key holds everything else the page
#: (and its headers) is made of: the account's version (name, logo, language, processor
#: settings; any change bumps it), the session's source and a fingerprint of its items and
#: settings snapshot (``content_md5``, computed by the load query), its currency and mode,
#: and the account-local date (the dates of later payments, and whether items can still be
#: bought). The processor view is a function of the account version and mode.
_PLACEHOLDERS = {"token": "tk" + secrets.token_hex(16), "csrf": "cs" + secrets.token_hex(16)}
_SLOT_RE = re.compile("|".join(_PLACEHOLDERS.values()))
_SLOT_OF = {v: k for k, v in _PLACEHOLDERS.items()}
#: Per app (its settings name the processor's origin): ``app[EXTRAS]["checkout_pages"]``,
#: key -> (literal parts as bytes, slot names between them, headers). Bounded: cleared
#: when full (a page is ~10–20 KB).
_MAX_PAGES = 512


def _pages(request: web.Request) -> dict[tuple, tuple[tuple[bytes, ...], tuple[str, ...], dict[str, str]]]:
    return request.app[EXTRAS].setdefault("checkout_pages", {})


def _page_key(opened: service.Opened) -> tuple:
    account, session = opened.account, opened.session
    return (
        account.id,
        account.version,
        session["source_type"],
        session["source_id"],
        session["content_md5"],
        session["currency"],
        session["test_mode"],
        links_service.today(account),
    )


def _cached_page(entry, token: str, csrf_token: str) -> web.Response:
    parts, slots, headers = entry
    values = {"token": str(escape(token)).encode(), "csrf": str(escape(csrf_token)).encode()}
    chunks = [parts[0]]
    for slot, part in zip(slots, parts[1:], strict=True):
        chunks.append(values[slot])
        chunks.append(part)
    return web.Response(body=b"".join(chunks), headers=headers)


def render_checkout_page(request: web.Request, opened: service.Opened, token: str) -> web.Response:
    """The checkout page of an open session, rendered afresh (no cache)."""
    account, session = opened.account, opened.session
    processor = _processor_view(request, account, session["test_mode"])
    locale = account.settings.language
    try:
        context = page_context(request, opened, locale)
    except ValidationProblem as problem:  # nothing on the link can be bought any more (an end date passed)
        reason = "; ".join(e["message"] for e in problem.errors or [])
        return _message_page(request, Gone(f"This can no longer be bought: {reason}."))
    return _page(
        request,
        "checkout.html",
        headers=security_headers(processor_origin(processor["script_url"])),
        account=account,
        session=session,
        token=token,
        processor=processor,
        locale=locale,
        **context,
    )


def _cache_page(key: tuple, request: web.Request, opened: service.Opened) -> tuple | None:
    """Render the page with placeholders for the per-session values and remember it;
    None when the page is not a 200 (a message page is never cached)."""
    session = {**dict(opened.session), "csrf_token": _PLACEHOLDERS["csrf"]}
    response = render_checkout_page(request, service.Opened(opened.account, session), _PLACEHOLDERS["token"])
    if response.status != 200:
        return None
    pieces = _SLOT_RE.split(response.text)
    slots = tuple(_SLOT_OF[m] for m in _SLOT_RE.findall(response.text))
    entry = (tuple(p.encode() for p in pieces), slots, dict(response.headers))
    pages = _pages(request)
    if len(pages) >= _MAX_PAGES:
        pages.clear()
    pages[key] = entry
    return entry


@routes.get("/checkout/{token}")
@operation("The checkout page", response=Html(), errors=(410,), html_errors=True)
async def checkout_page(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    try:
        opened = await service.load(request.app[APP_POOL], token)
        service.ensure_open(opened)
    except Problem as problem:
        if problem.status >= 500:
            raise
        return _message_page(request, problem)
    key = _page_key(opened)
    entry = _pages(request).get(key)
    if entry is None:
        entry = _cache_page(key, request, opened)
        if entry is None:
            return render_checkout_page(request, opened, token)
    return _cached_page(entry, token, opened.session["csrf_token"])


@routes.get("/api/checkout/{token}")
@operation("The checkout session, as the page reads it", response=CheckoutSessionOut)
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


async def _check_csrf(request: web.Request) -> service.Opened:
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site not in (None, "same-origin", "none"):
        raise Forbidden("Cross-site requests are not accepted.")
    opened = await service.load(request.app[APP_POOL], request.match_info["token"])
    sent = request.headers.get("X-CSRF-Token", "")
    if not hmac.compare_digest(sent.encode(), opened.session["csrf_token"].encode()):
        raise Forbidden("Missing or wrong X-CSRF-Token; reload the checkout page.")
    return opened


def _display_of(request: web.Request, opened: service.Opened, summary: dict) -> dict:
    return display(request, summary, opened.session["currency"], opened.account.settings.language)


@routes.post("/api/checkout/{token}")
@operation(
    "Submit the buyer's choices and contact; start the payment",
    body=CheckoutSubmit,
    example={"contact": {"email": "buyer@example.com"}, "items": []},
    response=SubmitOut,
    errors=(403, 409, 410, 429),
    headers={"X-CSRF-Token": (True, "The session's csrf_token (from GET /api/checkout/{token})")},
)
async def submit(request: web.Request) -> web.Response:
    await limits.check_submit(request, request.match_info["token"])
    opened = await _check_csrf(request)
    body = await parse_body(request, CheckoutSubmit)
    result = await service.submit(
        request.app[APP_POOL], request.app[EXTRAS]["processors"], request.match_info["token"], body
    )
    # ``display``: the summary formatted for the page (an addition to API.md's shape)
    result = {**result, "display": _display_of(request, opened, result["summary"])}
    return web.json_response(result, headers={"Cache-Control": "no-store"})


class SummaryRequest(BaseModel):
    """The submission's shape with the contact optional: the page sends its current
    choices; only the items and the discount code are priced (contact and addresses are
    checked for shape only, and required at submission)."""

    model_config = ConfigDict(extra="forbid")

    items: list[ItemChoice] = Field(default_factory=list, max_length=100)
    contact: ContactIn | None = None
    billing_address: AddressIn | None = None
    shipping_address: AddressIn | None = None
    discount_code: str | None = Field(default=None, max_length=100)


@routes.post("/api/checkout/{token}/summary")
@operation(
    "Price the buyer's current choices",
    body=SummaryRequest,
    example={"items": [], "discount_code": "SPRING25"},
    response=PricedOut,
    errors=(403, 410, 429),
    headers={"X-CSRF-Token": (True, "The session's csrf_token (from GET /api/checkout/{token})")},
)
async def summary(request: web.Request) -> web.Response:
    """The summary of the buyer's current choices, priced on the server with no processor
    call; the page shows it live. Limited and CSRF-checked like a submission."""
    await limits.check_pricing(request, request.match_info["token"])
    opened = await _check_csrf(request)
    body = await parse_body(request, SummaryRequest)
    priced = await service.preview_summary(request.app[APP_POOL], opened, body.items, body.discount_code)
    return web.json_response(
        {"summary": priced, "display": _display_of(request, opened, priced)}, headers={"Cache-Control": "no-store"}
    )


@routes.post("/api/checkout/{token}/complete")
@operation(
    "Complete the payment once the processor confirmed the payment method",
    response=CompleteOut,
    responses={402: CompleteNotPaid},
    errors=(403, 409, 410, 429),
    headers={"X-CSRF-Token": (True, "The session's csrf_token (from GET /api/checkout/{token})")},
)
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
@operation("Preview a payment link's checkout page", scope="links:read", response=Html())
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
    locale = account.settings.language
    return _page(
        request, "checkout.html", account=account, session=session, token="",
        processor={"publishable_key": "", "script_url": ""}, locale=locale, preview=True,
        **page_context(request, opened, locale),
    )  # fmt: skip
