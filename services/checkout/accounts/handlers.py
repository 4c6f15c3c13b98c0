"""HTTP: /v1/account, /v1/account/processor, /v1/api_keys, /v1/test_clock."""

from __future__ import annotations

from aiohttp import web

from shared.accounts import account_from_row
from shared.clock import rfc3339
from shared.processor.base import ProcessorConfig, ProcessorError, ProcessorUnavailable
from shared.processor.registry import config_for
from shared.processor.stripe_adapter import StripeProcessor
from shared.secrets import encrypt
from shared.web.auth import require
from shared.web.keys import APP_POOL, SETTINGS
from shared.web.openapi import ListOf, operation
from shared.web.problem import Conflict, NotFound, Problem, ServiceUnavailable, field_error
from shared.web.request import json_body, parse_body, validate
from shared.web.tx import on_commit, request_tx

from . import repository as repo
from . import service
from .schemas import (
    ACCOUNT_NOT_NULL,
    AccountOut,
    AccountPatch,
    ApiKeyCreated,
    ApiKeyOut,
    ClockAdvance,
    KeyCreate,
    ProcessorConnect,
    ProcessorOut,
    StripeConnect,
    TestClockOut,
    TestConnect,
    account_out,
    key_out,
)

routes = web.RouteTableDef()


def _propagate(request: web.Request, account_id: str, event_id: str, *, required: bool):
    async def wait() -> None:
        settings = request.app[SETTINGS]
        done = await service.wait_propagated(
            request.app[APP_POOL], account_id, [event_id], settings.propagation_timeout_s
        )
        if not done and required:
            raise Problem(
                "The change is saved but not every service confirmed it in time; retry the read shortly.",
                status=504,
                slug="propagation-timeout",
            )

    return wait


@routes.get("/v1/account")
@operation("Get the account and its settings", scope="settings:read", response=AccountOut)
async def get_account(request: web.Request) -> web.Response:
    ctx = require(request, "settings:read")
    async with request_tx(request) as conn:
        row = await repo.get_account_row(conn, ctx.account_id)
    return web.json_response(account_out(account_from_row(row), row["created_at"]))


@routes.patch("/v1/account")
@operation(
    "Change the account's settings",
    scope="settings:write",
    body=AccountPatch,
    example={"time_zone": "Europe/Stockholm", "shipping_enabled": True},
    response=AccountOut,
)
async def patch_account(request: web.Request) -> web.Response:
    ctx = require(request, "settings:write")
    patch = await parse_body(request, AccountPatch)
    changes = patch.model_dump(exclude_unset=True, mode="json")
    for field in ACCOUNT_NOT_NULL:
        if field in changes and changes[field] is None:
            raise field_error(field, "may not be null")
    async with request_tx(request) as conn:
        account, _event_id = await service.update_settings(conn, ctx.account_id, changes)
        row = await repo.get_account_row(conn, ctx.account_id)
    return web.json_response(account_out(account, row["created_at"]))


def _processor_out(request: web.Request, account) -> dict:
    settings = request.app[SETTINGS]
    webhook_url = f"{settings.common.public_base_url.rstrip('/')}/webhooks/stripe/{account.id}"
    if not account.processor:
        return {"type": None, "publishable_key": None, "webhook_url": webhook_url}
    config = config_for(account, settings.common)
    out = {
        "object": "processor",
        "type": config.type,
        "publishable_key": config.publishable_key,
        "webhook_url": webhook_url,
    }
    if config.type == "test":
        out["api_base"] = config.browser_api_base
    elif config.api_base:
        out["api_base"] = config.api_base
    if account.test_mode:
        out["webhook_secret"] = config.webhook_secret
    return out


@routes.get("/v1/account/processor")
@operation("Get the connected payment processor", scope="settings:read", response=ProcessorOut)
async def get_processor(request: web.Request) -> web.Response:
    ctx = require(request, "settings:read")
    async with request_tx(request) as conn:
        account = account_from_row(await repo.get_account_row(conn, ctx.account_id))
    return web.json_response(_processor_out(request, account))


@routes.post("/v1/account/processor")
@operation(
    "Connect Stripe keys, or the test processor (test-mode accounts)",
    scope="settings:write",
    body=ProcessorConnect,
    example={"type": "test"},
    response=ProcessorOut,
    errors=(409,),
)
async def connect_processor(request: web.Request) -> web.Response:
    ctx = require(request, "settings:write")
    data = await json_body(request)
    common = request.app[SETTINGS].common
    if data.get("type") == "test":
        validate(TestConnect, data)
        if not ctx.test_mode:
            raise Conflict("Live accounts cannot use the test processor; connect Stripe keys.")
        processor = service.test_processor_settings(common)
    else:
        body = validate(StripeConnect, data)
        live_keys = body.secret_key.startswith(("sk_live_", "rk_live_"))
        if live_keys == ctx.test_mode:
            raise field_error(
                "secret_key",
                "test-mode accounts take Stripe test keys, live accounts live keys",
            )
        if body.publishable_key.startswith("pk_live_") != live_keys:
            raise field_error("publishable_key", "must be of the same mode as the secret key")
        if body.api_base and not ctx.test_mode:
            raise field_error("api_base", "may only be set on test-mode accounts")
        probe = StripeProcessor(
            ProcessorConfig(
                type="stripe", secret_key=body.secret_key, publishable_key=body.publishable_key, api_base=body.api_base
            ),
            max_network_retries=common.processor_max_network_retries,
            timeout=common.processor_timeout_seconds,
        )
        try:
            stripe_account_id = await probe.verify_credentials()
        except ProcessorUnavailable:
            raise ServiceUnavailable("Stripe could not be reached to verify the keys.") from None
        except ProcessorError as exc:
            raise field_error("secret_key", f"was refused by Stripe: {exc}") from None
        finally:
            await probe.close()
        processor = {
            "type": "stripe",
            "publishable_key": body.publishable_key,
            "api_base": body.api_base,
            "stripe_account_id": stripe_account_id,
            "secret_key_encrypted": encrypt(common, body.secret_key),
            "webhook_secret_encrypted": encrypt(common, body.webhook_secret),
        }
    async with request_tx(request) as conn:
        account, event_id = await service.connect_processor(conn, ctx.account_id, processor)
        on_commit(request, _propagate(request, ctx.account_id, event_id, required=False))
    return web.json_response(_processor_out(request, account))


@routes.get("/v1/api_keys")
@operation("List API keys", scope="*", response=ListOf(ApiKeyOut))
async def list_keys(request: web.Request) -> web.Response:
    ctx = require(request, "*")
    async with request_tx(request) as conn:
        rows = await repo.list_api_keys(conn, ctx.account_id)
    return web.json_response({"object": "list", "data": [key_out(r) for r in rows], "has_more": False})


@routes.post("/v1/api_keys")
@operation(
    "Create an API key (shown once)",
    scope="*",
    body=KeyCreate,
    body_optional=True,
    example={"scopes": ["payments:read"]},
    status=201,
    response=ApiKeyCreated,
    errors=(504,),
)
async def create_key(request: web.Request) -> web.Response:
    ctx = require(request, "*")
    body = await parse_body(request, KeyCreate, allow_empty=True)
    async with request_tx(request) as conn:
        key, row, event_id = await service.create_key(conn, ctx.account_id, body.scopes)
        on_commit(request, _propagate(request, ctx.account_id, event_id, required=True))
    return web.json_response({**key_out(row), "key": key}, status=201)


@routes.post("/v1/api_keys/{key_id}/revoke")
@operation("Revoke an API key", scope="*", response=ApiKeyOut, errors=(504,))
async def revoke_key(request: web.Request) -> web.Response:
    ctx = require(request, "*")
    async with request_tx(request) as conn:
        row, event_id = await service.revoke_key(conn, ctx.account_id, request.match_info["key_id"])
        if row is None:
            raise NotFound("No such API key.")
        on_commit(request, _propagate(request, ctx.account_id, event_id, required=True))
    return web.json_response(key_out(row))


@routes.get("/v1/test_clock")
@operation("Get the test clock's time", scope="settings:read", response=TestClockOut, errors=(409,))
async def get_clock(request: web.Request) -> web.Response:
    ctx = require(request, "settings:read")
    async with request_tx(request) as conn:
        account = account_from_row(await repo.get_account_row(conn, ctx.account_id))
    if not account.test_mode:
        raise Conflict("Only test-mode accounts have a test clock.")
    return web.json_response({"object": "test_clock", "now": rfc3339(account.clock.now())})


@routes.post("/v1/test_clock/advance")
@operation(
    "Advance the test clock",
    scope="settings:write",
    body=ClockAdvance,
    example={"to": "2030-01-01T00:00:00Z"},
    response=TestClockOut,
    errors=(409, 504),
)
async def advance_clock(request: web.Request) -> web.Response:
    ctx = require(request, "settings:write")
    body = await parse_body(request, ClockAdvance)
    async with request_tx(request) as conn:
        account, event_id = await service.advance_clock(conn, ctx.account_id, body.to)
        # 200 only once every service has scheduled what became due (contract of API.md).
        on_commit(request, _propagate(request, ctx.account_id, event_id, required=True))
    return web.json_response({"object": "test_clock", "now": rfc3339(account.clock.now())})
