"""The one clock abstraction.

Live accounts use real UTC time. A test-mode account has a test clock: real time plus an
offset that only ever grows (``POST /v1/test_clock/advance``). Every timestamp a service
writes for an account and every time-driven job asks `AccountClock.now()`; nothing else
calls ``datetime.now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True, slots=True)
class AccountClock:
    """An account's view of time: system time shifted by the test clock's offset."""

    offset_us: int = 0
    base: Clock = SYSTEM_CLOCK

    def now(self) -> datetime:
        return self.base.now() + timedelta(microseconds=self.offset_us)

    def offset_to_reach(self, target: datetime) -> int:
        """The offset that makes ``now()`` equal ``target`` at this instant."""
        if target.tzinfo is None:
            raise ValueError("test clock targets must carry a time zone")
        delta = target - self.base.now()
        return delta // timedelta(microseconds=1)


class ClockMovedBackwards(ValueError):
    pass


def advanced_offset(clock: AccountClock, target: datetime) -> int:
    """New offset for ``advance(to=target)``; refuses to move the clock backwards."""
    if target < clock.now():
        raise ClockMovedBackwards("a test clock only moves forward")
    return clock.offset_to_reach(target)


def rfc3339(value: datetime) -> str:
    """Instants in the API: UTC, RFC 3339, ``Z`` suffix, microseconds when present."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def day_start(day: date, tz: tzinfo) -> datetime:
    """The first instant (UTC) of a calendar day in the account's time zone. A day that
    starts in a DST gap starts when the clocks jump (Santiago: 01:00 local)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
