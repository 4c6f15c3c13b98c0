"""Helpers for subscription scenarios on the test clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from tests.support.client import Api
from tests.support.waiting import eventually


def at(day: str | date, hour: int = 12) -> str:
    """An instant on ``day`` (UTC), as the advance endpoint takes it."""
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return datetime.combine(d, time(hour), tzinfo=UTC).isoformat()


async def advance(api: Api, to: str) -> None:
    moved = await api.post("/v1/test_clock/advance", {"to": to})
    assert moved.status == 200, moved.body


def recurring_item(interval: str, amount: int, *, name: str | None = None, **recurring: Any) -> dict:
    return {
        "name": name or f"{interval} plan",
        "quantity": 1,
        "unit_amount": amount,
        "recurring": {"interval": interval, "payments": None, **recurring},
    }


async def subscription_link(api: Api, *items: dict, currency: str = "USD") -> dict:
    created = await api.post("/v1/payment_links", {"name": "Plan", "currency": currency, "line_items": list(items)})
    assert created.status == 201, created.body
    return created.body


async def subscriptions_of(api: Api, email: str | None = None) -> list[dict]:
    listed = await api.get("/v1/subscriptions?limit=100")
    assert listed.status == 200, listed.body
    subs = listed.body["data"]
    return [s for s in subs if email is None or (s["email"] or "").lower() == email.lower()]


async def wait_subscription(api: Api, sub_id: str, timeout: float = 20.0, **expected: Any) -> dict:
    async def probe():
        got = await api.get(f"/v1/subscriptions/{sub_id}")
        body = got.body
        return body if all(body.get(k) == v for k, v in expected.items()) else None

    try:
        return await eventually(probe, timeout=timeout)
    except AssertionError:
        current = (await api.get(f"/v1/subscriptions/{sub_id}")).body
        raise AssertionError(f"subscription never reached {expected}; now {current}") from None


async def processor_intents(http, processor_url: str, account_id: str) -> list[dict]:
    async with http.get(f"{processor_url}/_config/accounts/{account_id}/payment_intents") as r:
        assert r.status == 200
        return (await r.json())["data"]


async def configure_processor(http, processor_url: str, account_id: str, **controls: Any) -> dict:
    async with http.post(f"{processor_url}/_config/accounts/{account_id}", json=controls) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def update_payment_method(api: Api, buyer, sub_id: str, card: str) -> dict:
    """What a buyer does on the update page: start, confirm the card with the processor's
    fields, complete. Returns the complete answer's body (with ``retry``)."""
    link = await api.post(f"/v1/subscriptions/{sub_id}/payment_method_link", {})
    assert link.status in (200, 201), link.body
    token = link.body["url"].rstrip("/").rsplit("/", 1)[1]
    public = Api(api.session, api.base_url)
    view = await public.get(f"/api/payment-method/{token}")
    assert view.status == 200, view.body
    headers = {"X-CSRF-Token": view.body["csrf_token"]}
    started = await public.post(f"/api/payment-method/{token}", {}, headers=headers)
    assert started.status == 200, started.body
    confirmed = await buyer.confirm_card(started.body["payment"]["client_secret"], card)
    assert confirmed["http_status"] == 200, confirmed
    done = await public.post(f"/api/payment-method/{token}/complete", {}, headers=headers)
    assert done.status == 200, done.body
    return {**done.body, "token": token}
