"""The rules of webhook endpoints: where they may point, their secrets, their changes.

A URL is vetted twice: here when it is registered or changed (the URL rules and every
address its host resolves to now, `sender.vet_target`), and again at every connection
(`sender.VettedResolver`). The secret is stored encrypted with ``COMMERCE_SECRET_KEY``
(like processor secrets, shared/secrets.py) because the sender needs it to sign; the
API shows it once, in the answer to the creation.
"""

from __future__ import annotations

import secrets as random
from datetime import datetime
from typing import Any

import asyncpg

from shared.config import CommonSettings
from shared.ids import new_id
from shared.secrets import encrypt
from shared.web.problem import Conflict, ValidationProblem, field_error

from . import repository as repo
from . import ssrf
from .schemas import MAX_ENDPOINTS, NOT_NULL, EndpointCreate, EndpointPatch
from .sender import vet_target

#: After a rotation the previous secret signs too for this long (receivers switch over).
ROTATION_OVERLAP_S = 24 * 3600


def new_secret() -> str:
    return "whsec_" + random.token_urlsafe(32)


async def vet_url(url: str, policy: ssrf.Policy, *, resolve_timeout: float) -> str:
    """The URL if this account may send to it, else a 422 naming ``url``."""
    try:
        await vet_target(url, policy, resolve_timeout=resolve_timeout)
    except ssrf.UrlRefused as exc:
        raise field_error("url", str(exc)) from None
    return url


async def create_endpoint(
    conn: asyncpg.Connection,
    common: CommonSettings,
    *,
    account_id: str,
    body: EndpointCreate,
    now: datetime,
) -> tuple[asyncpg.Record, str]:
    """(the endpoint, its secret in clear): the URL is already vetted (`vet_url`)."""
    if await repo.count_endpoints(conn, account_id) >= MAX_ENDPOINTS:
        raise Conflict(f"An account may have at most {MAX_ENDPOINTS} webhook endpoints; delete one first.")
    secret = body.secret or new_secret()
    row = await repo.insert_endpoint(
        conn,
        endpoint_id=new_id("we"),
        account_id=account_id,
        url=body.url,
        events=body.events,
        description=body.description,
        secret_encrypted=encrypt(common, secret),
        created_at=now,
    )
    return row, secret


def patch_changes(patch: EndpointPatch) -> dict[str, Any]:
    """The columns a PATCH changes (the URL, if given, is vetted by the caller)."""
    given = patch.model_fields_set
    nulls = [{"field": f, "message": "may not be null"} for f in NOT_NULL if f in given and getattr(patch, f) is None]
    if nulls:
        raise ValidationProblem(nulls)
    return {name: getattr(patch, name) for name in ("url", "events", "description", "status") if name in given}
