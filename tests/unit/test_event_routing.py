"""Event routing is consistent: every subscriber actor listed in shared.events.routing is
declared by its service's worker registries, every declared handler is listed, and every
event type (routed or handled) has a registered payload model."""

from __future__ import annotations

import importlib

import pytest
from pydantic import BaseModel

from shared.events import envelope as envelope_module
from shared.events import model_for
from shared.events.routing import SERVICES, SUBSCRIBERS, queue_of_actor, subscribers_of
from shared.inbox import HandlerRegistry


def registries_of(service: str) -> list[HandlerRegistry]:
    """What the service's worker process runs: ``REGISTRIES`` or its module-level registries."""
    worker = importlib.import_module(f"services.{service}.worker")
    declared = getattr(worker, "REGISTRIES", None)
    if declared is None:
        declared = [v for v in vars(worker).values() if isinstance(v, HandlerRegistry)]
    assert declared, f"services.{service}.worker declares no handler registry"
    assert all(isinstance(r, HandlerRegistry) for r in declared)
    return list(declared)


def declared_handlers() -> dict[str, tuple[str, str, int]]:
    """actor name -> (service, event type, version) over every worker."""
    handlers: dict[str, tuple[str, str, int]] = {}
    for service in SERVICES:
        for registry in registries_of(service):
            assert registry.service == service, f"a {registry.service} registry runs in {service}'s worker"
            for name, handler in registry.handlers.items():
                assert name not in handlers, f"{name} declared twice"
                handlers[name] = (service, handler.event_type, handler.version)
    return handlers


def routed() -> dict[str, set[str]]:
    """actor name -> event types routed to it."""
    actors: dict[str, set[str]] = {}
    for event_type, names in SUBSCRIBERS.items():
        assert len(names) == len(set(names)), f"{event_type} lists a subscriber twice"
        for name in names:
            actors.setdefault(name, set()).add(event_type)
    return actors


def test_every_listed_subscriber_is_declared_by_its_service():
    handlers = declared_handlers()
    for name, event_types in routed().items():
        assert name in handlers, f"{name} is routed to but no worker declares it"
        service, event_type, _version = handlers[name]
        assert queue_of_actor(name) == service, f"{name} would be queued on another service's queue"
        assert event_types == {event_type}, f"{name} handles {event_type} but is routed {sorted(event_types)}"


def test_every_declared_handler_is_listed():
    listed = routed()
    for name, (_service, event_type, _version) in declared_handlers().items():
        assert name in listed, f"{name} is declared but no event is routed to it"
        assert name in subscribers_of(event_type)


def test_actor_names_follow_the_convention():
    for name, (service, event_type, _version) in declared_handlers().items():
        assert name == f"{service}.on_{event_type.replace('.', '_')}"


def test_every_event_type_has_a_payload_model():
    for event_type in SUBSCRIBERS:
        model = model_for(event_type, 1)
        assert issubclass(model, BaseModel)
        assert model.event_type == event_type  # type: ignore[attr-defined]
    for name, (_service, event_type, version) in declared_handlers().items():
        assert issubclass(model_for(event_type, version), BaseModel), name


def test_every_registered_model_knows_its_type_and_version():
    model_for("purchase.completed", 1)  # imports the models module
    for (event_type, version), model in envelope_module._MODELS.items():
        assert model.event_type == event_type and model.event_version == version  # type: ignore[attr-defined]


def test_non_owner_services_keep_the_account_projection():
    for service in SERVICES:
        if service == "checkout":  # the owner of accounts does not subscribe to its own snapshots
            assert f"{service}.on_account_updated" not in subscribers_of("account.updated")
        else:
            assert f"{service}.on_account_updated" in subscribers_of("account.updated")


def test_unknown_routing_inputs():
    assert subscribers_of("no.such.event") == ()
    with pytest.raises(ValueError):
        queue_of_actor("nobody.on_x")
    with pytest.raises(envelope_module.UnknownEvent):
        model_for("purchase.completed", 999)


# --- the event feed and outbound webhooks (issue 5, part 4) --------------------------------------
def test_every_event_type_is_classified_public_or_internal():
    """A new event type must be classified in shared/events/routing.py: public (the
    account's feed and webhooks) or internal (never shown to integrations)."""
    from shared.events.routing import INTERNAL_EVENT_TYPES, PUBLIC_EVENT_TYPES

    model_for("purchase.completed", 1)  # imports the models module
    registered = {event_type for event_type, _version in envelope_module._MODELS}
    assert not PUBLIC_EVENT_TYPES & INTERNAL_EVENT_TYPES
    unclassified = registered - PUBLIC_EVENT_TYPES - INTERNAL_EVENT_TYPES
    assert not unclassified, f"classify in shared/events/routing.py (public or internal): {sorted(unclassified)}"
    assert (PUBLIC_EVENT_TYPES | INTERNAL_EVENT_TYPES) <= registered, "a classified type has no model"


def test_public_events_reach_the_feed_and_internal_ones_never():
    from shared.events.routing import FEED_ACTOR, INTERNAL_EVENT_TYPES, PUBLIC_EVENT_TYPES

    for event_type in PUBLIC_EVENT_TYPES:
        assert subscribers_of(event_type).count(FEED_ACTOR) == 1, event_type
        assert set(SUBSCRIBERS.get(event_type, ())) <= set(subscribers_of(event_type))
    for event_type in INTERNAL_EVENT_TYPES:
        assert FEED_ACTOR not in subscribers_of(event_type), event_type
    assert queue_of_actor(FEED_ACTOR) == "notifications"
    assert FEED_ACTOR not in declared_handlers(), "the feed actor is not a per-type handler"


def test_the_feed_and_drain_actors_are_declared_by_the_notifications_worker():
    from dramatiq.brokers.stub import StubBroker

    from services.notifications import worker
    from services.notifications.events_feed.tasks import declare_feed_actor
    from services.notifications.settings import NotificationsSettings
    from services.notifications.webhooks.tasks import DRAIN_ACTOR, declare_drain_actor
    from shared.events.routing import FEED_ACTOR

    broker = StubBroker()
    settings = NotificationsSettings()
    try:
        feed = declare_feed_actor(broker, settings, lambda: None)
        drain = declare_drain_actor(broker, lambda: None)
        assert [a.actor_name for a in feed] == [FEED_ACTOR] and drain.actor_name == DRAIN_ACTOR
        assert {a.queue_name for a in (*feed, drain)} == {"notifications"}
        assert set(broker.get_declared_actors()) == {FEED_ACTOR, DRAIN_ACTOR}
    finally:
        broker.close()
    assert "declare_feed_actor" in vars(worker) and "declare_drain_actor" in vars(worker)
