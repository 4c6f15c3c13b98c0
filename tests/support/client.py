"""HTTP helpers for tests: the admin API and a buyer driving the checkout JSON flow.

The buyer confirms SetupIntents exactly as the test processor's browser script does
(POST /v1/setup_intents/{id}/confirm with the publishable key), so these tests run the
real server-side flow; the browser tests run the real page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import aiohttp


@dataclass
class Response:
    status: int
    body: Any
    headers: Any  # CIMultiDict: header names are case-insensitive


class Api:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, key: str | None = None):
        self.session, self.base_url, self.key = session, base_url.rstrip("/"), key

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> Response:
        h = dict(headers or {})
        token = key if key is not None else self.key
        if token:
            h.setdefault("Authorization", f"Bearer {token}")
        if json_body is not None:
            data = json.dumps(json_body).encode()
            h.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.base_url + path, data=data, headers=h, allow_redirects=False) as r:
            raw = await r.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            return Response(r.status, body, r.headers.copy())  # case-insensitive, like HTTP

    async def get(self, path: str, **kw) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw) -> Response:
        return await self.request("POST", path, json_body=body, **kw)

    async def patch(self, path: str, body: Any = None, **kw) -> Response:
        return await self.request("PATCH", path, json_body=body, **kw)


class Buyer:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, processor_url: str):
        self.api = Api(session, base_url)
        self.session, self.processor_url = session, processor_url.rstrip("/")
        self.token: str | None = None
        self.csrf: str | None = None

    async def open(self, link_url: str) -> str:
        async with self.session.get(link_url, allow_redirects=False) as r:
            assert r.status == 303, (r.status, await r.text())
            location = r.headers["Location"]
        self.token = location.rsplit("/", 1)[1]
        view = await self.view()
        self.csrf = view.body["csrf_token"]
        return self.token

    async def view(self) -> Response:
        return await self.api.get(f"/api/checkout/{self.token}")

    async def submit(self, contact: dict, **extra) -> Response:
        return await self.api.post(
            f"/api/checkout/{self.token}", {"contact": contact, **extra}, headers={"X-CSRF-Token": self.csrf}
        )

    async def confirm_card(self, client_secret: str, number: str = "4242424242424242") -> dict:
        seti = client_secret.split("_secret_")[0]
        payload = {
            "key": "pk_test_commerce_local",
            "client_secret": client_secret,
            "payment_method_data": {
                "type": "card",
                "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
            },
        }
        async with self.session.post(
            f"{self.processor_url}/v1/setup_intents/{seti}/confirm", data=json.dumps(payload)
        ) as r:
            return {"http_status": r.status, **(await r.json())}

    async def complete(self) -> Response:
        return await self.api.post(f"/api/checkout/{self.token}/complete", {}, headers={"X-CSRF-Token": self.csrf})

    async def pay(self, link_url: str, email: str, card: str = "4242424242424242", **contact) -> Response:
        await self.open(link_url)
        submitted = await self.submit({"email": email, **contact})
        assert submitted.status == 200, submitted.body
        confirmed = await self.confirm_card(submitted.body["payment"]["client_secret"], card)
        assert confirmed["http_status"] == 200, confirmed
        return await self.complete()


def read_mail(directory: Path) -> list[EmailMessage]:
    messages = []
    for path in sorted(directory.glob("*.eml")):
        messages.append(BytesParser(policy=policy.default).parsebytes(path.read_bytes()))
    return messages
