"""The request's database transaction, and ``Idempotency-Key`` for admin POSTs.

Handlers write through `request_tx`, which opens a tenant transaction for the caller's
account — or, when the request carries an ``Idempotency-Key``, reuses the transaction
the idempotency middleware opened. That transaction holds the key's row lock, so:
- a retry with the same key and body gets the stored first response;
- the same key with another body is a 422;
- two concurrent requests with one key never both execute (the second waits on the row
  lock, then replays the first's response);
- the stored response commits atomically with the handler's writes.
Work that must wait for the commit (e.g. waiting for subscribers) registers with
`on_commit`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import web

from ..db import tenant_tx
from .auth import auth
from .keys import APP_POOL, COMMIT_HOOKS, IDEMPOTENT_CONN, SCHEMA
from .problem import PROBLEM_JSON, Problem, ValidationProblem

CommitHook = Callable[[], Awaitable[None]]


def on_commit(request: web.Request, hook: CommitHook) -> None:
    request.setdefault(COMMIT_HOOKS, []).append(hook)


async def _run_commit_hooks(request: web.Request) -> None:
    hooks = request.pop(COMMIT_HOOKS, [])
    for hook in hooks:
        await hook()


@asynccontextmanager
async def request_tx(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    shared = request.get(IDEMPOTENT_CONN)
    if shared is not None:
        yield shared
        return
    async with tenant_tx(request.app[APP_POOL], auth(request).account_id) as conn:
        yield conn
    await _run_commit_hooks(request)


def _request_fingerprint(request: web.Request, body: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0")
    digest.update(request.rel_url.path_qs.encode())
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def _stored_response(status: int, body: dict | list | None, content_type: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=content_type,
        headers={"Idempotent-Replayed": "true"},
    )


@web.middleware
async def idempotency_middleware(request: web.Request, handler) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if key is None or request.method != "POST" or not request.path.startswith("/v1/"):
        return await handler(request)
    if not key or len(key) > 255 or not key.isascii() or not key.isprintable():
        raise ValidationProblem([{"field": "Idempotency-Key", "message": "must be 1–255 printable ASCII characters"}])
    ctx = auth(request)
    schema = request.app[SCHEMA]
    fingerprint = _request_fingerprint(request, await request.read())
    async with tenant_tx(request.app[APP_POOL], ctx.account_id) as conn:
        await conn.execute(
            f"INSERT INTO {schema}.idempotency_keys (account_id, key, request_hash) "
            f"VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            ctx.account_id,
            key,
            fingerprint,
        )
        row = await conn.fetchrow(
            f"SELECT request_hash, response_status, response_body, response_type "
            f"FROM {schema}.idempotency_keys WHERE account_id = $1 AND key = $2 FOR UPDATE",
            ctx.account_id,
            key,
        )
        if row["request_hash"] != fingerprint:
            raise ValidationProblem(
                [{"field": "Idempotency-Key", "message": "was already used with a different request"}],
                detail="This Idempotency-Key was used with a different request body.",
            )
        if row["response_status"] is not None:
            return _stored_response(row["response_status"], row["response_body"], row["response_type"])
        request[IDEMPOTENT_CONN] = conn
        try:
            try:
                async with conn.transaction():  # savepoint: a refusal undoes partial writes
                    response = await handler(request)
            except Problem as problem:
                if problem.status >= 500:
                    raise
                request.pop(COMMIT_HOOKS, None)
                response = problem.to_response()
        finally:
            request.pop(IDEMPOTENT_CONN, None)
        if isinstance(response, web.Response) and response.status < 500 and response.body is not None:
            content_type = response.content_type or "application/json"
            body_bytes = response.body if isinstance(response.body, bytes) else b"null"
            try:
                stored = json.loads(body_bytes or b"null")
            except ValueError:
                stored = None
            if stored is not None or content_type in ("application/json", PROBLEM_JSON):
                await conn.execute(
                    f"UPDATE {schema}.idempotency_keys SET response_status = $3, "
                    f"response_body = $4, response_type = $5 WHERE account_id = $1 AND key = $2",
                    ctx.account_id,
                    key,
                    response.status,
                    stored,
                    content_type,
                )
    await _run_commit_hooks(request)
    return response
