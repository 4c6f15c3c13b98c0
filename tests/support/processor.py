"""Tests' side of the test processor and of processor webhooks: the per-account controls of
``devtools/test_processor.py``, confirming bank debits as the browser script does,
3-D Secure, signing webhooks, and reading checkout's tables as their owner."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import asyncpg

from shared.processor.registry import TEST_SECRET_KEY

PUBLISHABLE_KEY = "pk_test_commerce_local"
GOOD_IBAN = "DE89370400440532013000"
FAILING_IBAN = "DE62370400440532013001"
ACH_ROUTING = "110000000"
GOOD_ACH_ACCOUNT = "000123456789"
FAILING_ACH_ACCOUNT = "000222222227"
THREE_D_SECURE_CARD = "4000002500003155"


def sign(payload: bytes, secret: str, timestamp: int | None = None, scheme: str = "v1") -> str:
    """A ``Stripe-Signature`` header as the processor makes it."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{scheme}={signature(payload, secret, t)}"


def signature(payload: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), b"%d.%s" % (timestamp, payload), hashlib.sha256).hexdigest()


def fake_event(account_id: str, event_type: str = "payment_intent.succeeded", size: int = 1024) -> bytes:
    """A Stripe-shaped event of about ``size`` bytes about an intent nobody knows."""
    intent = "pi_" + secrets.token_hex(8)
    event = {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2017-08-15",
        "created": int(time.time()),
        "livemode": False,
        "type": event_type,
        "data": {
            "object": {
                "id": intent,
                "object": "payment_intent",
                "amount": 2500,
                "currency": "eur",
                "status": "succeeded",
                "metadata": {"account_id": account_id},
                "description": "",
            }
        },
    }
    body = json.dumps(event, indent=2, sort_keys=True)
    event["data"]["object"]["description"] = "x" * max(0, size - len(body))
    return json.dumps(event, indent=2, sort_keys=True).encode()


class TestProcessor:
    """The test processor as tests drive it (its own API and its ``/_config`` controls)."""

    __test__ = False  # not a pytest test class

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http, self.base_url = http, base_url.rstrip("/")

    async def _json(self, method: str, path: str, **kw) -> tuple[int, Any]:
        async with self.http.request(method, self.base_url + path, **kw) as r:
            return r.status, await r.json(content_type=None)

    async def configure(self, account_id: str, **controls) -> dict:
        status, body = await self._json("POST", f"/_config/accounts/{account_id}", json=controls)
        assert status == 200, body
        return body

    async def settle(self, account_id: str) -> int:
        status, body = await self._json("POST", f"/_config/accounts/{account_id}/settle")
        assert status == 200, body
        return body["settled"]

    async def held_events(self, account_id: str) -> list[dict]:
        status, body = await self._json("GET", f"/_config/accounts/{account_id}/events")
        assert status == 200, body
        return body["data"]

    async def get(self, path: str) -> dict:
        status, body = await self._json("GET", path, headers={"Authorization": f"Bearer {TEST_SECRET_KEY}"})
        assert status == 200, body
        return body

    async def intent(self, intent_id: str) -> dict:
        return await self.get(f"/v1/payment_intents/{intent_id}")

    async def setup_intent(self, setup_intent_id: str) -> dict:
        return await self.get(f"/v1/setup_intents/{setup_intent_id}")

    async def confirm_setup(self, client_secret: str, payment_method_data: dict | None = None) -> dict:
        """POST /v1/setup_intents/{id}/confirm with the publishable key, as Stripe.js does."""
        seti = client_secret.split("_secret_")[0]
        payload: dict[str, Any] = {"key": PUBLISHABLE_KEY, "client_secret": client_secret, "use_stripe_sdk": True}
        if payment_method_data is not None:
            payload["payment_method_data"] = payment_method_data
        status, body = await self._json("POST", f"/v1/setup_intents/{seti}/confirm", data=json.dumps(payload))
        return {"http_status": status, **body}

    async def confirm_card_setup(self, client_secret: str, number: str) -> dict:
        """Confirm a SetupIntent with a test card, passing the card's own 3-D Secure step at
        setup when it asks for one (as the page does)."""
        card = {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"}
        confirmed = await self.confirm_setup(client_secret, {"type": "card", "card": card})
        if confirmed.get("status") == "requires_action":
            confirmed = await self.confirm_setup(client_secret)
        return confirmed

    async def confirm_sepa(self, client_secret: str, iban: str, email: str = "buyer@example.com") -> dict:
        """``stripe.confirmSepaDebitSetup`` of the test processor's browser script."""
        return await self.confirm_setup(
            client_secret,
            {
                "type": "sepa_debit",
                "sepa_debit": {"iban": iban},
                "billing_details": {"name": "A Buyer", "email": email},
            },
        )

    async def confirm_us_bank_account(self, client_secret: str, account_number: str) -> dict:
        return await self.confirm_setup(
            client_secret,
            {
                "type": "us_bank_account",
                "us_bank_account": {
                    "routing_number": ACH_ROUTING,
                    "account_number": account_number,
                    "account_holder_type": "individual",
                },
                "billing_details": {"name": "A Buyer", "email": "buyer@example.com"},
            },
        )

    async def authenticate(self, client_secret: str, success: bool = True) -> dict:
        """3-D Secure on a PaymentIntent (``confirmCardPayment`` of the browser script)."""
        pi = client_secret.split("_secret_")[0]
        status, body = await self._json(
            "POST",
            f"/v1/payment_intents/{pi}/_authenticate?success={'true' if success else 'false'}",
            data=json.dumps({"key": PUBLISHABLE_KEY, "client_secret": client_secret}),
        )
        assert status == 200, body
        return body


class CheckoutTables:
    """Checkout's tables read as their owner (row-level security does not apply)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> CheckoutTables:
        self.conn = await asyncpg.connect(self.dsn)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def counts(self, account_id: str, event_ids: Sequence[str] = ()) -> dict[str, int]:
        """The account's rows, and the processor events with ``event_ids`` under any account
        (an event stored under the wrong account; a count of every account's events would
        also see other tests' late webhooks)."""
        row = await self.conn.fetchrow(
            """SELECT (SELECT count(*) FROM checkout.processor_events WHERE account_id = $1) AS processor_events,
                      (SELECT count(*) FROM checkout.outbox WHERE account_id = $1) AS outbox,
                      (SELECT count(*) FROM checkout.payments WHERE account_id = $1) AS payments,
                      (SELECT count(*) FROM checkout.inbox WHERE account_id = $1) AS inbox,
                      (SELECT count(*) FROM checkout.processor_events WHERE event_id = ANY($2::text[]))
                          AS these_events_anywhere""",
            account_id,
            list(event_ids),
        )
        return dict(row)

    async def events(self, account_id: str, *types: str) -> list[dict]:
        rows = await self.conn.fetch(
            "SELECT type, envelope FROM checkout.outbox WHERE account_id = $1 AND type = ANY($2::text[]) ORDER BY seq",
            account_id,
            list(types),
        )
        return [{"type": r["type"], **json.loads(r["envelope"])} for r in rows]

    async def unprocessed(self, account_id: str) -> int:
        return await self.conn.fetchval(
            "SELECT count(*) FROM checkout.processor_events WHERE account_id = $1 AND status = 'received'", account_id
        )

    async def undelivered(self, account_id: str) -> int:
        return await self.conn.fetchval(
            "SELECT count(*) FROM checkout.outbox WHERE account_id = $1 AND delivered_at IS NULL", account_id
        )

    async def payments(self, account_id: str) -> list[asyncpg.Record]:
        return await self.conn.fetch(
            "SELECT id, session_id, status, fee, net, processor_payment_intent_id FROM checkout.payments "
            "WHERE account_id = $1 ORDER BY id",
            account_id,
        )
