"""Processor webhooks: verifying Stripe's signature scheme, and the test processor's
endpoint registration.

Verification uses the official SDK (``stripe.WebhookSignature.verify_header``): the
``Stripe-Signature`` header carries ``t=<unix time>`` and one or more ``v1=<hex HMAC-SHA256
of "<t>.<body>">`` — several during a secret rotation, any one matching is enough;
``v0`` (test-mode legacy) signatures are not accepted. The SDK checks only that the
timestamp is not too old; a timestamp further in the future than the tolerance is refused
here too, so a captured request cannot be replayed later by signing it "ahead".
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import aiohttp
import stripe

#: Longest ``Stripe-Signature`` header we read (a few signatures are ~80 bytes each).
MAX_SIGNATURE_HEADER = 4096


class WebhookRejected(Exception):
    """The request is not a verified processor event; ``reason`` says why (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def header_timestamp(header: str) -> int:
    """The ``t=`` value the SDK verified (the first one), as the SDK reads it."""
    items = [item.split("=", 2) for item in header.split(",")]
    return int(next(item[1] for item in items if item[0] == "t"))


def verify_signature(
    payload: bytes, header: str | None, secrets: Sequence[str], *, tolerance: int, now: float | None = None
) -> int:
    """Check ``header`` against ``payload`` with any of ``secrets`` (the account's current
    one first); returns the signed timestamp or raises `WebhookRejected`."""
    if not header:
        raise WebhookRejected("the Stripe-Signature header is missing")
    if len(header) > MAX_SIGNATURE_HEADER or not header.isascii():
        raise WebhookRejected("the Stripe-Signature header is malformed")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected("the body is not UTF-8") from None
    last: stripe.SignatureVerificationError | None = None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance)
        except stripe.SignatureVerificationError as exc:
            last = exc
            continue
        break
    else:
        raise WebhookRejected(_reason(last))
    timestamp = header_timestamp(header)
    if timestamp > (time.time() if now is None else now) + tolerance:
        raise WebhookRejected("the signature's timestamp is in the future")
    return timestamp


def _reason(exc: stripe.SignatureVerificationError | None) -> str:
    message = str(getattr(exc, "user_message", None) or exc or "")
    if "tolerance" in message:
        return "the signature's timestamp is too old"
    if "expected scheme" in message:
        return "the Stripe-Signature header has no v1 signature"
    if "Unable to extract" in message:
        return "the Stripe-Signature header is malformed"
    if "secret" in message:
        return "no webhook secret is configured"
    return "no v1 signature matches the body"


def sign(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``payload`` (tests and benchmarks)."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    return stripe.WebhookSignature.generate_signature_header(text, secret, timestamp)


async def register_test_webhook(
    http: aiohttp.ClientSession, test_processor_url: str, account_id: str, url: str, secret: str
) -> None:
    """Tell the test processor where to post this account's events, signed with ``secret``
    (``POST {test_processor}/_config/webhooks/{account_id}``; localstripe's API)."""
    async with http.post(
        f"{test_processor_url.rstrip('/')}/_config/webhooks/{account_id}",
        json={"url": url, "secret": secret},
    ) as response:
        if response.status >= 300:
            raise RuntimeError(f"the test processor refused the webhook registration ({response.status})")
