"""shared.ids (prefixed time-ordered ids, unguessable tokens) and shared.clock (the test
clock's offset, forward-only advance, RFC 3339 output)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import ids
from shared.clock import SYSTEM_CLOCK, AccountClock, ClockMovedBackwards, advanced_offset, rfc3339
from shared.ids import new_id, new_ids, new_token, token_hash

ID_BODY = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")  # Crockford base32, lower case


# -- ids -----------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["plink", "cs", "pay", "contact", "evt", "acct", "key", "li"])
def test_ids_carry_their_type_prefix(prefix):
    value = new_id(prefix)
    head, _, body = value.rpartition("_")
    assert head == prefix
    assert ID_BODY.match(body), value


def test_ids_sort_by_creation_time(monkeypatch):
    now = [1_700_000_000_000_000_000]
    monkeypatch.setattr(ids.time, "time_ns", lambda: now[0])
    generated = []
    for _ in range(200):
        generated.append(new_id("pay"))
        now[0] += 1_000_000  # one millisecond later
    assert generated == sorted(generated)
    assert len(set(generated)) == len(generated)


def test_ids_in_one_millisecond_are_still_unique(monkeypatch):
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    batch = {new_id("pay") for _ in range(5000)}
    assert len(batch) == 5000
    assert len({b.split("_")[1][:10] for b in batch}) == 1  # same time part, random rest


def test_id_time_part_encodes_the_milliseconds(monkeypatch):
    millis = 1_700_000_000_123
    monkeypatch.setattr(ids.time, "time_ns", lambda: millis * 1_000_000)
    body = new_id("x").split("_")[1]
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    decoded = 0
    for ch in body[:10]:
        decoded = decoded * 32 + alphabet.index(ch)
    assert decoded == millis


def test_real_ids_are_increasing_across_milliseconds():
    import time

    first = new_id("evt")
    time.sleep(0.003)
    assert new_id("evt") > first


def test_ids_made_in_a_batch_have_the_same_form_and_time_part(monkeypatch):
    millis = 1_700_000_000_123
    monkeypatch.setattr(ids.time, "time_ns", lambda: millis * 1_000_000)
    made = new_ids("contact", 5000)
    assert len(set(made)) == 5000 and new_ids("contact", 0) == []
    one = new_id("contact")
    for value in made:
        head, _, body = value.rpartition("_")
        assert head == "contact" and ID_BODY.match(body), value
        assert body[:10] == one.split("_")[1][:10]  # the same milliseconds as new_id encodes
    # the random part uses the whole alphabet (base32 translated, not truncated)
    assert set("".join(v[-16:] for v in made)) == set("0123456789abcdefghjkmnpqrstvwxyz")


# -- tokens --------------------------------------------------------------------------------
def _randomness_bits(token: str) -> int:
    return len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8


def test_default_token_has_192_bits_and_is_url_safe():
    token = new_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert _randomness_bits(token) == 192
    assert len(token) == 32


@pytest.mark.parametrize("nbytes", [16, 24, 32])
def test_tokens_carry_at_least_128_bits(nbytes):
    token = new_token(nbytes)
    assert _randomness_bits(token) == nbytes * 8 >= 128
    assert len(token) >= 22


@pytest.mark.parametrize("nbytes", [0, 8, 15])
def test_short_tokens_are_refused(nbytes):
    with pytest.raises(ValueError):
        new_token(nbytes)


def test_tokens_are_unique_and_spread_over_the_alphabet():
    tokens = [new_token(16) for _ in range(5000)]
    assert len(set(tokens)) == len(tokens)
    # every position of a random token uses most of the 64 symbols over 5000 draws
    first_chars = {t[0] for t in tokens}
    assert len(first_chars) >= 60


def test_token_hash_is_sha256_and_differs_from_the_token():
    token = new_token()
    digest = token_hash(token)
    assert isinstance(digest, bytes) and len(digest) == 32
    assert token_hash(token) == digest
    assert token_hash(new_token()) != digest
    assert token.encode() not in digest


# -- clock ---------------------------------------------------------------------------------
@dataclass
class FixedClock:
    at: datetime

    def now(self) -> datetime:
        return self.at


T0 = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


def test_account_clock_without_offset_is_the_base_clock():
    assert AccountClock(base=FixedClock(T0)).now() == T0
    live = AccountClock().now()
    assert live.tzinfo is not None
    assert abs(live - SYSTEM_CLOCK.now()) < timedelta(seconds=5)


def test_offset_shifts_now():
    clock = AccountClock(offset_us=90 * 60 * 1_000_000, base=FixedClock(T0))
    assert clock.now() == T0 + timedelta(minutes=90)


def test_offset_to_reach_lands_exactly_on_the_target():
    base = FixedClock(T0)
    target = T0 + timedelta(days=365, microseconds=7)
    offset = AccountClock(base=base).offset_to_reach(target)
    assert offset == (365 * 86400) * 1_000_000 + 7
    assert AccountClock(offset_us=offset, base=base).now() == target


def test_offset_to_reach_needs_an_aware_target():
    with pytest.raises(ValueError):
        AccountClock(base=FixedClock(T0)).offset_to_reach(datetime(2030, 2, 1))


def test_advanced_offset_moves_forward_only():
    base = FixedClock(T0)
    clock = AccountClock(offset_us=3_600_000_000, base=base)  # an hour ahead already
    later = T0 + timedelta(days=30)
    assert AccountClock(offset_us=advanced_offset(clock, later), base=base).now() == later
    assert advanced_offset(clock, clock.now()) == clock.offset_us  # "advance" to now: no change
    with pytest.raises(ClockMovedBackwards):
        advanced_offset(clock, T0 + timedelta(minutes=59))  # before the clock's now, after real time
    with pytest.raises(ClockMovedBackwards):
        advanced_offset(clock, T0 - timedelta(days=1))


def test_advanced_offset_accepts_any_time_zone():
    base = FixedClock(T0)
    target = datetime(2030, 1, 16, 9, 0, tzinfo=timezone(timedelta(hours=-5)))  # 14:00 UTC
    offset = advanced_offset(AccountClock(base=base), target)
    assert AccountClock(offset_us=offset, base=base).now() == datetime(2030, 1, 16, 14, 0, tzinfo=UTC)


@settings(deadline=None)  # the CPU is shared: time per example is noise
@given(st.integers(min_value=0, max_value=10 * 365 * 86400 * 1_000_000), st.integers(min_value=0, max_value=10**12))
def test_advance_never_goes_back(start_offset, step_us):
    base = FixedClock(T0)
    clock = AccountClock(offset_us=start_offset, base=base)
    target = clock.now() + timedelta(microseconds=step_us)
    new = advanced_offset(clock, target)
    assert new >= start_offset
    assert AccountClock(offset_us=new, base=base).now() == target


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2030, 1, 15, 12, 0, tzinfo=UTC), "2030-01-15T12:00:00Z"),
        (datetime(2030, 1, 15, 12, 0, 0, 123456, tzinfo=UTC), "2030-01-15T12:00:00.123456Z"),
        (datetime(2030, 1, 15, 13, 30, tzinfo=timezone(timedelta(hours=1, minutes=30))), "2030-01-15T12:00:00Z"),
        (datetime(2029, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2))), "2030-01-01T01:00:00Z"),
    ],
)
def test_rfc3339_is_utc_with_z(value, text):
    assert rfc3339(value) == text
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) == value
