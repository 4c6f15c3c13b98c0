"""HTTP: ``POST /webhooks/stripe/{account_id}`` — the processor's webhooks (no API key;
the signature is the authentication).

Answers: 200 ``{"received": true, "duplicate": bool}`` once the event is stored (a
repeat is a duplicate, and 200 too, so the processor stops retrying it); 413 for a body
over `MAX_WEBHOOK_BYTES` (refused by its Content-Length, or while streaming, before it is
read whole); 400 for a missing, malformed, stale, future-dated or non-matching signature,
or a body that is not an event; 404 for an unknown account. Errors are problem+json and
leave nothing behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from shared.web.keys import APP_POOL, EXTRAS, SETTINGS
from shared.web.openapi import operation
from shared.web.problem import PayloadTooLarge

from .schemas import WebhookReceived
from .service import WebhookReceiver

routes = web.RouteTableDef()

#: Stripe's events are a few KB; the largest (an invoice with many lines) stays far below.
MAX_WEBHOOK_BYTES = 256 * 1024
RECEIVER = "webhook_receiver"


async def read_limited(request: web.Request, limit: int = MAX_WEBHOOK_BYTES) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit``: by its
    Content-Length before reading anything, else while streaming (chunked bodies)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"A webhook body is at most {limit} bytes.")
    chunks, size = [], 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"A webhook body is at most {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


@routes.post("/webhooks/stripe/{account_id}")
@operation(
    "Receive a processor (Stripe) webhook",
    body={"type": "object", "description": "A Stripe event: id, type, data.object"},
    response=WebhookReceived,
    errors=(400, 413),
    headers={"Stripe-Signature": (True, "Stripe's signature of the body, checked with the account's webhook secret")},
    description="The body is a Stripe event object, read as bytes (at most 256 KiB) and verified by its signature.",
)
async def stripe_webhook(request: web.Request) -> web.Response:
    payload = await read_limited(request)
    received = await request.app[EXTRAS][RECEIVER].receive(
        request.match_info["account_id"], payload, request.headers.get("Stripe-Signature")
    )
    return web.json_response({"received": True, "duplicate": received.duplicate, "event_id": received.event_id})


async def receiver_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry: the receiver (and its secret cache) of this process."""
    app[EXTRAS][RECEIVER] = WebhookReceiver(app[APP_POOL], app[SETTINGS].common)
    yield
