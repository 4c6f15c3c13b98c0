"""Outbound webhook signatures (shared/webhook_signing.py; docs/decisions.md 63): what we
send verifies with the helper and with the documented recipe written from scratch, and
nothing else does."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import webhook_signing as signing

SECRET = "whsec_" + "k" * 43
NOW = 1_760_000_000


def documented_receiver(body: bytes, header: str, secret: str, now: int, tolerance: int = 300) -> bool:
    """The receiver's recipe of docs/decisions.md 63, with nothing but the standard library:
    split the header on ",", take t and every v1, HMAC-SHA256 "t.body" with the secret,
    compare in constant time, and check |now - t| <= tolerance."""
    parts = [p.split("=", 1) for p in header.split(",")]
    t = next(v for k, v in parts if k == "t")
    v1 = [v for k, v in parts if k == "v1"]
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in v1) and abs(now - int(t)) <= tolerance


def test_a_signed_body_verifies_with_the_helper_and_the_recipe():
    body = b'{"id":"evt_1","type":"payment.succeeded","data":{"amount":1250}}'
    header = signing.sign(SECRET, body, timestamp=NOW)
    assert header.startswith(f"t={NOW},v1=")
    assert signing.verify(body, header, SECRET, now=NOW) == NOW
    assert documented_receiver(body, header, SECRET, NOW)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b"{}"
    header = signing.sign(SECRET, body, timestamp=NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.{{}}".encode(), hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"


@given(body=st.binary(max_size=2048), secret=st.text(min_size=1, max_size=64), skew=st.integers(-300, 300))
def test_any_body_verifies_within_the_tolerance(body, secret, skew):
    header = signing.sign(secret, body, timestamp=NOW)
    assert signing.verify(body, header, secret, now=NOW + skew) == NOW


@given(body=st.binary(min_size=1, max_size=512), index=st.integers(min_value=0), flip=st.integers(1, 255))
def test_a_changed_byte_fails(body, index, flip):
    header = signing.sign(SECRET, body, timestamp=NOW)
    i = index % len(body)
    tampered = body[:i] + bytes([body[i] ^ flip]) + body[i + 1 :]
    with pytest.raises(signing.SignatureError, match="no v1 signature matches"):
        signing.verify(tampered, header, SECRET, now=NOW)
    assert not documented_receiver(tampered, header, SECRET, NOW)


def test_the_wrong_secret_fails():
    header = signing.sign(SECRET, b"{}", timestamp=NOW)
    with pytest.raises(signing.SignatureError):
        signing.verify(b"{}", header, SECRET + "x", now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, -86_400, 86_400])
def test_a_timestamp_outside_the_tolerance_fails_both_ways(skew):
    """Too old is a replay; too far ahead would let a captured request be replayed later."""
    header = signing.sign(SECRET, b"{}", timestamp=NOW)
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify(b"{}", header, SECRET, now=NOW + skew)
    assert not documented_receiver(b"{}", header, SECRET, NOW + skew)


def test_a_timestamp_cannot_be_changed_without_the_secret():
    header = signing.sign(SECRET, b"{}", timestamp=NOW - 3600)
    moved = header.replace(f"t={NOW - 3600}", f"t={NOW}")
    with pytest.raises(signing.SignatureError, match="no v1 signature matches"):
        signing.verify(b"{}", moved, SECRET, now=NOW)


def test_during_a_rotation_either_secret_verifies():
    old, new = SECRET, "whsec_" + "n" * 43
    header = signing.sign([new, old], b"{}", timestamp=NOW)
    assert header.count("v1=") == 2
    assert signing.verify(b"{}", header, old, now=NOW) == NOW
    assert signing.verify(b"{}", header, new, now=NOW) == NOW
    assert signing.verify(b"{}", header, ["whsec_other", new], now=NOW) == NOW
    assert documented_receiver(b"{}", header, old, NOW) and documented_receiver(b"{}", header, new, NOW)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        (f"v1={'0' * 64}", "timestamp"),
        (f"t=abc,v1={'0' * 64}", "timestamp"),
        (f"t={NOW},t={NOW},v1={'0' * 64}", "timestamp"),
        (f"t={NOW}", "no v1"),
        (f"t={NOW},v0={'0' * 64}", "no v1"),
        ("t=" + "9" * 20 + ",v1=" + "0" * 64, "timestamp"),
        (f"t={NOW},v1=" + "0" * 5000, "malformed"),
        (f"t={NOW},v1=é", "malformed"),
    ],
)
def test_malformed_headers_are_refused(header, reason):
    with pytest.raises(signing.SignatureError, match=reason):
        signing.verify(b"{}", header, SECRET, now=NOW)


def test_only_v0_with_the_right_hmac_is_still_refused():
    digest = signing.compute(SECRET, NOW, b"{}")
    with pytest.raises(signing.SignatureError, match="no v1"):
        signing.verify(b"{}", f"t={NOW},v0={digest}", SECRET, now=NOW)


def test_signing_needs_a_secret():
    with pytest.raises(ValueError):
        signing.sign([], b"{}")
