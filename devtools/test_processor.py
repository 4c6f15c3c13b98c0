"""The test processor: localstripe, with what live Stripe has and it lacks.

``python -m devtools.test_processor --port 8420``

Additions (all Stripe behaviour, so the adapter is exercised as against live Stripe):
- ``Idempotency-Key`` on POSTs: the first response is stored per (API key, idempotency
  key) and replayed for retries with the same parameters (header
  ``Idempotent-Replayed: true``); different parameters are a 400 ``idempotency_error``;
  concurrent requests with one key run one at a time. Charges can thus be counted by
  idempotency key at the processor (TARGETS R1–R3).
- ``GET /v1/account``: the account the secret key belongs to (checked when a merchant
  connects keys).
- no pickling of the whole store to /tmp on every write (localstripe's default), which
  is slow and shared between instances; state lives in memory for the process.
- webhooks per account: an event goes only to the endpoint registered under the account
  id in its object's ``metadata.account_id`` (or that of the charge's PaymentIntent, or
  of the customer); localstripe sends every event to every endpoint. Each delivery is
  signed at send time and retried on failure (1, 2, 4, 8 s), as Stripe does.
  Registration is localstripe's ``POST /_config/webhooks/{account_id}`` (url, secret).
- bank debits settle later: a SEPA Direct Debit or US bank account (ACH) charge is
  ``pending`` (its PaymentIntent ``processing``) until it settles — after
  ``--bank-debit-settle-seconds`` (default 3), or when a test says so — then succeeds or
  fails (IBAN DE62370400440532013001; ACH account 000111111113 account_closed,
  000222222227 insufficient_funds, 000333333335 debit_not_authorized), with the events
  Stripe sends: ``payment_intent.processing``, ``charge.pending``, then
  ``charge.succeeded`` + ``payment_intent.succeeded`` or ``charge.failed`` +
  ``payment_intent.payment_failed``. localstripe settles a succeeding SEPA charge at once.
- ``us_bank_account`` payment methods (``{routing_number, account_number,
  account_holder_type}``, instantly verified) for SetupIntents and charges; SetupIntents
  also accept ``bacs_debit`` among their types (no BACS payment methods, though).
- fees: a charge's balance transaction carries Stripe's fee (cards 2.9 % + 30; bank
  debits 0.8 % capped at 500), and ``net`` = amount − fee (localstripe: fee 0).
- per-account test controls (no API key, like localstripe's ``/_config``):
  ``POST /_config/accounts/{id}`` ``{"webhooks": "send" | "hold", "bank_debits": "auto" |
  "manual", "settle_after_seconds": n}``; ``POST /_config/accounts/{id}/settle`` settles
  the account's pending bank debits now; ``GET /_config/accounts/{id}/events`` lists the
  events held for it (``{"data": [{"id", "type", "payload"}]}``, oldest first);
  ``GET /_config/idempotency`` counts replays per idempotency key.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

IDEMPOTENCY_TTL_S = 24 * 3600


def _patch_store() -> None:
    import localstripe.resources as resources

    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None


class IdempotencyLayer:
    def __init__(self) -> None:
        self.results: dict[tuple[str, str], tuple[float, str, int, bytes, str]] = {}
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.replays = 0
        #: Replays per idempotency key (``GET /_config/idempotency``): the fault suite's
        #: proof that a retry reused the stored key (TARGETS R2, R3).
        self.replayed: dict[str, int] = {}

    def _expire(self) -> None:
        cutoff = time.time() - IDEMPOTENCY_TTL_S
        for scope in [s for s, r in self.results.items() if r[0] < cutoff]:
            self.results.pop(scope, None)
            self.locks.pop(scope, None)

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        scope = (request.headers.get("Authorization", ""), key)
        body = await request.read()
        fingerprint = hashlib.sha256(request.path_qs.encode() + b"\0" + body).hexdigest()
        lock = self.locks.setdefault(scope, asyncio.Lock())
        async with lock:
            stored = self.results.get(scope)
            if stored is not None:
                _, stored_fp, status, payload, content_type = stored
                if stored_fp != fingerprint:
                    return web.json_response(
                        {
                            "error": {
                                "type": "idempotency_error",
                                "message": "Keys for idempotent requests can only be used with the same parameters "
                                "they were first used with.",
                            }
                        },
                        status=400,
                    )
                self.replays += 1
                self.replayed[key] = self.replayed.get(key, 0) + 1
                return web.Response(
                    status=status,
                    body=payload,
                    content_type=content_type,
                    headers={"Idempotent-Replayed": "true", "Idempotency-Key": key},
                )
            response = await handler(request)
            if (
                isinstance(response, web.Response)
                and response.status not in (400, 401, 409, 429)
                and response.status < 500
            ):
                self.results[scope] = (
                    time.time(),
                    fingerprint,
                    response.status,
                    response.body or b"",
                    response.content_type,
                )
            if len(self.results) % 1000 == 0:
                self._expire()
            return response


async def current_account(request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "")
    token = auth.partition(" ")[2]
    if not token.startswith(("sk_", "rk_")):
        return web.json_response({"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}, status=401)
    account_id = "acct_" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return web.json_response(
        {"id": account_id, "object": "account", "charges_enabled": True, "country": "US", "default_currency": "usd"}
    )


# -- per-account controls, webhooks and bank debits ------------------------------------------
BANK_DEBIT_TYPES = ("sepa_debit", "us_bank_account")
FAILING_IBANS = {"DE62370400440532013001": ("insufficient_funds", "The bank account has insufficient funds.")}
FAILING_ACH_ACCOUNTS = {
    "000111111113": ("account_closed", "The bank account has been closed."),
    "000111111116": ("no_account", "The bank account could not be located."),
    "000222222227": ("insufficient_funds", "The bank account has insufficient funds."),
    "000333333335": ("debit_not_authorized", "The customer has not authorised this debit."),
}
RETRY_DELAYS_S = (1, 2, 4, 8)
log = logging.getLogger("test_processor")


@dataclass
class AccountControls:
    webhooks: str = "send"  # send | hold
    bank_debits: str = "auto"  # auto | manual
    settle_after_seconds: float | None = None  # None: the server's default
    #: Billing's off-session charges (PaymentIntents whose metadata names the account as
    #: ``commerce_account_id``): decline the next ``decline_count`` (-1: all) with this
    #: code — codes localstripe's test cards cannot produce (stolen_card, do_not_honor).
    force_decline_code: str | None = None
    decline_count: int = 0
    #: Commit the next N such charges but lose the response (the connection is closed
    #: before the answer): TARGETS R3.
    lose_responses: int = 0


@dataclass
class TestControls:
    """What tests (and the per-account webhook routing) control, per account id."""

    settle_after_seconds: float = 3.0
    accounts: dict[str, AccountControls] = field(default_factory=dict)
    #: account id -> settle callbacks of its pending bank debits (manual mode)
    pending: dict[str, list] = field(default_factory=dict)
    #: account id -> events held instead of delivered (webhooks "hold")
    held: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    #: account id -> every off-session charge request billing made (idempotency key,
    #: attempt, answer), in order: the processor's own ledger for the fault suite.
    charge_requests: dict[str, list[dict]] = field(default_factory=dict)
    deliveries: int = 0

    def of(self, account_id: str | None) -> AccountControls:
        return self.accounts.get(account_id or "", AccountControls())

    def submit_debit(self, account_id: str | None, settle) -> None:
        controls = self.of(account_id)
        if controls.bank_debits == "manual" and account_id:
            self.pending.setdefault(account_id, []).append(settle)
            return
        delay = controls.settle_after_seconds
        asyncio.get_running_loop().call_later(self.settle_after_seconds if delay is None else delay, settle)

    def settle_now(self, account_id: str) -> int:
        return sum(1 for settle in self.pending.pop(account_id, []) if settle())


CONTROLS = TestControls()


def _account_of_object(obj: dict) -> str | None:
    """The account an event is about: ``metadata.account_id`` of its object, else of the
    charge's PaymentIntent, else of the customer (our intents and customers carry it)."""
    from localstripe.resources import Customer, PaymentIntent

    found = (obj.get("metadata") or {}).get("account_id")
    if found:
        return found
    for key, cls in (("payment_intent", PaymentIntent), ("customer", Customer)):
        ref = obj.get(key)
        ref = ref.get("id") if isinstance(ref, dict) else ref
        if isinstance(ref, str):
            try:
                found = (cls._api_retrieve(ref).metadata or {}).get("account_id")
            except Exception:
                found = None
            if found:
                return found
    return None


async def _post_signed(url: str, secret: str, payload: bytes, event_type: str) -> None:
    for attempt, delay in enumerate((0, *RETRY_DELAYS_S)):
        if delay:
            await asyncio.sleep(delay)
        timestamp = int(time.time())
        signature = hmac.new(secret.encode(), b"%d.%s" % (timestamp, payload), hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": f"t={timestamp},v1={signature}",
        }
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                async with http.post(url, data=payload, headers=headers) as response:
                    CONTROLS.deliveries += 1
                    if 200 <= response.status < 300:
                        return
                    log.info("webhook %s to %s answered %d (attempt %d)", event_type, url, response.status, attempt + 1)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("webhook %s to %s failed: %r (attempt %d)", event_type, url, exc, attempt + 1)


async def _send_webhook(event) -> None:
    """Replaces localstripe's sender: one account's events to that account's endpoint."""
    from localstripe import webhooks

    exported = event._export()
    payload = json.dumps(exported, indent=2, sort_keys=True).encode()
    await asyncio.sleep(1)  # as localstripe: the API response goes out first
    account_id = _account_of_object(exported.get("data", {}).get("object") or {})
    if account_id and CONTROLS.of(account_id).webhooks == "hold":
        CONTROLS.held.setdefault(account_id, []).append((event.id, event.type, payload.decode()))
        return
    sends = []
    for hook_id, hook in list(webhooks._webhooks.items()):
        # Endpoints registered under an account id get that account's events only;
        # others (registered by hand under any other name) keep localstripe's "everything".
        if hook_id.startswith("acct_") and hook_id != account_id:
            continue
        if hook.events is not None and event.type not in hook.events:
            continue
        sends.append(_post_signed(hook.url, hook.secret, payload, event.type))
    await asyncio.gather(*sends)


def _fee(method_type: str, amount: int) -> int:
    if method_type in BANK_DEBIT_TYPES:
        return min((amount * 8 + 500) // 1000, 500)  # 0.8 %, at most 5.00
    return (amount * 29 + 500) // 1000 + 30  # 2.9 % + 30


def _patch_resources() -> None:
    """Bank debits that settle later, US bank accounts, fees (see the module docstring)."""
    from localstripe import resources, webhooks
    from localstripe.errors import UserError
    from localstripe.resources import (
        BalanceTransaction,
        Charge,
        Event,
        PaymentIntent,
        PaymentMethod,
        SetupIntent,
        StripeObject,
        fingerprint,
        schedule_webhook,
    )

    webhooks._send_webhook = _send_webhook

    # -- US bank account payment methods ------------------------------------------------------
    original_pm_init = PaymentMethod.__init__

    def pm_init(self, type=None, us_bank_account=None, **kwargs):
        if type != "us_bank_account":
            if us_bank_account is not None:
                raise UserError(400, "Bad request")
            return original_pm_init(self, type=type, **kwargs)
        billing_details, metadata = kwargs.pop("billing_details", None), kwargs.pop("metadata", None)
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        account = us_bank_account if isinstance(us_bank_account, dict) else {}
        routing, number = str(account.get("routing_number", "")), str(account.get("account_number", ""))
        holder = account.get("account_holder_type", "individual")
        if not re.fullmatch(r"\d{9}", routing) or not re.fullmatch(r"\d{4,17}", number):
            raise UserError(400, "Invalid US bank account", {"code": "invalid_bank_account"})
        if holder not in ("individual", "company") or not (
            billing_details is None or isinstance(billing_details, dict)
        ):
            raise UserError(400, "Bad request")
        StripeObject.__init__(self)
        self.type = "us_bank_account"
        self.billing_details = billing_details or {}
        self._us_account_number = number
        self.us_bank_account = {
            "account_holder_type": holder,
            "account_type": account.get("account_type", "checking"),
            "bank_name": "STRIPE TEST BANK",
            "fingerprint": fingerprint(routing + number),
            "last4": number[-4:],
            "routing_number": routing,
            "networks": {"preferred": "ach", "supported": ["ach"]},
        }
        self.customer = None
        self.metadata = metadata or {}

    PaymentMethod.__init__ = pm_init

    def bank_failure(pm) -> tuple[str, str] | None:
        if pm.type == "sepa_debit":
            return FAILING_IBANS.get(pm._sepa_debit_iban)
        if pm.type == "us_bank_account":
            return FAILING_ACH_ACCOUNTS.get(pm._us_account_number)
        return None

    original_declined = PaymentMethod._charging_is_declined
    PaymentMethod._charging_is_declined = lambda self: (
        bank_failure(self) is not None if self.type in BANK_DEBIT_TYPES else original_declined(self)
    )

    original_seti_init = SetupIntent.__init__

    def seti_init(self, customer=None, usage=None, payment_method_types=None, metadata=None, **kwargs):
        extra = ("us_bank_account", "bacs_debit")
        given = payment_method_types
        if isinstance(given, list) and any(t in extra for t in given):
            payment_method_types = [t for t in given if t not in extra] or ["card"]
        original_seti_init(
            self, customer=customer, usage=usage, payment_method_types=payment_method_types, metadata=metadata, **kwargs
        )
        if given is not payment_method_types:
            self.payment_method_types = given

    SetupIntent.__init__ = seti_init

    # -- bank debits: pending until they settle ------------------------------------------------
    def is_bank_debit(charge) -> bool:
        return PaymentMethod._api_retrieve(charge.payment_method).type in BANK_DEBIT_TYPES

    Charge._is_async_payment_method = is_bank_debit
    original_initialize = Charge._initialize_charge

    def initialize_charge(self, on_success=None, on_failure_now=None, on_failure_later=None):
        if not is_bank_debit(self):
            return original_initialize(self, on_success, on_failure_now, on_failure_later)
        self.status = "pending"
        intent = PaymentIntent._api_retrieve(self.payment_intent) if self.payment_intent else None
        meta = (intent.metadata if intent else self.metadata) or {}
        account_id = meta.get("account_id") or meta.get("commerce_account_id")  # checkout's or billing's
        if intent is not None:
            schedule_webhook(Event("payment_intent.processing", intent))
        schedule_webhook(Event("charge.pending", self))

        def settle() -> bool:
            if self.status != "pending":
                return False
            if self._authorized:
                if self.captured:
                    txn = BalanceTransaction(
                        amount=self.amount,
                        currency=self.currency,
                        description=self.description,
                        exchange_rate=1.0,
                        reporting_category="charge",
                        source=self.id,
                        type="charge",
                    )
                    self.balance_transaction = txn.id
                self.status = "succeeded"
                schedule_webhook(Event("charge.succeeded", self))
                if on_success:
                    on_success()
            else:
                code, message = bank_failure(PaymentMethod._api_retrieve(self.payment_method)) or (
                    "payment_failed",
                    "The debit failed.",
                )
                self.status, self.failure_code, self.failure_message = "failed", code, message
                schedule_webhook(Event("charge.failed", self))
                if on_failure_later:
                    on_failure_later()
            return True

        CONTROLS.submit_debit(account_id, settle)

    Charge._initialize_charge = initialize_charge

    # -- fees on balance transactions ----------------------------------------------------------
    original_txn_init = BalanceTransaction.__init__

    def txn_init(self, *args, **kwargs):
        original_txn_init(self, *args, **kwargs)
        if self.type == "charge" and self.source.startswith("ch_"):
            charge = Charge._api_retrieve(self.source)
            try:
                method = PaymentMethod._api_retrieve(charge.payment_method).type
            except Exception:
                method = "card"
            self.fee = _fee(method, self.amount)
            self.fee_details = [
                {
                    "amount": self.fee,
                    "currency": self.currency,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]

    BalanceTransaction.__init__ = txn_init
    resources.BANK_DEBIT_TYPES = BANK_DEBIT_TYPES  # for anyone inspecting the patched module


async def configure_account(request: web.Request) -> web.Response:
    account_id = request.match_info["account_id"]
    try:
        body = await request.json()
    except ValueError:
        body = None
    controls = CONTROLS.accounts.setdefault(account_id, AccountControls())
    if not isinstance(body, dict):
        return web.json_response({"error": {"message": "a JSON object is expected"}}, status=400)
    if body.get("webhooks") in ("send", "hold"):
        controls.webhooks = body["webhooks"]
    if body.get("bank_debits") in ("auto", "manual"):
        controls.bank_debits = body["bank_debits"]
    if "force_decline_code" in body:
        value = body["force_decline_code"]
        controls.force_decline_code = value if isinstance(value, str) and value else None
        count = body.get("decline_count", -1)
        controls.decline_count = count if isinstance(count, int) else -1
    if isinstance(body.get("lose_responses"), int):
        controls.lose_responses = max(0, body["lose_responses"])
    if "settle_after_seconds" in body:
        value = body["settle_after_seconds"]
        controls.settle_after_seconds = float(value) if isinstance(value, int | float) and value >= 0 else None
    return web.json_response(vars(controls))


async def settle_account(request: web.Request) -> web.Response:
    return web.json_response({"settled": CONTROLS.settle_now(request.match_info["account_id"])})


async def held_events(request: web.Request) -> web.Response:
    events = CONTROLS.held.get(request.match_info["account_id"], [])
    return web.json_response({"data": [{"id": i, "type": t, "payload": p} for i, t, p in events]})


# -- billing's off-session charges: injected faults, search, the processor's own ledger --------
def _form_value(body: bytes, name: str) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(body.decode(errors="replace")).get(name)
    return values[0] if values else None


@web.middleware
async def charge_faults(request: web.Request, handler) -> web.StreamResponse:
    """Declines and lost responses for ``POST /v1/payment_intents`` of billing's charges.
    Runs outside the idempotency layer: the processor stored its answer before it was
    lost, so a retry with the same key gets it (as at Stripe)."""
    if request.method != "POST" or request.path != "/v1/payment_intents":
        return await handler(request)
    body = await request.read()
    account_id = _form_value(body, "metadata[commerce_account_id]")
    if not account_id:
        return await handler(request)
    record = {
        "idempotency_key": request.headers.get("Idempotency-Key"),
        "attempt_id": _form_value(body, "metadata[commerce_attempt_id]"),
        "charge_id": _form_value(body, "metadata[commerce_charge_id]"),
        "outcome": None,
    }
    CONTROLS.charge_requests.setdefault(account_id, []).append(record)
    controls = CONTROLS.accounts.get(account_id)
    if controls is None:
        response = await handler(request)
        record["outcome"] = response.status
        return response
    if controls.force_decline_code and controls.decline_count != 0:
        if controls.decline_count > 0:
            controls.decline_count -= 1
        code = controls.force_decline_code
        record["outcome"] = f"declined:{code}"
        return web.json_response(
            {
                "error": {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": code,
                    "message": f"Your card was declined ({code}).",
                }
            },
            status=402,
        )
    response = await handler(request)
    record["outcome"] = response.status
    if controls.lose_responses > 0 and response.status == 200:
        record["outcome"] = "lost"
        controls.lose_responses -= 1
        # The intent exists now; the caller never hears of it.
        raise web.HTTPInternalServerError(text='{"error": {"type": "api_error", "message": "lost"}}')
    return response


def _search_query(query: str) -> tuple[str, str] | None:
    """``metadata['key']:'value'`` — the one form of Stripe's search query we need."""
    import re

    match = re.fullmatch(r"\s*metadata\['([^']+)'\]\s*:\s*'([^']*)'\s*", query)
    return (match.group(1), match.group(2)) if match else None


async def search_payment_intents(request: web.Request) -> web.Response:
    from localstripe.resources import store

    parsed = _search_query(request.query.get("query", ""))
    if parsed is None:
        return web.json_response({"error": {"type": "invalid_request_error", "message": "bad query"}}, status=400)
    key, value = parsed
    found = [
        obj._export()
        for k, obj in list(store.items())
        if k.startswith("payment_intent:") and (obj.metadata or {}).get(key) == value
    ]
    return web.json_response(
        {"object": "search_result", "url": "/v1/payment_intents/search", "has_more": False, "data": found}
    )


async def account_payment_intents(request: web.Request) -> web.Response:
    """Every PaymentIntent billing created for an account (the fault suite's ledger)."""
    from localstripe.resources import store

    account_id = request.match_info["account_id"]
    found = [
        {
            "id": obj.id,
            "status": obj.status,
            "amount": obj.amount,
            "metadata": obj.metadata or {},
        }
        for k, obj in list(store.items())
        if k.startswith("payment_intent:") and (obj.metadata or {}).get("commerce_account_id") == account_id
    ]
    return web.json_response({"data": found})


async def idempotency_replays(request: web.Request) -> web.Response:
    """``{"replays": total, "keys": {key: replays}}``; ``?prefix=`` keeps the keys starting
    with it (``commerce:ch_`` for billing's charges)."""
    layer: IdempotencyLayer = request.app["idempotency"]
    prefix = request.query.get("prefix", "")
    keys = {k: n for k, n in list(layer.replayed.items()) if k.startswith(prefix)}
    return web.json_response({"replays": layer.replays, "keys": keys})


async def account_charge_requests(request: web.Request) -> web.Response:
    return web.json_response({"data": CONTROLS.charge_requests.get(request.match_info["account_id"], [])})


def build_app(settle_after_seconds: float = 3.0) -> web.Application:
    _patch_store()
    _patch_resources()
    CONTROLS.settle_after_seconds = settle_after_seconds
    from localstripe import server

    layer = IdempotencyLayer()
    app = server.app
    app.middlewares.insert(0, layer.middleware)
    app.middlewares.insert(0, charge_faults)  # outermost: a lost answer was stored first
    app.router.add_get("/v1/payment_intents/search", search_payment_intents)
    app.router.add_get("/_config/accounts/{account_id}/payment_intents", account_payment_intents)
    app.router.add_get("/_config/accounts/{account_id}/charge_requests", account_charge_requests)
    app.router.add_get("/v1/account", current_account)
    app.router.add_post("/_config/accounts/{account_id}", configure_account)
    app.router.add_post("/_config/accounts/{account_id}/settle", settle_account)
    app.router.add_get("/_config/accounts/{account_id}/events", held_events)
    app.router.add_get("/_config/idempotency", idempotency_replays)
    app["idempotency"] = layer
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.test_processor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument(
        "--bank-debit-settle-seconds",
        type=float,
        default=3.0,
        help="how long a bank debit stays processing before it settles (per account: /_config/accounts/{id})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    app = build_app(settle_after_seconds=args.bank_debit_settle_seconds)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
