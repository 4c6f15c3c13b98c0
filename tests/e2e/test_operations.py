"""Operations: health, readiness and metrics on every process type, and one correlation id
that follows a purchase through all four services' logs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
import pytest

from devtools import infra
from devtools.stack import ROOT, SERVICES
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def test_every_serve_process_answers_health_readiness_and_metrics(http, stack):
    for service in SERVICES:
        base = f"http://127.0.0.1:{stack.config.ports.service(service)}"
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with http.get(f"{base}/readyz") as r:
            body = await r.json()
            assert r.status == 200, body
            assert body["checks"] == {"postgres": "ok", "redis": "ok"}
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            assert "commerce_http_request_duration_seconds" in text


@pytest.mark.parametrize("role", ["worker", "relay"])
async def test_worker_and_relay_processes_serve_ops_endpoints(stack, role):
    port = infra.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.billing", role, "--metrics-port", str(port)],
        cwd=ROOT,
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def ready():
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, timeout=60, interval=0.2)
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 200
                if role == "worker":
                    text = await r.text()
                    assert "commerce_worker_threads{" in text and 'service="billing"' in text
    finally:
        process.terminate()
        process.wait(30)
    assert process.returncode == 0  # a clean shutdown on SIGTERM


def _log_events(stack, prefix: str, correlation_id: str) -> list[dict]:
    found = []
    for path in (stack.config.run_dir / "logs").glob(f"{prefix}*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if correlation_id in line:
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
    return found


async def test_one_correlation_id_follows_a_purchase_through_every_service(stack, api, buyer, link):
    correlation_id = "corr" + "0123456789abcdef" * 2
    await buyer.open(link["url"])
    submitted = await buyer.submit({"email": "trace@example.com"})
    await buyer.confirm_card(submitted.body["payment"]["client_secret"])
    done = await buyer.api.post(
        f"/api/checkout/{buyer.token}/complete",
        {},
        headers={"X-CSRF-Token": buyer.csrf, "X-Request-Id": correlation_id},
    )
    assert done.status == 200, done.body
    assert done.headers["X-Request-Id"] == correlation_id

    async def seen_everywhere():
        await asyncio.sleep(0)
        return all(
            any(e.get("event") == "event handled" for e in _log_events(stack, f"{service}-worker", correlation_id))
            for service in ("billing", "notifications", "crm_sync")
        )

    await eventually(seen_everywhere, timeout=20, interval=0.2)
    (recorded,) = [e for e in _log_events(stack, "checkout-serve", correlation_id) if e["event"] == "payment recorded"]
    assert recorded["payment_id"] == done.body["payment_id"]
    for service in ("billing", "notifications", "crm_sync"):
        events = _log_events(stack, f"{service}-worker", correlation_id)
        assert {e["correlation_id"] for e in events} == {correlation_id}
        assert any(e.get("event_type") == "purchase.completed" for e in events)
