"""When a failed delivery is tried again (pure; docs/decisions.md 62).

Per endpoint, deliveries go out in order; while the oldest pending one (the head) fails,
the later ones are held. The head is retried after 10 s, 1 min, 5 min, 30 min, 2 h, then
every 6 h for as long as it takes: a delivery is never dropped. After `FAILING_AFTER`
failures in a row the endpoint reports ``failing`` (nothing else changes); the first 2xx
clears it and the held deliveries follow at once, in order.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Seconds before the n-th retry (n = 1, 2, …); the last value repeats forever.
RETRY_SCHEDULE_S: tuple[int, ...] = (10, 60, 300, 1800, 7200, 21600)
#: Failures in a row after which an endpoint is reported as failing.
FAILING_AFTER = 5


def retry_delay(failures: int, schedule: Sequence[int] = RETRY_SCHEDULE_S) -> int:
    """Seconds to wait after the ``failures``-th failed attempt (1-based) of a delivery."""
    if failures < 1:
        raise ValueError("a retry follows at least one failure")
    if not schedule or any(s <= 0 for s in schedule):
        raise ValueError("a retry schedule is a non-empty list of positive delays")
    return schedule[min(failures, len(schedule)) - 1]


def is_failing(consecutive_failures: int) -> bool:
    return consecutive_failures >= FAILING_AFTER
