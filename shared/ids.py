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


#: A random byte to a digit of the alphabet (256 = 8 × 32: every digit equally likely).
_RANDOM_DIGIT = bytes(ord(_CROCKFORD[b & 31]) for b in range(256))


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids of `new_id`'s form at once (set-based writers): one clock reading, and
    the 16 random digits of each from 16 random bytes (5 bits each: 80 bits, as `new_id`)
    translated in one C-level pass — a tenth of the time per id."""
    head = f"{prefix}_{_encode(time.time_ns() // 1_000_000, 10)}"
    text = os.urandom(16 * count).translate(_RANDOM_DIGIT).decode("ascii")
    return [head + text[i : i + 16] for i in range(0, 16 * count, 16)]


def new_token(nbytes: int = 24) -> str:
    """A public page token: ``nbytes`` of randomness (192 bits by default), URL-safe."""
    if nbytes < 16:
        raise ValueError("public tokens carry at least 128 bits of randomness")
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> bytes:
    """What we store for a bearer token: SHA-256 (tokens are high-entropy, no salt needed)."""
    return hashlib.sha256(token.encode()).digest()
