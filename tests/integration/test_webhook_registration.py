"""Checkout's worker keeps test-mode accounts' webhook endpoints registered at the test
processor: new accounts and reconnected processors (new secret) are registered, and a
test processor that is down only delays it."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
from aiohttp import web

from devtools.infra import free_port
from services.checkout.webhooks.registration import EndpointRegistrar
from shared.config import CommonSettings
from shared.secrets import encrypt


async def add_account(owner_dsn: str, settings: CommonSettings, secret: str) -> str:
    account_id = f"acct_reg_{uuid.uuid4().hex[:10]}"
    processor = {"type": "test", "webhook_secret_encrypted": encrypt(settings, secret)}
    conn = await asyncpg.connect(owner_dsn)
    try:
        await conn.execute(
            "INSERT INTO checkout.accounts (id, version, name, test_mode, settings, processor) "
            "VALUES ($1, 1, 'Reg', true, '{}'::jsonb, $2::jsonb)",
            account_id,
            json.dumps(processor),
        )
    finally:
        await conn.close()
    return account_id


async def reconnect(owner_dsn: str, settings: CommonSettings, account_id: str, secret: str) -> None:
    conn = await asyncpg.connect(owner_dsn)
    try:
        await conn.execute(
            "UPDATE checkout.accounts SET version = version + 1, processor = $2::jsonb WHERE id = $1",
            account_id,
            json.dumps({"type": "test", "webhook_secret_encrypted": encrypt(settings, secret)}),
        )
    finally:
        await conn.close()


@pytest.fixture
async def fake_processor():
    """A stand-in for the test processor's ``/_config/webhooks/{id}`` (started on demand)."""
    registrations: dict[str, dict] = {}
    port = free_port()
    runners: list[web.AppRunner] = []

    async def register(request: web.Request) -> web.Response:
        registrations[request.match_info["id"]] = await request.json()
        return web.Response()

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/_config/webhooks/{id}", register)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)

    yield f"http://127.0.0.1:{port}", registrations, start
    for runner in runners:
        await runner.cleanup()


async def test_accounts_are_registered_when_new_or_reconnected_and_the_processor_may_be_down(dsn, fake_processor):
    url, registrations, start = fake_processor
    settings = CommonSettings(test_processor_url=url, public_base_url="http://router.test")
    owner = dsn("checkout", owner=True)
    account_id = await add_account(owner, settings, "whsec_first")
    registrar = EndpointRegistrar(owner, settings, interval=0.05, max_backoff=0.2)
    await registrar.start()
    try:
        await asyncio.sleep(0.5)  # the test processor is down: nothing breaks, nothing registered
        assert account_id not in registrations and not registrar._task.done()
        await start()
        for _ in range(100):
            if account_id in registrations:
                break
            await asyncio.sleep(0.05)
        assert registrations[account_id] == {
            "url": f"http://router.test/webhooks/stripe/{account_id}",
            "secret": "whsec_first",
        }
        await reconnect(owner, settings, account_id, "whsec_second")
        for _ in range(100):
            if registrations[account_id]["secret"] == "whsec_second":
                break
            await asyncio.sleep(0.05)
        assert registrations[account_id]["secret"] == "whsec_second"
    finally:
        await registrar.stop()
