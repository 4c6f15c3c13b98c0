"""API-key authentication and scopes for the admin API (``/v1/...``).

Keys are random (``ck_test_…`` / ``ck_live_…``); only their SHA-256 is stored. Each
service resolves a key through its own ``<schema>.authenticate_api_key`` function
(SECURITY DEFINER: the only cross-account read the runtime role may make, and it returns
just the key's account and scopes). Non-owner services hold a projection of the keys,
kept current by ``account.updated`` events.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aiohttp import web

from ..logging import bound
from .keys import APP_POOL, AUTH, SCHEMA
from .problem import Forbidden, Unauthorized

#: A write scope implies the matching read scope; ``*`` is the administrator.
SCOPES = (
    "*",
    "settings:read",
    "settings:write",
    "links:read",
    "links:write",
    "quotes:read",
    "quotes:write",
    "subscriptions:read",
    "subscriptions:write",
    "payments:read",
    "payments:write",
    "crm:read",
    "crm:write",
    "emails:read",
    "webhooks:read",
    "webhooks:write",
    "events:read",  # the event feed, GET /v1/events (issue 5, part 4)
)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuthContext:
    account_id: str
    key_id: str
    scopes: frozenset[str]
    test_mode: bool

    def allows(self, scope: str) -> bool:
        if "*" in self.scopes or scope in self.scopes:
            return True
        area, _, action = scope.partition(":")
        return action == "read" and f"{area}:write" in self.scopes

    def require(self, scope: str) -> None:
        if not self.allows(scope):
            raise Forbidden(f"This API key lacks the '{scope}' scope.")


def auth(request: web.Request) -> AuthContext:
    ctx = request.get(AUTH)
    if ctx is None:  # a handler outside /v1/ asked for auth: a programming error
        raise Unauthorized()
    return ctx


def require(request: web.Request, scope: str) -> AuthContext:
    ctx = auth(request)
    ctx.require(scope)
    return ctx


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    token = token.strip()
    if len(token) > 200 or not token.isascii():
        raise Unauthorized("The API key is malformed.")
    return token


@web.middleware
async def auth_middleware(request: web.Request, handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    key = _bearer(request)
    schema = request.app[SCHEMA]
    row = await request.app[APP_POOL].fetchrow(
        f"SELECT key_id, account_id, scopes, test_mode FROM {schema}.authenticate_api_key($1)",
        hash_api_key(key),
    )
    if row is None:
        raise Unauthorized("The API key is unknown or revoked.")
    request[AUTH] = AuthContext(
        account_id=row["account_id"],
        key_id=row["key_id"],
        scopes=frozenset(row["scopes"]),
        test_mode=row["test_mode"],
    )
    with bound(account_id=row["account_id"]):
        return await handler(request)
