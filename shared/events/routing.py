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
    "invoice.updated": ("checkout.on_invoice_updated",),
    "payment.refunded": ("billing.on_payment_refunded",),
    "payment.associated": ("crm_sync.on_payment_associated",),
    "payment_link.associated": ("crm_sync.on_payment_link_associated",),
    "processor_event.received": ("checkout.on_processor_event_received",),
}

SERVICES = ("checkout", "billing", "notifications", "crm_sync")


def subscribers_of(event_type: str) -> tuple[str, ...]:
    return SUBSCRIBERS.get(event_type, ())


def queue_of_actor(actor_name: str) -> str:
    service = actor_name.split(".", 1)[0]
    if service not in SERVICES:
        raise ValueError(f"actor {actor_name!r} does not belong to a known service")
    return service
