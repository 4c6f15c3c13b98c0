"""Checkout sessions opened for another record — an invoice, a quote — by its public
page's "Pay" button: one open session per record at a time, its token derived from the
record id and a sequence number (never stored), and the button's two answers (a form
post is sent on to the checkout page, a JSON call gets the session)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from shared.accounts import Account
from shared.config import CommonSettings
from shared.secrets import derive_token
from shared.web.keys import SETTINGS
from shared.web.problem import Conflict, Problem

from . import repository as sessions_repo

S = "checkout"
_FORM = "application/x-www-form-urlencoded"


async def charge_may_be_under_way(conn: asyncpg.Connection, account_id: str, session_id: str) -> bool:
    return bool(
        await conn.fetchval(
            f"""SELECT EXISTS (SELECT 1 FROM {S}.processor_operations
                WHERE account_id = $1 AND subject_id = $2 AND kind = 'charge'
                  AND status IN ('pending', 'requires_action', 'unknown'))""",
            account_id,
            session_id,
        )
    )


async def current_session_token(
    conn: asyncpg.Connection,
    account: Account,
    settings: CommonSettings,
    *,
    purpose: str,
    record: asyncpg.Record,
    paid: Problem,
    noun: str,
) -> str | None:
    """The token of ``record``'s open session while it lasts; None when a new one is to
    be opened. ``paid`` is raised when that session completed; 409 while its charge may
    still be under way."""
    if not record["session_id"]:
        return None
    current = await sessions_repo.get_session(conn, account.id, record["session_id"])
    if current is not None and current["status"] == "complete":
        raise paid
    if current is not None and current["status"] == "open" and account.clock.now() < current["expires_at"]:
        return derive_token(settings, purpose, f"{record['id']}:{record['session_seq']}")
    if current is not None and await charge_may_be_under_way(conn, account.id, current["id"]):
        raise Conflict(f"A payment of this {noun} is under way; try again in a minute.")
    return None


async def pay_button(request: web.Request, open_session: Callable[[], Awaitable[str]]) -> web.Response:
    """201 ``{session_token, url}``; the page's form post is sent to the checkout page
    (303), and a refusal comes back to it as a page."""
    form = request.content_type == _FORM
    try:
        session_token = await open_session()
    except Problem as problem:
        if not form or problem.status >= 500:
            raise
        from .handlers import _message_page

        return _message_page(request, problem)
    path = f"/checkout/{session_token}"
    if form:
        return web.Response(status=303, headers={"Location": path, "Cache-Control": "no-store"})
    base = request.app[SETTINGS].common.public_base_url.rstrip("/")
    return web.json_response(
        {"session_token": session_token, "url": f"{base}{path}"}, status=201, headers={"Cache-Control": "no-store"}
    )
