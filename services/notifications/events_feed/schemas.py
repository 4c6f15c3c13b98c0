"""The shape of an event in the feed — and, byte for byte, the body of a webhook."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.clock import rfc3339
from shared.db import dumps
from shared.web.pagination import ListQuery


class EventList(ListQuery):
    """``starting_after``: an event id of this account; the page holds the events
    recorded after it, oldest first."""


class EventOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["event"]
    #: e.g. ``payment.succeeded`` (shared/events/routing.py: PUBLIC_EVENT_TYPES).
    type: str
    #: Version of the payload's shape for this type (a new version for incompatible changes).
    version: int
    #: When the fact happened, on the account's clock (a test clock in test mode).
    created_at: datetime
    #: The event's payload (shared/events/models.py).
    data: dict[str, Any]


def event_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["event_id"],
        "object": "event",
        "type": row["type"],
        "version": row["version"],
        "created_at": rfc3339(row["occurred_at"]),
        "data": row["data"],
    }


def event_body(row: Any) -> bytes:
    """A webhook's body: the feed's item as compact UTF-8 JSON (what is signed)."""
    return dumps(event_out(row)).encode()
