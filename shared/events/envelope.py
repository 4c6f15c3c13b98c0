"""The envelope every event travels in, and the registry of versioned payload models.

An event type (``purchase.completed``) may exist in several versions; the payload model
of each (type, version) is registered once here and consumers parse with it. A producer
bumps the version when it changes a payload incompatibly and keeps publishing the old
version until every consumer reads the new one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

_MODELS: dict[tuple[str, int], type[BaseModel]] = {}


class UnknownEvent(ValueError):
    """No payload model for this (type, version): the consumer is older than the producer."""


M = TypeVar("M", bound=type[BaseModel])


class EventEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    version: int
    account_id: str
    #: Service that wrote the fact (and whose outbox awaits the subscribers' acks).
    producer: str
    #: The account clock's time of the fact (test clock in test mode).
    occurred_at: datetime
    correlation_id: str | None = None
    data: dict[str, Any]


def event_model(type_: str, version: int):
    """Class decorator registering the payload model of one event type and version."""

    def register(cls: M) -> M:
        key = (type_, version)
        if key in _MODELS and _MODELS[key] is not cls:
            raise RuntimeError(f"event model {key} registered twice")
        _MODELS[key] = cls
        cls.event_type = type_  # type: ignore[attr-defined]
        cls.event_version = version  # type: ignore[attr-defined]
        return cls

    return register


def model_for(type_: str, version: int) -> type[BaseModel]:
    from . import models  # noqa: F401  (registers the models)

    try:
        return _MODELS[(type_, version)]
    except KeyError:
        raise UnknownEvent(f"no model for event {type_} v{version}") from None


def parse_event(envelope: EventEnvelope) -> BaseModel:
    return model_for(envelope.type, envelope.version).model_validate(envelope.data)
