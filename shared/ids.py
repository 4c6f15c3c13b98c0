"""Opaque, prefixed, time-ordered ids and unguessable public tokens."""

from __future__ import annotations

import hashlib
import os
import secrets
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``<prefix>_`` + a ULID (48-bit milliseconds + 80 random bits), lower case.

    Ids sort by creation time, which keeps cursor pagination (``starting_after``) stable.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode(millis, 10)}{_encode(rand, 16)}"


def new_token(nbytes: int = 24) -> str:
    """A public page token: ``nbytes`` of randomness (192 bits by default), URL-safe."""
    if nbytes < 16:
        raise ValueError("public tokens carry at least 128 bits of randomness")
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> bytes:
    """What we store for a bearer token: SHA-256 (tokens are high-entropy, no salt needed)."""
    return hashlib.sha256(token.encode()).digest()
