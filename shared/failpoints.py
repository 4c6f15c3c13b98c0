"""Failpoints: named places where the fault suite can make a process crash on purpose.

Inert unless the environment variable ``COMMERCE_FAILPOINTS`` names the point, e.g.::

    COMMERCE_FAILPOINTS="relay.after_publish=exit"

(several points: comma-separated). The only action is ``exit``: ``os._exit(137)``, the
exit status of ``kill -9`` — no ``finally`` blocks, no commit, no cleanup — so a test can
crash a process at an exact step instead of hoping a signal lands there.

Points:
- ``relay.after_publish``: `OutboxRelay.publish_pending`, after the Redis pipeline ran
  and before the transaction marking the rows published commits (TARGETS R4).
"""

from __future__ import annotations

import os
import sys

ENV_VAR = "COMMERCE_FAILPOINTS"


def _actions() -> dict[str, str]:
    value = os.environ.get(ENV_VAR, "")
    pairs = (item.partition("=") for item in value.split(",") if item.strip())
    return {name.strip(): action.strip() for name, _, action in pairs}


def failpoint(name: str) -> None:
    """Trigger the action configured for ``name``, if any (nothing by default)."""
    if ENV_VAR not in os.environ:
        return
    action = _actions().get(name)
    if action is None:
        return
    if action == "exit":
        sys.stderr.write(f"failpoint {name}: exiting with status 137\n")
        sys.stderr.flush()
        os._exit(137)
    raise ValueError(f"unknown failpoint action {action!r} for {name!r} (known: exit)")
