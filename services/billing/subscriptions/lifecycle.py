"""Where a subscription's schedule stands — pure, no I/O (PRODUCT §6.3, §6.4).

Dates come from the anchor (``start_date``) and the payment index, never by stepping
from the previous date (`shared.schedule.nth_date`). ``payments_made`` counts successful
payments (fixed terms end after N of them); ``next_index`` is the index of the next
payment date, which runs ahead of ``payments_made`` when periods were skipped (a pause).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from shared.schedule import first_index_on_or_after, nth_date

#: Statuses in which the scheduler charges a due payment date.
CHARGEABLE = ("scheduled", "active")
#: Statuses that end a subscription for good.
ENDED = ("canceled", "completed")


@dataclass(frozen=True, slots=True)
class Position:
    status: str
    payments_made: int
    next_index: int
    next_payment_date: date | None


def _next(anchor: date, interval: str, index: int, end_date: date | None) -> date | None:
    when = nth_date(anchor, interval, index)
    return None if end_date is not None and when > end_date else when


def at_birth(
    *,
    anchor: date,
    interval: str,
    payments_total: int | None,
    end_date: date | None,
    first_payment_charged: bool,
    today: date,
) -> Position:
    """A new subscription: the checkout's charge counts as payment 1; a start in the
    future is ``scheduled`` and charged on its start date."""
    if first_payment_charged:
        return after_payment(
            Position("active", 0, 0, anchor),
            anchor=anchor,
            interval=interval,
            payments_total=payments_total,
            end_date=end_date,
            paid_index=0,
        )
    status = "scheduled" if anchor > today else "active"
    return Position(status, 0, 0, _next(anchor, interval, 0, end_date))


def after_payment(
    pos: Position,
    *,
    anchor: date,
    interval: str,
    payments_total: int | None,
    end_date: date | None,
    paid_index: int,
) -> Position:
    """The payment of date ``paid_index`` succeeded."""
    made = pos.payments_made + 1
    index = max(pos.next_index, paid_index + 1)
    if payments_total is not None and made >= payments_total:
        return Position("completed", made, index, None)
    when = _next(anchor, interval, index, end_date)
    return Position("active" if when is not None else "completed", made, index, when)


def on_resume(pos: Position, *, anchor: date, interval: str, end_date: date | None, today: date) -> Position:
    """Resuming a paused subscription keeps its anchor: the next payment is the first
    payment date on or after the day it resumes (paused periods are not charged)."""
    index = max(pos.next_index, first_index_on_or_after(anchor, interval, today))
    when = _next(anchor, interval, index, end_date)
    if when is None:
        return Position("completed", pos.payments_made, index, None)
    status = "scheduled" if pos.payments_made == 0 and when > today else "active"
    return Position(status, pos.payments_made, index, when)


def period_end(anchor: date, interval: str, index: int) -> date:
    """The day the period that starts on payment date ``index`` ends (exclusive)."""
    return nth_date(anchor, interval, index + 1)
