"""Events crm_sync consumes about purchases, and HTTP: /v1/contacts."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from shared.accounts import load_account
from shared.events import EventEnvelope
from shared.events.models import ContactUpsertedV1, PurchaseCompletedV1
from shared.inbox import HandlerContext, HandlerRegistry
from shared.outbox import publish_event
from shared.web.auth import require
from shared.web.openapi import ListOf, operation
from shared.web.pagination import list_page
from shared.web.problem import NotFound
from shared.web.request import parse_body, parse_query
from shared.web.tx import request_tx

from ..crm import records
from ..crm.purchases import apply_purchase
from ..crm.schemas import AssociationsOut, associations_out
from ..crm.service import account_now
from . import repository as repo
from . import service, upserts
from .schemas import (
    ContactBatch,
    ContactBatchOut,
    ContactCreate,
    ContactList,
    ContactOut,
    ContactUpdate,
    batch_out,
    contact_out,
)

registry = HandlerRegistry("crm_sync")
routes = web.RouteTableDef()


@registry.on("purchase.completed")
async def on_purchase_completed(
    ctx: HandlerContext, conn: asyncpg.Connection, event: PurchaseCompletedV1, envelope: EventEnvelope
) -> None:
    """PRODUCT §4.2 points 2–3: the buyer's contact (by e-mail, any case; empty values
    never erase stored ones), the company and the deal rule (``crm/purchases.py``); then
    tell checkout the payment's contact, company and deals (``contact.upserted``)."""
    account_id = envelope.account_id
    account = await load_account(conn, ctx.schema, account_id)
    now = account.clock.now() if account else event.paid_at
    contact = await upserts.upsert_contact(conn, account_id, event.contact.model_dump(), now)
    # A payment belongs to the contact whose e-mail paid (PRODUCT §9).
    await repo.associate(conn, account_id, "contact", contact["id"], "payment", event.payment_id)
    if event.source.get("type") == "payment_link":
        await repo.associate(conn, account_id, "contact", contact["id"], "payment_link", event.source["id"])
    outcome = await apply_purchase(conn, account_id, event, contact, now)
    await records.record_changed(conn, account_id, "contact", outcome.contact, now)
    await publish_event(
        conn,
        schema=ctx.schema,
        producer="crm_sync",
        account_id=account_id,
        event=ContactUpsertedV1(
            contact_id=contact["id"],
            email=contact["email"],
            company_id=outcome.company_id,
            payment_id=event.payment_id,
            created=contact["created"],
            deal_ids=outcome.deal_ids,
        ),
        occurred_at=now,
    )


@routes.post("/v1/contacts")
@operation(
    "Create a contact",
    scope="crm:write",
    body=ContactCreate,
    example={"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace"},
    status=201,
    response=ContactOut,
    errors=(409,),
)
async def create_contact(request: web.Request) -> web.Response:
    ctx = require(request, "crm:write")
    body = await parse_body(request, ContactCreate)
    async with request_tx(request) as conn:
        now = await account_now(conn, ctx.account_id)
        row = await service.create_contact(conn, ctx.account_id, body, now)
    return web.json_response(contact_out(row), status=201)


@routes.post("/v1/contacts/batch/upsert")
@operation(
    "Create or update contacts in bulk",
    scope="crm:write",
    body=ContactBatch,
    example={
        "contacts": [
            {"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace", "company": "Engines"},
            {"email": "grace@example.com", "city": "Arlington", "country": "US"},
        ]
    },
    response=ContactBatchOut,
    description=(
        "Up to 1,000 contacts (and 1 MB) per request, each found by its e-mail address in any letter case "
        "and created or updated: a value replaces the stored one, an empty or missing one never erases it. "
        "Rows of one e-mail are merged (later values win). A row whose values are invalid is refused alone "
        "(`status: failed` with its `errors`); the others are written. 200 with one result per row."
    ),
)
async def upsert_contacts_batch(request: web.Request) -> web.Response:
    ctx = require(request, "crm:write")
    # Text is checked row by row (upserts.upsert_batch), not for the whole body.
    body = await parse_body(request, ContactBatch, scan=False)
    async with request_tx(request) as conn:
        now = await account_now(conn, ctx.account_id)
        outcome = await upserts.upsert_batch(conn, ctx.account_id, [row.model_dump() for row in body.contacts], now)
    return web.json_response(batch_out(outcome))


@routes.get("/v1/contacts")
@operation("List contacts", scope="crm:read", query=ContactList, response=ListOf(ContactOut))
async def list_contacts(request: web.Request) -> web.Response:
    ctx = require(request, "crm:read")
    q = parse_query(request, ContactList)
    async with request_tx(request) as conn:
        rows = await repo.list_contacts(
            conn, ctx.account_id, email=q.email, limit=q.fetch_limit, starting_after=q.starting_after
        )
    return list_page(rows, q, contact_out)


@routes.get("/v1/contacts/{contact_id}")
@operation("Get a contact", scope="crm:read", response=ContactOut)
async def get_contact(request: web.Request) -> web.Response:
    ctx = require(request, "crm:read")
    async with request_tx(request) as conn:
        row = await repo.get_contact(conn, ctx.account_id, request.match_info["contact_id"])
    if row is None:
        raise NotFound("No such contact.")
    return web.json_response(contact_out(row))


@routes.patch("/v1/contacts/{contact_id}")
@operation(
    "Change a contact",
    scope="crm:write",
    body=ContactUpdate,
    example={"jobtitle": "Analyst", "city": "London"},
    response=ContactOut,
    errors=(409,),
)
async def update_contact(request: web.Request) -> web.Response:
    ctx = require(request, "crm:write")
    body = await parse_body(request, ContactUpdate)
    async with request_tx(request) as conn:
        now = await account_now(conn, ctx.account_id)
        row = await service.update_contact(conn, ctx.account_id, request.match_info["contact_id"], body, now)
    return web.json_response(contact_out(row))


@routes.get("/v1/contacts/{contact_id}/associations")
@operation("List a contact's associated records", scope="crm:read", response=AssociationsOut)
async def contact_associations(request: web.Request) -> web.Response:
    """Payments, subscriptions, deals, quotes, payment links — and companies."""
    ctx = require(request, "crm:read")
    async with request_tx(request) as conn:
        row = await repo.get_contact(conn, ctx.account_id, request.match_info["contact_id"])
        if row is None:
            raise NotFound("No such contact.")
        related = await repo.related(conn, ctx.account_id, "contact", row["id"])
    return web.json_response(associations_out("contact", row["id"], related))
