"""Upcoming-payment reminders (PRODUCT §6.4; TARGETS "Mission defaults") — pure, no I/O.

When an account enables reminders, the buyer gets an e-mail ``lead_days`` (default 14)
before each automatic charge. Rules (docs/decisions.md 26):
- A reminder is due at the start of the local day ``charge_date − lead_days`` in the
  account's time zone; the charge itself is due at the start of its own day
  (`shared.clock.day_start`). So a reminder always precedes its charge.
- Only intervals **longer** than the lead time have reminders, judged by the interval's
  *shortest* period (monthly: 28 days, the February one), not its nominal length: then a
  reminder always comes after the previous charge, never before it (a 30-day lead on a
  monthly plan would remind about 28 February before the 31 January charge).
- Only automatic charges: not the first payment when it was taken at checkout, and
  nothing before the subscription existed (a delayed start closer than the lead time
  gets no reminder for its first charge).
- Which subscriptions are asked about (automatic collection, not canceled or paused) is
  the caller's choice; each reminder has a deterministic key ``(subscription id, charge
  date)`` for the caller's exactly-once send ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from shared.clock import day_start
from shared.schedule import UnknownInterval, first_index_on_or_after, nth_date

DEFAULT_LEAD_DAYS = 14
#: The account settings' bounds (shared/accounts.py ``reminder_days``).
MIN_LEAD_DAYS = 1
MAX_LEAD_DAYS = 365

#: The shortest period each interval can produce between two payment dates (anchor-based
#: dates, month ends clamped; 4 and 5 years across 2100, which is not a leap year).
SHORTEST_PERIOD_DAYS: dict[str, int] = {
    "weekly": 7,
    "biweekly": 14,
    "monthly": 28,
    "quarterly": 89,
    "semiannually": 181,
    "annually": 365,
    "every_2_years": 730,
    "every_3_years": 1095,
    "every_4_years": 1460,
    "every_5_years": 1825,
}


class InvalidReminderPolicy(ValueError):
    """``errors`` is ``[{field, message}]`` as problem+json wants it."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors
        self.field = errors[0]["field"]
        self.message = errors[0]["message"]


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    enabled: bool = False
    lead_days: int = DEFAULT_LEAD_DAYS

    def __post_init__(self) -> None:
        errors = []
        if type(self.enabled) is not bool:
            errors.append({"field": "reminders_enabled", "message": "must be true or false"})
        if type(self.lead_days) is not int or not MIN_LEAD_DAYS <= self.lead_days <= MAX_LEAD_DAYS:
            errors.append(
                {"field": "reminder_days", "message": f"must be a whole number from {MIN_LEAD_DAYS} to {MAX_LEAD_DAYS}"}
            )
        if errors:
            raise InvalidReminderPolicy(errors)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, field_prefix: str = "") -> ReminderPolicy:
        """From the account's ``subscription_settings`` (other keys are left alone)."""
        try:
            return cls(
                enabled=settings.get("reminders_enabled", False),
                lead_days=settings.get("reminder_days", DEFAULT_LEAD_DAYS),
            )
        except InvalidReminderPolicy as exc:
            raise InvalidReminderPolicy([{**e, "field": field_prefix + e["field"]} for e in exc.errors]) from None

    def to_settings(self) -> dict[str, Any]:
        return {"reminders_enabled": self.enabled, "reminder_days": self.lead_days}


def interval_has_reminders(interval: str, lead_days: int) -> bool:
    """Whether every period of ``interval`` is longer than the lead time."""
    if interval not in SHORTEST_PERIOD_DAYS:
        raise UnknownInterval(interval)
    return SHORTEST_PERIOD_DAYS[interval] > lead_days


def reminder_at(policy: ReminderPolicy, interval: str, charge_date: date, tz: tzinfo) -> datetime | None:
    """When to remind the buyer of the automatic charge on ``charge_date``, or None."""
    if not policy.enabled or not interval_has_reminders(interval, policy.lead_days):
        return None
    return day_start(charge_date - timedelta(days=policy.lead_days), tz)


@dataclass(frozen=True, slots=True)
class RemindedSubscription:
    """What the reminder sweep needs of one automatically charged subscription."""

    subscription_id: str
    anchor: date
    interval: str
    #: Fixed term (number of payments), or None; ``end_date`` inclusive, or None.
    payments: int | None = None
    end_date: date | None = None
    #: False when the anchor's payment was taken at checkout (it is not an automatic charge).
    first_charge_automatic: bool = True
    #: No reminder is due before this instant (the subscription's creation).
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReminderDue:
    subscription_id: str
    charge_date: date
    remind_at: datetime
    charge_at: datetime

    @property
    def key(self) -> tuple[str, date]:
        return (self.subscription_id, self.charge_date)

    @property
    def idempotency_key(self) -> str:
        return f"reminder:{self.subscription_id}:{self.charge_date.isoformat()}"


def _charges_from(sub: RemindedSubscription, day: date) -> Iterator[tuple[int, date]]:
    n = first_index_on_or_after(sub.anchor, sub.interval, day)
    while sub.payments is None or n < sub.payments:
        when = nth_date(sub.anchor, sub.interval, n)
        if sub.end_date is not None and when > sub.end_date:
            return
        yield n, when
        n += 1


def reminders_due(
    policy: ReminderPolicy,
    subscriptions: Iterable[RemindedSubscription],
    *,
    window_from: datetime,
    window_to: datetime,
    tz: tzinfo,
) -> tuple[ReminderDue, ...]:
    """Every charge whose reminder falls in ``[window_from, window_to)``, ordered by
    reminder instant then subscription id. Consecutive windows never share a reminder."""
    if window_from.tzinfo is None or window_to.tzinfo is None:
        raise ValueError("window bounds must carry a time zone")
    start, end = window_from.astimezone(UTC), window_to.astimezone(UTC)
    if end < start:
        raise ValueError("the window ends before it starts")
    if not policy.enabled or start == end:
        return ()
    lead = timedelta(days=policy.lead_days)
    # A day that starts at or after `start` is not before the day before start's local
    # date (one day of slack for zones that skipped a date); the loop filters exactly.
    first_day = start.astimezone(tz).date() - timedelta(days=1) + lead
    due: list[ReminderDue] = []
    for sub in subscriptions:
        if not interval_has_reminders(sub.interval, policy.lead_days):
            continue
        for n, charge_date in _charges_from(sub, first_day):
            at = day_start(charge_date - lead, tz)
            if at >= end:
                break
            if at < start or (n == 0 and not sub.first_charge_automatic):
                continue
            if sub.created_at is not None and at < sub.created_at:
                continue
            due.append(ReminderDue(sub.subscription_id, charge_date, at, day_start(charge_date, tz)))
    return tuple(sorted(due, key=lambda r: (r.remind_at, r.subscription_id)))
