"""Paying an invoice online: checkout's side.

1. ``invoice.updated`` (billing) keeps ``checkout.invoices``, a projection of what can be
   paid (highest version wins). An invoice that stops being payable (paid, void) closes
   its open checkout session (``expired``), so it takes no new charge.
2. ``POST /api/invoices/{token}/checkout`` (the "Pay online" button of billing's page
   ``/invoices/{token}``) → 201 ``{session_token, url}``: a checkout session whose source
   is ``{"type": "invoice", "id": …}``, with the invoice's lines as fixed one-time items
   and its amount due as the total; then the ordinary session endpoints. The same open
   session is returned while it lasts (its token is derived, never stored), so one
   invoice is never paid by two sessions at once; a new one is made once it expired,
   unless its charge may still be under way (409, try again in a minute). 409 once the
   invoice is paid or void, or when online payment is off for it.
3. The session's ``purchase.completed`` (source type ``invoice``) reaches billing, which
   marks the invoice paid.

`open_session_for` is the part quotes will share: a session for any source, with
stored line items and settings.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from shared.accounts import Account, load_account
from shared.db import tenant_tx
from shared.events import EventEnvelope
from shared.events.models import InvoiceUpdatedV1
from shared.ids import new_id, token_hash
from shared.inbox import HandlerContext, HandlerRegistry
from shared.logging import get_logger
from shared.pricing import PricingError, price
from shared.secrets import derive_token
from shared.web.keys import APP_POOL, SETTINGS
from shared.web.openapi import Redirect, operation
from shared.web.problem import Conflict, NotFound

from .links import service as links_service
from .sessions import repository as sessions_repo
from .sessions import sources

registry = HandlerRegistry("checkout")
routes = web.RouteTableDef()
log = get_logger(__name__)
S = "checkout"
PAYABLE = ("open", "uncollectible")
SESSION_PURPOSE = "invoice-checkout"


# -- the projection ------------------------------------------------------------------------------
_UPSERT = f"""
INSERT INTO {S}.invoices (id, account_id, version, token_hash, number, status, subscription_id, currency, lines,
    subtotal, discount, tax, total, amount_paid, due_date, email, language, online_payment, payment_methods,
    collect_billing_address, collect_shipping_address, collect_payment_method, test_mode, updated_at)
VALUES ($1, $2, $3, decode($4, 'hex'), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21, $22, $23, now())
ON CONFLICT (id) DO UPDATE SET
    version = EXCLUDED.version, token_hash = EXCLUDED.token_hash, number = EXCLUDED.number,
    status = EXCLUDED.status, currency = EXCLUDED.currency, lines = EXCLUDED.lines,
    subtotal = EXCLUDED.subtotal, discount = EXCLUDED.discount, tax = EXCLUDED.tax, total = EXCLUDED.total,
    amount_paid = EXCLUDED.amount_paid, due_date = EXCLUDED.due_date, email = EXCLUDED.email,
    language = EXCLUDED.language, online_payment = EXCLUDED.online_payment,
    payment_methods = EXCLUDED.payment_methods, collect_billing_address = EXCLUDED.collect_billing_address,
    collect_shipping_address = EXCLUDED.collect_shipping_address,
    collect_payment_method = EXCLUDED.collect_payment_method, test_mode = EXCLUDED.test_mode, updated_at = now()
WHERE {S}.invoices.version < EXCLUDED.version
RETURNING *
"""


@registry.on("invoice.updated")
async def on_invoice_updated(
    ctx: HandlerContext, conn: asyncpg.Connection, event: InvoiceUpdatedV1, envelope: EventEnvelope
) -> None:
    row = await conn.fetchrow(
        _UPSERT,
        event.invoice_id,
        envelope.account_id,
        event.version,
        event.token_hash,
        event.number,
        event.status,
        event.subscription_id,
        event.currency.upper(),
        [line.model_dump(mode="json") for line in event.lines],
        event.subtotal,
        event.discount,
        event.tax,
        event.total,
        event.amount_paid,
        event.due_date,
        event.email,
        event.language,
        event.online_payment,
        event.payment_methods,
        event.collect_billing_address,
        event.collect_shipping_address,
        event.collect_payment_method,
        event.test_mode,
    )
    if row is not None and not _payable(row):
        # Paid elsewhere, voided, or online payment turned off: its open session takes no
        # new charge (a charge already at the processor is still recorded, and billing
        # keeps the invoice's state; the merchant refunds it).
        await conn.execute(
            f"""UPDATE {S}.checkout_sessions SET status = 'expired'
                WHERE account_id = $1 AND source_type = 'invoice' AND source_id = $2 AND status = 'open'""",
            envelope.account_id,
            event.invoice_id,
        )


def _payable(row: Any) -> bool:
    return row["status"] in PAYABLE and row["online_payment"] and row["total"] - row["amount_paid"] > 0


# -- a checkout session for any source -----------------------------------------------------------
async def open_session_for(
    conn: asyncpg.Connection,
    account: Account,
    *,
    token: str,
    source_type: str,
    source_id: str,
    currency: str,
    line_items: list[dict],
    settings: dict,
    test_mode: bool,
    ttl: timedelta,
) -> asyncpg.Record:
    """Insert an open checkout session for ``source`` (an invoice, a quote) whose page is
    ``/checkout/{token}``: the stored items and settings are what the page shows and
    prices, exactly as for a link (`sessions.service`)."""
    now = account.clock.now()
    return await sessions_repo.insert_session(
        conn,
        id=new_id("cs"),
        account_id=account.id,
        token_hash=token_hash(token),
        csrf_token=secrets.token_urlsafe(24),
        source_type=source_type,
        source_id=source_id,
        test_mode=test_mode,
        currency=currency,
        line_items=line_items,
        settings=settings,
        created_at=now,
        expires_at=now + ttl,
    )


def session_items(invoice_id: str, lines: list[dict]) -> list[dict]:
    """The invoice's lines as fixed one-time checkout items (no optional, no quantities
    or amounts to choose); the page prices them with the same rules (`shared.pricing`)."""
    items = []
    for index, line in enumerate(lines, start=1):
        rate = line.get("tax_rate")
        period = f"{line['period_start']} – {line['period_end']}" if line.get("period_start") else None
        items.append(
            {
                "id": f"{invoice_id}_{index}",
                "name": line["name"],
                "description": line.get("description") or period,
                "quantity": line["quantity"],
                "unit_amount": line["unit_amount"],
                "unit_discount": {"amount_off": line["unit_discount"]} if line.get("unit_discount") else None,
                "tax_rate": rate or None,
                "recurring": None,
            }
        )
    return items


def _priced_total(items: list[dict], currency: str, account: Account) -> int | None:
    try:
        summary = price(links_service.pricing_items(items), currency, checkout_day=links_service.today(account))
    except PricingError:
        return None
    return summary.total_due_now


class InvoiceCheckoutOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_token: str
    #: The checkout page: ``/checkout/{session_token}``.
    url: str


class InvoiceNotPayable(Conflict):
    slug = "invoice-not-payable"


async def checkout_for_invoice(request: web.Request, token: str) -> str:
    """The session token to pay the invoice of page token ``token`` (see the module)."""
    pool = request.app[APP_POOL]
    settings = request.app[SETTINGS]
    found = await pool.fetchrow(f"SELECT account_id, invoice_id FROM {S}.resolve_invoice_token($1)", token_hash(token))
    if found is None:
        raise NotFound("This invoice does not exist.")
    async with tenant_tx(pool, found["account_id"]) as conn:
        inv = await conn.fetchrow(
            f"SELECT * FROM {S}.invoices WHERE account_id = $1 AND id = $2 FOR UPDATE",
            found["account_id"],
            found["invoice_id"],
        )
        account = await load_account(conn, S, found["account_id"])
        if inv is None or account is None:
            raise NotFound("This invoice does not exist.")
        if inv["status"] in ("paid", "void"):
            raise InvoiceNotPayable(f"This invoice is {inv['status']}.")
        if not _payable(inv):
            raise InvoiceNotPayable("This invoice cannot be paid online; please contact the merchant.")
        reused = await sources.current_session_token(
            conn,
            account,
            settings.common,
            purpose=SESSION_PURPOSE,
            record=inv,
            paid=InvoiceNotPayable("This invoice has just been paid."),
            noun="invoice",
        )
        if reused is not None:
            return reused
        items = session_items(inv["id"], inv["lines"])
        due = inv["total"] - inv["amount_paid"]
        if _priced_total(items, inv["currency"], account) != due:
            log.error("invoice lines do not price to its amount due", invoice_id=inv["id"], amount_due=due)
            raise InvoiceNotPayable("This invoice cannot be paid online; please contact the merchant.")
        seq = inv["session_seq"] + 1
        session_token = derive_token(settings.common, SESSION_PURPOSE, f"{inv['id']}:{seq}")
        session = await open_session_for(
            conn,
            account,
            token=session_token,
            source_type="invoice",
            source_id=inv["id"],
            currency=inv["currency"],
            line_items=items,
            settings={
                "invoice_number": inv["number"],
                "payment_methods": list(inv["payment_methods"]),
                "collect_billing_address": inv["collect_billing_address"],
                "collect_shipping_address": inv["collect_shipping_address"],
                "contact_fields": [{"property": "email", "required": True}],
                "after_completion": {"type": "message"},
            },
            test_mode=inv["test_mode"],
            ttl=timedelta(hours=settings.session_ttl_hours),
        )
        await conn.execute(
            f"UPDATE {S}.invoices SET session_id = $2, session_seq = $3 WHERE id = $1", inv["id"], session["id"], seq
        )
    return session_token


@routes.post("/api/invoices/{token}/checkout")
@operation(
    "Open a checkout session to pay an invoice",
    status=201,
    response=InvoiceCheckoutOut,
    responses={303: Redirect("A form post (the invoice page's button): to /checkout/{session_token}")},
    errors=(409,),
)
async def invoice_checkout(request: web.Request) -> web.Response:
    """201 ``{session_token, url}``; the invoice page's button posts a form and is sent
    to the checkout page (303). 409 once the invoice is paid or void."""
    return await sources.pay_button(request, lambda: checkout_for_invoice(request, request.match_info["token"]))
