"""Payload models of the events the services exchange (the contract between them)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .envelope import event_model


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- account.updated -------------------------------------------------------------------
class ProcessorSnapshot(_Payload):
    type: str  # "test" | "stripe"
    publishable_key: str | None = None
    api_base: str | None = None
    #: Fernet ciphertext (COMMERCE_SECRET_KEY); never the plain secret.
    secret_key_encrypted: str | None = None
    webhook_secret_encrypted: str | None = None


class ApiKeySnapshot(_Payload):
    id: str
    prefix: str
    key_hash: str  # hex SHA-256
    scopes: list[str]
    revoked_at: datetime | None = None


class AccountSnapshot(_Payload):
    id: str
    version: int
    name: str
    test_mode: bool
    settings: dict
    clock_offset_us: int
    processor: ProcessorSnapshot | None = None
    api_keys: list[ApiKeySnapshot]


@event_model("account.updated", 1)
class AccountUpdatedV1(_Payload):
    """The whole account as the owner (checkout) sees it; consumers keep a projection.

    Sent on creation, on every settings, key, processor or test-clock change. Carries a
    version so that projections apply snapshots in any order and keep the newest.
    """

    account: AccountSnapshot
    #: Set when the change moved the test clock (consumers schedule what became due).
    clock_advanced_from_us: int | None = None


# --- purchase.completed ----------------------------------------------------------------
class Address(_Payload):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


class RecurringTerms(_Payload):
    interval: str
    #: Number of payments; None = renews until cancelled.
    payments: int | None = None
    end_date: date | None = None
    #: First billing date (the anchor), in the account's time zone.
    start_date: date


class TaxRateRef(_Payload):
    id: str
    name: str
    percentage: str  # decimal string, e.g. "8.875"


class PurchasedItem(_Payload):
    line_item_id: str
    product_id: str | None = None
    name: str
    description: str | None = None
    quantity: int
    unit_amount: int
    #: Per-unit discount (already rounded); applies to every payment of a recurring item.
    unit_discount: int = 0
    #: (unit_amount − unit_discount) × quantity: each payment's line amount before tax.
    amount: int
    #: Share of the order discounts in what was charged now (0 when not charged now).
    discount: int = 0
    #: Tax charged now on this line.
    tax: int = 0
    #: Tax on each later payment of a recurring line.
    recurring_tax: int = 0
    tax_rate: TaxRateRef | None = None
    due_now: bool = True
    recurring: RecurringTerms | None = None
    subscription_group: str | None = None


class SubscriptionTerms(_Payload):
    """One subscription to create for a group of recurring items (PRODUCT §6.2)."""

    subscription_group: str
    interval: str
    payments: int | None = None
    end_date: date | None = None
    start_date: date
    #: True when the first payment was charged at checkout (it counts as payment 1).
    first_payment_charged: bool
    line_item_ids: list[str]
    #: Each later payment: line amounts plus their tax.
    amount: int
    tax: int = 0


class DealRule(_Payload):
    """Inputs of the deal rule of PRODUCT §3.2, applied by crm_sync."""

    link_id: str
    link_name: str
    #: The deal the link was created with (or from), if any.
    deal_id: str | None = None
    #: {"pipeline": id, "stage": id} when each payment should create a deal; None = off.
    create_deal: dict | None = None


class PurchaseContact(_Payload):
    email: str
    firstname: str | None = None
    lastname: str | None = None
    phone: str | None = None
    company: str | None = None
    jobtitle: str | None = None
    website: str | None = None
    address: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None


class QuoteRef(_Payload):
    quote_id: str
    title: str
    deal_id: str | None = None
    contact_id: str | None = None
    company_id: str | None = None
    owner_email: str | None = None


@event_model("purchase.completed", 1)
class PurchaseCompletedV1(_Payload):
    """A buyer's purchase was accepted: a card payment succeeded, or a bank debit was
    authorised and submitted (``payment_status`` "processing": it settles later, announced
    by ``payment.succeeded`` / ``payment.failed``)."""

    payment_id: str
    payment_status: Literal["succeeded", "processing"] = "succeeded"
    session_id: str
    source: dict  # {"type": "payment_link" | "quote" | "invoice", "id": ...}
    amount: int
    currency: str
    subtotal: int
    discount: int = 0
    tax: int = 0
    discount_code: str | None = None
    method_type: str
    processor_payment_id: str | None = None
    processor_customer_id: str | None = None
    processor_payment_method_id: str | None = None
    contact: PurchaseContact
    items: list[PurchasedItem]
    subscriptions: list[SubscriptionTerms] = Field(default_factory=list)
    billing_address: Address | None = None
    shipping_address: Address | None = None
    deal_rule: DealRule | None = None
    #: The quote paid (source type "quote"): its deal, contact and company (PRODUCT §5).
    quote: QuoteRef | None = None
    #: CRM record the link was made from (a simplified link): {"type": ..., "id": ...}.
    crm_record: dict | None = None
    paid_at: datetime
    #: The account-local date of the purchase (the billing anchor of items starting now).
    checkout_day: date | None = None
    test_mode: bool
    locale: str | None = None


# --- payments settling, failing, refunded ------------------------------------------------
class ChargedLine(_Payload):
    """One line of a subscription charge, as the receipt explains it (PRODUCT §11)."""

    name: str
    quantity: int
    unit_amount: int
    unit_discount: int = 0
    #: (unit_amount − unit_discount) × quantity, before tax.
    amount: int
    tax: int = 0
    tax_rate: TaxRateRef | None = None


class SubscriptionCharge(_Payload):
    """The subscription period a payment (or failed attempt) of billing was for.

    Present on ``payment.succeeded`` / ``payment.failed`` that billing publishes for its
    automatic charges; absent on checkout's (settled or failed bank debits)."""

    subscription_id: str
    charge_id: str
    attempt_id: str
    #: 0-based index of the payment date from the anchor; ``due_date`` is that date.
    period_index: int
    due_date: date
    trigger: Literal["due", "retry", "new_payment_method", "invoice"]
    interval: str
    lines: list[ChargedLine]
    subtotal: int
    tax: int = 0
    contact_id: str | None = None
    company_id: str | None = None
    deal_ids: list[str] = Field(default_factory=list)
    contact_name: str | None = None
    processor_payment_intent_id: str | None = None
    processor_customer_id: str | None = None
    #: After this charge: the subscription's status, payments made and next date.
    status: str
    payments_made: int
    payments_total: int | None = None
    next_payment_date: date | None = None
    #: Failures: the buyer's update page, the next retry and where dunning ends.
    update_url: str | None = None
    next_retry_at: datetime | None = None
    retry_number: int | None = None
    final_outcome: str | None = None
    hard_decline: bool = False
    #: The dunning decision's e-mail flags (services/billing/dunning/policy.py).
    email_buyer: bool = False
    notify_recipients: bool = False
    test_mode: bool = False


@event_model("payment.succeeded", 1)
class PaymentSucceededV1(_Payload):
    """A payment's outcome is final and successful (a settled bank debit, a renewal)."""

    payment_id: str
    amount: int
    currency: str
    method_type: str
    source: dict
    email: str | None = None
    succeeded_at: datetime
    subscription: SubscriptionCharge | None = None


@event_model("payment.failed", 1)
class PaymentFailedV1(_Payload):
    payment_id: str
    amount: int
    currency: str
    method_type: str
    source: dict
    email: str | None = None
    decline_code: str | None = None
    reason: str | None = None
    failed_at: datetime
    subscription: SubscriptionCharge | None = None


# --- subscriptions ---------------------------------------------------------------------------
@event_model("subscription.updated", 1)
class SubscriptionUpdatedV1(_Payload):
    """A subscription was created or changed: a snapshot (apply the highest ``version``).

    ``previous_status`` tells what changed (None on creation) so that subscribers can act
    on transitions (cancelled, completed) without keeping history."""

    subscription_id: str
    version: int
    status: str
    previous_status: str | None = None
    email: str | None = None
    contact_name: str | None = None
    contact_id: str | None = None
    company_id: str | None = None
    deal_ids: list[str] = Field(default_factory=list)
    currency: str
    amount: int
    interval: str
    payments_total: int | None = None
    payments_made: int
    start_date: date
    next_payment_date: date | None = None
    end_date: date | None = None
    source: dict
    origin_payment_id: str | None = None
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    test_mode: bool = False


@event_model("subscription.reminder_due", 1)
class SubscriptionReminderDueV1(_Payload):
    """An automatic charge is coming (PRODUCT §6.4): e-mail the buyer once per charge."""

    subscription_id: str
    period_index: int
    charge_date: date
    amount: int
    currency: str
    email: str
    contact_name: str | None = None
    lines: list[ChargedLine]
    interval: str
    update_url: str
    test_mode: bool = False


# --- invoices ----------------------------------------------------------------------------------
class InvoiceLine(_Payload):
    """One line of an invoice: the line math the document prints (PRODUCT §11)."""

    name: str
    description: str | None = None
    quantity: int
    unit_amount: int
    #: Per unit, already rounded.
    unit_discount: int = 0
    #: (unit_amount − unit_discount) × quantity, before tax.
    amount: int
    tax: int = 0
    tax_rate: TaxRateRef | None = None
    #: The service period this line bills (account-local dates, both included).
    period_start: date | None = None
    period_end: date | None = None


class InvoiceTerms(_Payload):
    """What the buyer accepted (issue 5): frequency, number of payments (None = until
    cancelled), start and end dates; "payment k of N" and the next date follow from the
    invoice's ``period_index``."""

    interval: str
    payments_total: int | None = None
    start_date: date
    end_date: date | None = None


@event_model("invoice.updated", 1)
class InvoiceUpdatedV1(_Payload):
    """An invoice was issued or changed state: a snapshot (apply the highest ``version``).

    Checkout keeps a projection of payable invoices from it (the public page's
    ``POST /api/invoices/{token}/checkout``); ``token_hash`` (hex SHA-256 of the page's
    token) is how that endpoint finds it. ``overdue`` is computed on read from
    ``due_date`` and the account's clock; billing's invoice pass also marks an open
    invoice once when it becomes overdue (``overdue_at``, a new version) — the fact the
    ``invoice_overdue`` e-mail is sent for (decision 83)."""

    invoice_id: str
    version: int
    number: str
    status: Literal["draft", "open", "paid", "void", "uncollectible"]
    previous_status: str | None = None
    subscription_id: str | None = None
    period_index: int | None = None
    currency: str
    lines: list[InvoiceLine]
    subtotal: int
    discount: int = 0
    tax: int = 0
    total: int
    amount_paid: int = 0
    issue_date: date
    due_date: date
    email: str | None = None
    contact_name: str | None = None
    contact_id: str | None = None
    url: str
    token_hash: str
    language: str = "en"
    #: Paying online: off when the merchant turned it off (PRODUCT §6.5).
    online_payment: bool = True
    payment_methods: list[str] = Field(default_factory=lambda: ["card"])
    collect_billing_address: bool = False
    collect_shipping_address: bool = False
    #: Paying this invoice saves the payment method for the subscription's later charges.
    collect_payment_method: bool = False
    paid_at: datetime | None = None
    voided_at: datetime | None = None
    payment_id: str | None = None
    test_mode: bool = False
    # -- notification catalogue (issue 5; decisions 82–83) --------------------------------------
    #: The account-clock instant the invoice pass found it open after its due date (set once).
    overdue_at: datetime | None = None
    #: Dates and money of the invoice's documents and e-mails (``sv_SE``, ``en_US``).
    locale: str | None = None
    payment_terms_days: int = 0
    #: The subscription terms the invoice bills, as at issue (PRODUCT §11).
    terms: InvoiceTerms | None = None


@event_model("payment.refunded", 1)
class PaymentRefundedV1(_Payload):
    payment_id: str
    refund_id: str
    amount: int
    currency: str
    #: All refunds of the payment so far, this one included.
    amount_refunded: int
    payment_status: Literal["refunded", "partially_refunded"]
    refunded_at: datetime
    #: The payment's source ({type, id}): a consumer may see the refund before the
    #: purchase that recorded the payment (events of different types are not ordered).
    source: dict | None = None


@event_model("payment.associated", 1)
class PaymentAssociatedV1(_Payload):
    """A merchant associated a payment with a CRM record by hand (PRODUCT §9).

    A payment has one contact and one company: for those, ``replaced_id`` is the record
    the payment was associated with before (None if none). Deals are added, never
    replaced. ``associated_at`` orders the changes of one payment (apply the newest).
    """

    payment_id: str
    kind: Literal["contact", "company", "deal"]
    record_id: str
    replaced_id: str | None = None
    source: Literal["manual"] = "manual"
    associated_at: datetime


@event_model("payment_link.associated", 1)
class PaymentLinkAssociatedV1(_Payload):
    """A payment link was made from a CRM record (a simplified link, PRODUCT §3.4, or a
    clone of one): the record is associated with the link from its creation, before any
    payment. Adds the association; a repeat (or a later purchase through the link)
    changes nothing."""

    link_id: str
    kind: Literal["contact", "company", "deal"]
    record_id: str
    associated_at: datetime


# --- contact.upserted --------------------------------------------------------------------
@event_model("contact.upserted", 1)
class ContactUpsertedV1(_Payload):
    """crm_sync created or updated a contact; ``payment_id`` when a purchase caused it."""

    contact_id: str
    email: str
    company_id: str | None = None
    payment_id: str | None = None
    created: bool = False
    #: The deals the payment was associated with (the deal rule of PRODUCT §3.2).
    deal_ids: list[str] = Field(default_factory=list)


# --- CRM records other services refer to ----------------------------------------------------
@event_model("crm_record.updated", 1)
class CrmRecordUpdatedV1(_Payload):
    """A contact, company, deal or pipeline exists (or changed, or was deleted), so that
    other services can check references (e.g. a link created from a deal) and show names.

    ``data`` is a small summary (name, e-mail, stages of a pipeline with their kind)."""

    kind: Literal["contact", "company", "deal", "pipeline"]
    record_id: str
    version: int
    deleted: bool = False
    data: dict = Field(default_factory=dict)


# --- CRM and bulk import (issue 5, CRM): many records in one event --------------------------
@event_model("crm_records.updated", 1)
class CrmRecordsUpdatedV1(_Payload):
    """Many records of one kind were created or changed at once (a bulk upsert: a contact
    import, the batch API): the facts of one ``crm_record.updated`` per record, carried by
    one event per batch (at most 1,000 records), so that a million-contact import writes a
    thousand outbox rows rather than a million. Column-wise (a tenth of the cost of a list
    of objects to encode and decode): record ``i`` is ``record_ids[i]`` at ``versions[i]``,
    its summary (the ``data`` of ``crm_record.updated``) ``{name: data[name][i]}``.
    Internal, like that event: it keeps other services' projections; it is not a fact of
    the account's event feed."""

    kind: Literal["contact", "company", "deal", "pipeline"]
    record_ids: list[str]
    versions: list[int]
    data: dict[str, list[Any]] = Field(default_factory=dict)

    def records(self) -> list[dict]:
        """``[{"record_id", "version", "data"}]``, one per record."""
        names = list(self.data)
        return [
            {"record_id": record_id, "version": version, "data": {n: self.data[n][i] for n in names}}
            for i, (record_id, version) in enumerate(zip(self.record_ids, self.versions, strict=True))
        ]


# --- end of CRM and bulk import ----------------------------------------------------------------


# --- processor webhooks (internal to checkout) ------------------------------------------------
@event_model("processor_event.received", 1)
class ProcessorEventReceivedV1(_Payload):
    """Checkout stored a verified processor webhook (``checkout.processor_events``); its
    own worker processes it. Written with the stored event, so none is lost; internal:
    no other service subscribes, and it is not a fact of the account's event feed."""

    processor_event_id: str
    type: str
    object_id: str | None = None


# --- quotes (checkout; PRODUCT §5) -------------------------------------------------------
class QuoteLine(_Payload):
    line_item_id: str
    name: str
    description: str | None = None
    quantity: int
    unit_amount: int
    #: Per-unit discount in minor units (already rounded).
    unit_discount: int = 0
    #: (unit_amount − unit_discount) × quantity, before tax.
    amount: int
    tax_rate: TaxRateRef | None = None
    #: {"interval", "payments", "end_date", "start"} for a recurring item; None: one-time.
    recurring: dict | None = None


@event_model("quote.updated", 1)
class QuoteUpdatedV1(_Payload):
    """A quote was created, changed, published, recalled, paid or converted: a snapshot
    (apply the highest ``version``). ``lines`` are the published ones once published."""

    quote_id: str
    version: int
    status: Literal["draft", "published", "paid"]
    previous_status: str | None = None
    title: str
    deal_id: str | None = None
    contact_id: str | None = None
    company_id: str | None = None
    owner_email: str | None = None
    currency: str
    lines: list[QuoteLine]
    #: What the buyer pays at checkout (the published version's summary), minor units.
    total_due_now: int | None = None
    #: The buyer's page (null until first published).
    url: str | None = None
    expires_on: date | None = None
    published_version: int = 0
    published_at: datetime | None = None
    paid_at: datetime | None = None
    payment_id: str | None = None
    converted_at: datetime | None = None
    test_mode: bool = False


@event_model("quote.converted", 1)
class QuoteConvertedV1(_Payload):
    """A published quote's recurring items become subscriptions without online payment
    (PRODUCT §5, §6.1): billing creates one per group (§6.2), collected by hand (§6.5)."""

    quote_id: str
    deal_id: str | None = None
    contact_id: str | None = None
    company_id: str | None = None
    email: str
    firstname: str | None = None
    lastname: str | None = None
    currency: str
    lines: list[QuoteLine]
    #: "send_invoice" (payment terms ``payment_terms_days``) or "none" (tracked only).
    collection_method: Literal["send_invoice", "none"]
    payment_terms_days: int | None = None
    #: The anchor of every payment date (the account's local date).
    start_date: date
    test_mode: bool = False
