"""Signatures of outbound webhooks (what we send to merchants' endpoints), and the
receiver's check.

The scheme is the processor's (Stripe's), under our own header name::

    Commerce-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

The key is the endpoint's secret as text (``whsec_…``, UTF-8). During a secret rotation
the header may carry several ``v1=`` entries; any one matching is enough. Other schemes
(``v0=`` …) are ignored. A receiver verifies with `verify` (or the same few lines in any
language, docs/decisions.md 63): compute the HMAC over the exact bytes received, compare
in constant time, and refuse a timestamp more than ``tolerance`` seconds away from its
own clock in either direction (replays).

Timestamps are real time (never a test clock): receivers compare them with their clocks.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "Commerce-Signature"
EVENT_ID_HEADER = "Commerce-Event-Id"
EVENT_TYPE_HEADER = "Commerce-Event-Type"
DELIVERY_ID_HEADER = "Commerce-Delivery-Id"
#: 1 on the first attempt of a delivery, 2 on its first retry, …
ATTEMPT_HEADER = "Commerce-Delivery-Attempt"
#: Seconds a receiver should accept between the signed timestamp and its own clock.
DEFAULT_TOLERANCE_S = 300
#: Longest header read (a few signatures are ~70 bytes each).
MAX_HEADER_LENGTH = 4096
SCHEME = "v1"


class SignatureError(ValueError):
    """The request is not a verified delivery; the message says why (no secrets)."""


def compute(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secrets: str | Sequence[str], body: bytes, timestamp: int | None = None) -> str:
    """The ``Commerce-Signature`` value for ``body``: one ``v1`` per secret (the current
    one first; two while a rotation overlaps)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys:
        raise ValueError("at least one secret is needed to sign")
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}", *(f"{SCHEME}={compute(k, t, body)}" for k in keys)])


def parse(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of a header; `SignatureError` when malformed."""
    if len(header) > MAX_HEADER_LENGTH or not header.isascii():
        raise SignatureError("the signature header is malformed")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError("the signature header is malformed")
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit() or len(timestamps[0]) > 12:
        raise SignatureError("the signature header has no valid timestamp")
    if not signatures:
        raise SignatureError("the signature header has no v1 signature")
    return int(timestamps[0]), signatures


def verify(
    body: bytes,
    header: str | None,
    secrets: str | Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a delivery as a receiver would; returns the signed timestamp.

    ``body`` is the raw request body (not re-serialised JSON); ``secrets`` the endpoint's
    secret (or several, while rotating). Raises `SignatureError` for a missing or
    malformed header, no matching ``v1``, or a timestamp outside ``tolerance``.
    """
    if not header:
        raise SignatureError("the signature header is missing")
    timestamp, signatures = parse(header)
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    expected = [compute(k, timestamp, body) for k in keys if k]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise SignatureError("no v1 signature matches the body")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("the signature's timestamp is outside the tolerance")
    return timestamp
