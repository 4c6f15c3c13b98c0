"""The dunning timeline shown on a subscription and on the buyer's update page."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.accounts import Account

from ..dunning import policy as dunning
from . import repository as repo
from .service import dunning_run


async def dunning_timeline(conn: asyncpg.Connection, account: Account, subscription_id: str) -> dict[str, Any] | None:
    """The latest charge's timeline once it has failed at least once; None otherwise."""
    charge = await repo.latest_charge(conn, account.id, subscription_id)
    if charge is None or charge["policy"] is None:
        return None
    run = await dunning_run(conn, account, charge)
    out = dunning.timeline(run).to_json()
    out["charge_id"] = charge["id"]
    out["amount_due"] = charge["amount"] if charge["status"] not in ("succeeded", "canceled") else 0
    return out
