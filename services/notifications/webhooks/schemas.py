"""Webhook endpoint and delivery shapes (API.md "Notifications and webhooks")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.clock import rfc3339
from shared.events.routing import PUBLIC_EVENT_TYPES
from shared.web.openapi import not_null
from shared.web.pagination import ListQuery

from . import policy

#: What an endpoint may subscribe to: a public event type, or ``*`` (every one).
EVENT_CHOICES = ("*", *sorted(PUBLIC_EVENT_TYPES))
EventChoice = Literal[EVENT_CHOICES]  # type: ignore[valid-type]
#: Most endpoints one account may have.
MAX_ENDPOINTS = 16


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _text(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value


Events = Annotated[list[EventChoice], Field(min_length=1, max_length=len(EVENT_CHOICES)), AfterValidator(_unique)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
Description = Annotated[str | None, Field(max_length=500), AfterValidator(_text)]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Where deliveries are POSTed. Live accounts: ``https://`` to a public address;
    #: test-mode accounts also ``http://`` and loopback addresses.
    url: Url
    #: Event types to receive (``*``: all of them).
    events: Events
    description: Description = None
    #: The signing secret; one is generated (``whsec_…``) when not given. Shown once.
    secret: str | None = Field(default=None, min_length=24, max_length=128, pattern=r"^[!-~]+$")


#: Fields of a PATCH that may not be set to null (``description`` may).
NOT_NULL = ("url", "events", "status")


class EndpointPatch(BaseModel):
    """Fields not given are left as they are."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=not_null(*NOT_NULL))

    url: Url | None = None
    events: Events | None = None
    description: Description = None
    #: ``disabled``: no new deliveries are made for it and pending ones wait (the feed keeps
    #: every event); ``enabled`` again: the pending ones are sent, in order.
    status: Literal["enabled", "disabled"] | None = None


class EndpointOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["webhook_endpoint"]
    url: str
    events: list[str]
    description: str | None
    status: Literal["enabled", "disabled"]
    #: The signing secret: in the answer to the creation (or a rotation) only, ``null`` afterwards.
    secret: str | None
    #: After a rotation, until when the previous secret signs too (two ``v1`` signatures).
    previous_secret_expires_at: datetime | None
    #: True after several failed attempts in a row; deliveries are held, never dropped.
    failing: bool
    consecutive_failures: int
    #: The first failed attempt of the current run of failures (null after a success).
    failing_since: datetime | None
    #: When the oldest pending delivery will be sent (null: nothing pending).
    next_attempt_at: datetime | None
    pending_deliveries: int
    created_at: datetime
    updated_at: datetime


def _instant(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


def endpoint_out(row: Any, secret: str | None = None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "webhook_endpoint",
        "url": row["url"],
        "events": list(row["events"]),
        "description": row["description"],
        "status": row["status"],
        "secret": secret,
        "previous_secret_expires_at": _instant(row["previous_secret_expires_at"]),
        "failing": policy.is_failing(row["consecutive_failures"]),
        "consecutive_failures": row["consecutive_failures"],
        "failing_since": _instant(row["failing_since"]),
        "next_attempt_at": _instant(row["next_attempt_at"]),
        "pending_deliveries": row["pending_deliveries"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


class EndpointList(ListQuery):
    pass


class DeliveryList(ListQuery):
    """Newest first; ``starting_after``: a delivery id of this endpoint."""

    status: Literal["pending", "delivered"] | None = None
    event_id: str | None = Field(default=None, max_length=100)


class DeliveryOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["webhook_delivery"]
    endpoint_id: str
    event_id: str
    event_type: str
    #: ``pending`` until the endpoint answers 2xx (then ``delivered``); never dropped.
    status: Literal["pending", "delivered"]
    attempts: int
    #: The next attempt of a delivery that failed (a pending one without it waits for
    #: the deliveries before it).
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_response_status: int | None
    #: The first bytes of the endpoint's last answer.
    last_response_body: str | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


def delivery_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "webhook_delivery",
        "endpoint_id": row["endpoint_id"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": _instant(row["next_attempt_at"]),
        "last_attempt_at": _instant(row["last_attempt_at"]),
        "last_response_status": row["last_response_status"],
        "last_response_body": row["last_response_body"],
        "last_error": row["last_error"],
        "delivered_at": _instant(row["delivered_at"]),
        "created_at": rfc3339(row["created_at"]),
    }
