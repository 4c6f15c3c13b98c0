"""Versioned event models, their envelope and the routing of event types to subscribers."""

from .envelope import EventEnvelope, event_model, model_for, parse_event
from .routing import queue_of_actor, subscribers_of

__all__ = [
    "EventEnvelope",
    "event_model",
    "model_for",
    "parse_event",
    "queue_of_actor",
    "subscribers_of",
]
