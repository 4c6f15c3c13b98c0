"""The processor event as the webhook endpoint reads it (after its signature was checked)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

#: Event types checkout acts on: anything about a PaymentIntent or its charge (refunds are
#: charges too). Others are stored (answered 2xx, de-duplicated) and marked ignored.
ACTIONABLE_PREFIXES = ("payment_intent.", "charge.")


class NotAnEvent(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ProcessorEvent:
    id: str
    type: str
    object_id: str | None
    livemode: bool | None
    created: datetime | None
    #: The PaymentIntent the event is about (its own id, or a charge's ``payment_intent``).
    payment_intent_id: str | None

    @property
    def actionable(self) -> bool:
        return self.type.startswith(ACTIONABLE_PREFIXES) and self.payment_intent_id is not None


def _refuse_constant(name: str) -> Any:
    raise NotAnEvent(f"{name} is not JSON")


def _short_str(value: Any, limit: int = 255) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def parse_event(payload: bytes) -> ProcessorEvent:
    """A Stripe event object (``{"id": "evt_…", "object": "event", "type": …, "data":
    {"object": {…}}}``); `NotAnEvent` for anything else."""
    if b"\\u0000" in payload:  # valid JSON that PostgreSQL's jsonb cannot store
        raise NotAnEvent("the body contains a NUL character")
    try:
        data = json.loads(payload, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise NotAnEvent("the body is not JSON") from None
    if not isinstance(data, dict):
        raise NotAnEvent("the body is not a JSON object")
    event_id, event_type = _short_str(data.get("id")), _short_str(data.get("type"))
    obj = (data.get("data") or {}).get("object") if isinstance(data.get("data"), dict) else None
    if event_id is None or event_type is None or not isinstance(obj, dict):
        raise NotAnEvent("the body is not a processor event (id, type, data.object)")
    if data.get("object", "event") != "event":
        raise NotAnEvent("the body is not a processor event")
    created = data.get("created")
    object_id = _short_str(obj.get("id"))
    if event_type.startswith("payment_intent."):
        intent = object_id
    elif event_type.startswith("charge."):
        pi = obj.get("payment_intent")
        intent = _short_str(pi.get("id") if isinstance(pi, dict) else pi)
    else:
        intent = None
    return ProcessorEvent(
        id=event_id,
        type=event_type,
        object_id=object_id,
        livemode=data.get("livemode") if isinstance(data.get("livemode"), bool) else None,
        created=datetime.fromtimestamp(created, UTC) if isinstance(created, int) and 0 < created < 2**33 else None,
        payment_intent_id=intent,
    )


def intent_of(payload: dict) -> str | None:
    """The PaymentIntent a stored event is about (see `parse_event`)."""
    obj = (payload.get("data") or {}).get("object") or {}
    if payload.get("type", "").startswith("payment_intent."):
        return obj.get("id")
    pi = obj.get("payment_intent")
    return pi.get("id") if isinstance(pi, dict) else pi


class WebhookReceived(BaseModel):
    """The answer to a processor webhook once the event is stored (the OpenAPI document)."""

    model_config = ConfigDict(extra="forbid")

    received: Literal[True]
    #: The event was received before (answered 200 all the same, so the processor stops).
    duplicate: bool
    event_id: str
