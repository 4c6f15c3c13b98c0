"""HTTP: GET /v1/events — the account's event feed, oldest first after a cursor."""

from __future__ import annotations

from aiohttp import web

from shared.web.auth import require
from shared.web.openapi import ListOf, operation
from shared.web.pagination import list_page
from shared.web.problem import field_error
from shared.web.request import parse_query
from shared.web.tx import request_tx

from . import repository as repo
from .schemas import EventList, EventOut, event_out

routes = web.RouteTableDef()


@routes.get("/v1/events")
@operation(
    "The account's event feed",
    scope="events:read",
    query=EventList,
    response=ListOf(EventOut),
    description="Every event of the account, oldest first; pass the last id you read as `starting_after` "
    "to continue. A cursor never skips an event. An unknown cursor is a 422 (never an empty page).",
)
async def list_events(request: web.Request) -> web.Response:
    ctx = require(request, "events:read")
    query = parse_query(request, EventList)
    async with request_tx(request) as conn:
        after = None
        if query.starting_after is not None:
            after = await repo.seq_of(conn, ctx.account_id, query.starting_after)
            if after is None:
                raise field_error("starting_after", "is not an event of this account")
        rows = await repo.list_after(conn, ctx.account_id, after, query.fetch_limit)
    return list_page(rows, query, event_out)
