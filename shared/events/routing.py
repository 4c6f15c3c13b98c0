"""Who receives each event type: the subscriber actors, by name.

Actor names are ``<service>.<verb>``; the service part is also the dramatiq queue the
message goes to. The relay of the producing service fans an event out to every
subscriber listed here; ``tests/unit/test_event_routing.py`` checks that every name
listed has a handler in its service and every handler is listed.
"""

from __future__ import annotations

SUBSCRIBERS: dict[str, tuple[str, ...]] = {
    "account.updated": (
        "billing.on_account_updated",
        "notifications.on_account_updated",
        "crm_sync.on_account_updated",
    ),
    "purchase.completed": (
        "billing.on_purchase_completed",
        "notifications.on_purchase_completed",
        "crm_sync.on_purchase_completed",
    ),
    "crm_record.updated": ("checkout.on_crm_record_updated",),
    # CRM and bulk import (issue 5): a batch of records in one event
    "crm_records.updated": ("checkout.on_crm_records_updated",),
    "contact.upserted": ("checkout.on_contact_upserted", "billing.on_contact_upserted"),
    "payment.succeeded": (
        "billing.on_payment_succeeded",
        "notifications.on_payment_succeeded",
        "checkout.on_payment_succeeded",
        "crm_sync.on_payment_succeeded",
    ),
    "payment.failed": (
        "billing.on_payment_failed",
        "notifications.on_payment_failed",
        "checkout.on_payment_failed",
        "crm_sync.on_payment_failed",
    ),
    "subscription.updated": ("crm_sync.on_subscription_updated", "notifications.on_subscription_updated"),
    "subscription.reminder_due": ("notifications.on_subscription_reminder_due",),
    "invoice.updated": ("checkout.on_invoice_updated", "notifications.on_invoice_updated"),
    "payment.refunded": ("billing.on_payment_refunded",),
    "payment.associated": ("crm_sync.on_payment_associated",),
    "payment_link.associated": ("crm_sync.on_payment_link_associated",),
    "processor_event.received": ("checkout.on_processor_event_received",),
    "quote.updated": ("crm_sync.on_quote_updated",),
    "quote.converted": ("billing.on_quote_converted",),
}

SERVICES = ("checkout", "billing", "notifications", "crm_sync")


# --- the account's event feed and outbound webhooks (issue 5, part 4) ---------------------------
#: Receives every public event (notifications: stored in the feed, ``GET /v1/events``, and
#: fanned out to the account's webhook endpoints). Added to each public type's subscribers.
FEED_ACTOR = "notifications.on_event"
#: Facts of an account that its integrations see (the feed and webhooks).
PUBLIC_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "purchase.completed",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
        "payment.associated",
        "payment_link.associated",
        "subscription.updated",
        "subscription.reminder_due",
        "invoice.updated",
        "quote.updated",
        "quote.converted",
        "contact.upserted",
        "crm_record.updated",
    }
)
#: Messages between the services that are not facts for integrations: ``account.updated``
#: carries API-key hashes and encrypted processor secrets (and repeats on every clock
#: advance); ``processor_event.received`` is checkout's own job. Every registered event
#: type is in exactly one of the two sets (tests/unit/test_event_routing.py).
#: ``crm_records.updated`` is the batch form of ``crm_record.updated`` (a bulk import's
#: records for checkout's projection), a transport between the services.
INTERNAL_EVENT_TYPES: frozenset[str] = frozenset({"account.updated", "processor_event.received", "crm_records.updated"})
# --- end of the event feed block ---------------------------------------------------------------


def subscribers_of(event_type: str) -> tuple[str, ...]:
    subscribers = SUBSCRIBERS.get(event_type, ())
    if event_type in PUBLIC_EVENT_TYPES:
        subscribers = (*subscribers, FEED_ACTOR)
    return subscribers


def queue_of_actor(actor_name: str) -> str:
    service = actor_name.split(".", 1)[0]
    if service not in SERVICES:
        raise ValueError(f"actor {actor_name!r} does not belong to a known service")
    return service
