"""Stripe (and the Stripe-compatible test processor) through the official ``stripe`` SDK.

One ``StripeClient`` per account configuration, with explicit ``max_network_retries``
(the SDK's default is 0) — safe because every mutating call carries our idempotency key.
"""

from __future__ import annotations

from typing import Any

import stripe

from .base import (
    Customer,
    IntentOutcome,
    PaymentProcessor,
    ProcessorConfig,
    ProcessorError,
    ProcessorUnavailable,
    RefundOutcome,
    SetupOutcome,
)

#: Decline codes after which retrying the same card is pointless (a "hard" decline).
HARD_DECLINES = frozenset(
    {
        "stolen_card",
        "lost_card",
        "pickup_card",
        "restricted_card",
        "invalid_number",
        "incorrect_number",
        "invalid_account",
        "do_not_honor",
        "do_not_try_again",
        "fraudulent",
        "merchant_blacklist",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "security_violation",
        "card_not_supported",
        "transaction_not_allowed",
        "expired_card",
    }
)


def _id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return value.get("id") if isinstance(value, dict) else getattr(value, "id", None)


def _plain(obj: Any) -> dict[str, Any]:
    """SDK objects (not dicts since stripe-python 13) as plain dicts."""
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class StripeProcessor(PaymentProcessor):
    def __init__(self, config: ProcessorConfig, *, max_network_retries: int = 2, timeout: float = 30.0):
        self.config = config
        self._http = stripe.AIOHTTPClient(timeout=timeout)
        base_addresses = {"api": config.api_base} if config.api_base else None
        self.client = stripe.StripeClient(
            config.secret_key,
            base_addresses=base_addresses,
            max_network_retries=max_network_retries,
            http_client=self._http,
        )

    async def close(self) -> None:
        await self._http.close_async()

    # -- errors -------------------------------------------------------------------------
    @staticmethod
    def _translate(exc: stripe.StripeError) -> ProcessorError:
        if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
            return ProcessorUnavailable(str(exc))
        status = getattr(exc, "http_status", None)
        if status is None or status >= 500:
            return ProcessorUnavailable(str(exc))
        return ProcessorError(getattr(exc, "user_message", None) or str(exc))

    async def verify_credentials(self) -> str:
        """The processor's id for the account these keys belong to (refused keys raise)."""
        try:
            account = await self.client.v1.accounts.retrieve_current_async()
        except stripe.AuthenticationError as exc:
            raise ProcessorError(exc.user_message or "The secret key was refused.") from exc
        except stripe.StripeError as exc:
            raise self._translate(exc) from exc
        return _plain(account)["id"]

    # -- customers ----------------------------------------------------------------------
    async def find_or_create_customer(
        self, *, email: str, name: str | None, metadata: dict, idempotency_key: str
    ) -> Customer:
        try:
            found = await self.client.v1.customers.list_async(params={"email": email, "limit": 1})
            if found.data:
                return Customer(_plain(found.data[0])["id"], email)
            params: dict[str, Any] = {"email": email, "metadata": metadata}
            if name:
                params["name"] = name
            created = await self.client.v1.customers.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
            return Customer(_plain(created)["id"], email)
        except stripe.StripeError as exc:
            raise self._translate(exc) from exc

    # -- setup intents (the buyer's card/bank entered in the processor's fields) ---------
    @staticmethod
    def _setup(obj: Any) -> SetupOutcome:
        data = _plain(obj)
        pm = data.get("payment_method")
        pm_type = pm.get("type") if isinstance(pm, dict) else None
        return SetupOutcome(data["id"], data["status"], data["client_secret"], _id(pm), pm_type)

    async def create_setup_intent(
        self, *, customer_id: str, payment_method_types: list[str], metadata: dict, idempotency_key: str
    ) -> SetupOutcome:
        try:
            obj = await self.client.v1.setup_intents.create_async(
                params={
                    "customer": customer_id,
                    "usage": "off_session",
                    "payment_method_types": payment_method_types,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise self._translate(exc) from exc
        return self._setup(obj)

    async def retrieve_setup_intent(self, setup_intent_id: str) -> SetupOutcome:
        try:
            obj = await self.client.v1.setup_intents.retrieve_async(setup_intent_id)
            outcome = self._setup(obj)
            if outcome.payment_method_id and outcome.payment_method_type is None:
                pm = _plain(await self.client.v1.payment_methods.retrieve_async(outcome.payment_method_id))
                outcome = SetupOutcome(outcome.id, outcome.status, outcome.client_secret, pm["id"], pm["type"])
            return outcome
        except stripe.StripeError as exc:
            raise self._translate(exc) from exc

    async def attach_payment_method(self, *, payment_method_id: str, customer_id: str) -> None:
        try:
            pm = _plain(await self.client.v1.payment_methods.retrieve_async(payment_method_id))
            if _id(pm.get("customer")) != customer_id:
                await self.client.v1.payment_methods.attach_async(payment_method_id, params={"customer": customer_id})
        except stripe.StripeError as exc:
            raise self._translate(exc) from exc

    # -- payment intents -----------------------------------------------------------------
    @staticmethod
    def _intent(obj: Any) -> IntentOutcome:
        data = _plain(obj)
        status = data["status"]
        error = data.get("last_payment_error") or {}
        mapped = {
            "succeeded": "succeeded",
            "processing": "processing",
            "requires_action": "requires_action",
            "canceled": "canceled",
            "requires_capture": "processing",
        }.get(status, "declined")
        pm = data.get("payment_method")
        charge = data.get("latest_charge")
        balance = charge.get("balance_transaction") if isinstance(charge, dict) else None
        if not isinstance(balance, dict):
            balance = {}
        return IntentOutcome(
            id=data["id"],
            status=mapped,  # type: ignore[arg-type]
            amount=data["amount"],
            currency=data["currency"].upper(),
            client_secret=data.get("client_secret"),
            decline_code=error.get("decline_code") or error.get("code"),
            message=error.get("message"),
            charge_id=_id(charge),
            payment_method_id=_id(pm),
            payment_method_type=pm.get("type") if isinstance(pm, dict) else None,
            raw_status=status,
            metadata=dict(data.get("metadata") or {}),
            fee=balance.get("fee"),
            net=balance.get("net"),
            balance_currency=balance["currency"].upper() if balance.get("currency") else None,
        )

    async def charge(
        self,
        *,
        amount: int,
        currency: str,
        customer_id: str,
        payment_method_id: str,
        off_session: bool,
        metadata: dict,
        idempotency_key: str,
        payment_method_types: list[str] | None = None,
    ) -> IntentOutcome:
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer_id,
            "payment_method": payment_method_id,
            "confirm": True,
            "metadata": metadata,
        }
        if off_session:
            params["off_session"] = True
        if payment_method_types:  # a bank debit: the intent must allow the saved method's type
            params["payment_method_types"] = payment_method_types
        try:
            obj = await self.client.v1.payment_intents.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.CardError as exc:
            err = exc.error
            return IntentOutcome(
                id=_id(getattr(err, "payment_intent", None)) if err else None,
                status="declined",
                amount=amount,
                currency=currency.upper(),
                decline_code=(getattr(err, "decline_code", None) or exc.code) if err else exc.code,
                message=exc.user_message or "The card was declined.",
                payment_method_id=payment_method_id,
            )
        except stripe.StripeError as exc:
            raise self._translate(exc) from exc
        return self._intent(obj)

    #: What a retrieved intent carries expanded: the method (its type) and the latest
    #: charge's balance transaction (fee and net, PRODUCT §7).
    INTENT_EXPAND = ("payment_method", "latest_charge.balance_transaction")

    async def retrieve_payment_intent(self, payment_intent_id: str) -> IntentOutcome:
        try:
            obj = await self.client.v1.payment_intents.retrieve_async(
                payment_intent_id, params={"expand": list(self.INTENT_EXPAND)}
            )
        except stripe.StripeError as exc:
            raise self._translate(exc) from exc
        return self._intent(obj)

    async def find_payment_intent(self, metadata_key: str, value: str) -> IntentOutcome | None:
        """The intent whose metadata ``metadata_key`` is ``value`` (our attempt id), if the
        processor has one: how the reconciler asks about an attempt whose answer was lost.
        Stripe's search is eventually consistent (about a minute), which is why the
        reconciler only asks about attempts older than that and still replays with the
        stored idempotency key when nothing is found."""
        try:
            result = await self.client.v1.payment_intents.search_async(
                params={"query": f"metadata['{metadata_key}']:'{value}'", "limit": 1}
            )
        except stripe.StripeError as exc:
            raise self._translate(exc) from exc
        data = _plain(result).get("data") or []
        if not data:
            return None
        return await self.retrieve_payment_intent(data[0]["id"])

    # -- refunds -----------------------------------------------------------------------------
    @staticmethod
    def _refund(obj: Any) -> RefundOutcome:
        data = _plain(obj)
        raw = data.get("status") or "pending"
        status = {"succeeded": "succeeded", "failed": "failed", "canceled": "failed"}.get(raw, "pending")
        return RefundOutcome(
            id=data["id"],
            status=status,  # type: ignore[arg-type]
            amount=data["amount"],
            currency=(data.get("currency") or "").upper(),
            payment_intent_id=_id(data.get("payment_intent")),
            raw_status=raw,
            failure_reason=data.get("failure_reason"),
            metadata=dict(data.get("metadata") or {}),
        )

    def _translate_refund_error(self, exc: stripe.StripeError) -> ProcessorError:
        # 409: the same idempotency key is in flight (a concurrent retry); the outcome of
        # that request is unknown here, so the caller must retry — never treat it as refused.
        if getattr(exc, "http_status", None) in (409, 429):
            return ProcessorUnavailable(str(exc))
        return self._translate(exc)

    async def create_refund(
        self, *, payment_intent_id: str, amount: int, metadata: dict, idempotency_key: str
    ) -> RefundOutcome:
        """Refund ``amount`` of a PaymentIntent. ``idempotency_key`` comes from our refund
        row (written before this call), so a retry reaches the same refund."""
        try:
            obj = await self.client.v1.refunds.create_async(
                params={"payment_intent": payment_intent_id, "amount": amount, "metadata": metadata},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise self._translate_refund_error(exc) from exc
        return self._refund(obj)

    async def list_refunds(self, payment_intent_id: str) -> list[RefundOutcome]:
        """Every refund of a PaymentIntent (newest first), to find one by its metadata."""
        try:
            page = await self.client.v1.refunds.list_async(params={"payment_intent": payment_intent_id, "limit": 100})
            refunds = [self._refund(r) for r in page.data]
            while page.has_more and page.data:
                page = await self.client.v1.refunds.list_async(
                    params={"payment_intent": payment_intent_id, "limit": 100, "starting_after": refunds[-1].id}
                )
                refunds += [self._refund(r) for r in page.data]
        except stripe.StripeError as exc:
            raise self._translate_refund_error(exc) from exc
        return refunds
