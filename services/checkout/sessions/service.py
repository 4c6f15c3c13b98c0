"""The buyer's checkout: open a session, submit the page, complete the payment.

Paying works the same with real Stripe.js and the test processor's stand-in (API.md):
1. ``submit`` recomputes the summary on the server, finds or creates the processor
   customer and creates a SetupIntent; the page confirms it with the card element;
2. ``complete`` charges the saved payment method on the server. The charge is a
   processor operation whose row (and idempotency key) is written before the call, one
   per attempt: a retried ``complete`` reuses the key and so reaches the same
   PaymentIntent; a decline starts a new attempt with a new card;
3. the first ``complete`` that sees the charge succeed records the payment, closes the
   session and writes ``purchase.completed`` to the outbox — in one transaction under
   the session's row lock, so a session is paid at most once and the event exists if and
   only if the payment does.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from shared.accounts import Account
from shared.db import tenant_tx
from shared.events.models import (
    Address,
    DealRule,
    PurchaseCompletedV1,
    PurchaseContact,
    PurchasedItem,
    QuoteRef,
    RecurringTerms,
    SubscriptionTerms,
    TaxRateRef,
)
from shared.ids import new_id, new_token, token_hash
from shared.logging import get_logger
from shared.money import Money, format_money
from shared.outbox import publish_event
from shared.pricing import PricingError, Summary, price
from shared.processor import IntentOutcome, ProcessorUnavailable
from shared.processor.registry import ProcessorRegistry
from shared.web.problem import Conflict, Gone, NotFound, ServiceUnavailable, ValidationProblem, field_error

from ..catalogue import service as catalogue
from ..links import repository as links_repo
from ..links import service as links_service
from ..payments import repository as payments_repo
from . import fastpath
from . import repository as repo
from .schemas import CheckoutSubmit

SCHEMA = "checkout"
log = get_logger(__name__)


class LinkInactive(Gone):
    slug = "link-inactive"


class SessionClosed(Gone):
    slug = "session-closed"


class TestModeRefused(Conflict):
    slug = "test-mode-refused"


@dataclass(frozen=True)
class Opened:
    account: Account
    session: asyncpg.Record


@dataclass(frozen=True)
class Completion:
    status: str  # complete | requires_action | declined
    payment_id: str | None = None
    redirect_url: str | None = None
    client_secret: str | None = None
    message: str | None = None


def is_expired(session: asyncpg.Record, account: Account) -> bool:
    return session["status"] == "expired" or (
        session["status"] == "open" and account.clock.now() >= session["expires_at"]
    )


# -- opening -------------------------------------------------------------------------------
async def open_from_link(pool: asyncpg.Pool, slug: str, *, ttl: timedelta, test: bool = False) -> str:
    """A new session for the link (each visit gets its own); returns its public token.

    ``test``: open it in test mode (the test processor, a test payment) — not for links
    with recurring items (PRODUCT §3.3). One database call (fastpath, migration 0008)."""
    token = new_token(24)
    outcome = await fastpath.open_session(
        pool,
        slug,
        session_id=new_id("cs"),
        token_hash=token_hash(token),
        csrf_token=secrets.token_urlsafe(24),
        ttl=ttl,
        test=test,
    )
    if outcome == fastpath.OK:
        return token
    if outcome == fastpath.INACTIVE:
        raise LinkInactive("This payment link is no longer available.")
    if outcome == fastpath.TEST_REFUSED:
        raise TestModeRefused("Links with recurring items cannot be opened in test mode.")
    raise NotFound("This payment link does not exist.")


async def load(pool: asyncpg.Pool, token: str) -> Opened:
    found = await fastpath.load_session(pool, token_hash(token))
    if found is None:
        raise NotFound("This checkout does not exist.")
    return Opened(*found)


def ensure_open(opened: Opened) -> None:
    session = opened.session
    if session["status"] == "complete":
        raise SessionClosed("This checkout has already been paid.")
    if is_expired(session, opened.account):
        raise SessionClosed("This checkout has expired. Open the payment link again to start over.")


def initial_summary(opened: Opened) -> dict:
    """The summary before the buyer changes anything (optional items left out)."""
    return price_choices(opened, [], None)[1].as_api()


def price_choices(opened: Opened, choices: list, code: dict | None) -> tuple[list[dict], Summary]:
    """Apply the buyer's choices to the session's items and price them on the server.
    Every number the buyer sees comes from here (PRODUCT §4.1)."""
    session = opened.session
    line_items = session["line_items"]
    by_id = {c.line_item_id: (i, c) for i, c in enumerate(choices)}
    unknown = set(by_id) - {li["id"] for li in line_items}
    if unknown:
        raise field_error("items", f"unknown line items: {', '.join(sorted(unknown))}")
    errors: list[dict[str, str]] = []
    picked: dict[str, dict] = {}
    for li in line_items:
        if li["id"] not in by_id:
            continue
        index, choice = by_id[li["id"]]
        at = f"items[{index}]"
        entry: dict[str, Any] = {"selected": choice.selected}
        if not choice.selected and not li.get("optional"):
            errors.append({"field": f"{at}.selected", "message": "this item is not optional"})
        if choice.quantity is not None and choice.quantity != li["quantity"]:
            bounds = li.get("adjustable_quantity")
            if not bounds:
                errors.append({"field": f"{at}.quantity", "message": "this item's quantity is fixed"})
            elif not bounds["minimum"] <= choice.quantity <= bounds["maximum"]:
                message = f"must be between {bounds['minimum']} and {bounds['maximum']}"
                errors.append({"field": f"{at}.quantity", "message": message})
            else:
                entry["quantity"] = choice.quantity
        if choice.amount is not None:
            bounds = li.get("custom_amount")
            if not bounds:
                errors.append({"field": f"{at}.amount", "message": "this item's price is fixed"})
            else:
                low, high = bounds["minimum"], bounds.get("maximum")
                if choice.amount < low or (high is not None and choice.amount > high):
                    limit = (
                        f"between {_fmt(low, session)} and {_fmt(high, session)}"
                        if high
                        else f"at least {_fmt(low, session)}"
                    )
                    errors.append({"field": f"{at}.amount", "message": f"must be {limit}"})
                else:
                    entry["amount"] = choice.amount
        picked[li["id"]] = entry
    if errors:
        raise ValidationProblem(errors)
    try:
        summary = price(
            links_service.pricing_items(line_items, picked),
            session["currency"],
            checkout_day=links_service.today(opened.account),
            order_discounts=links_service.order_discounts(session["settings"] or {}, code),
        )
    except PricingError as exc:
        raise field_error("items", exc.message) from None
    links_service.check_due_now(summary, line_items, session["currency"], field="items")
    selection = [
        {"line_item_id": line.line_item_id, "quantity": line.quantity, "amount": line.unit_amount, "selected": True}
        for line in summary.lines
    ]
    return selection, summary


def _fmt(amount: int | None, session: asyncpg.Record) -> str:
    return format_money(Money(amount or 0, session["currency"]))


ADDRESS_REQUIRED = ("line1", "city", "postal_code", "country")


def check_contact_and_addresses(session: asyncpg.Record, body: CheckoutSubmit) -> dict:
    """The link's contact fields (required ones present, others not collected) and the
    addresses it collects."""
    settings = session["settings"] or {}
    fields = {f["property"]: f for f in settings.get("contact_fields", [])} or {"email": {"required": True}}
    contact = body.contact.model_dump(exclude_none=True)
    errors: list[dict[str, str]] = []
    for prop, spec in fields.items():
        if spec.get("required") and not contact.get(prop):
            errors.append({"field": f"contact.{prop}", "message": "is required"})
    for prop in contact:
        if prop not in fields:
            errors.append({"field": f"contact.{prop}", "message": "is not collected by this checkout"})
    for kind in ("billing_address", "shipping_address"):
        given = getattr(body, kind)
        if settings.get(f"collect_{kind}"):
            if given is None:
                errors.append({"field": kind, "message": "is required"})
                continue
            for part in ADDRESS_REQUIRED:
                if not getattr(given, part):
                    errors.append({"field": f"{kind}.{part}", "message": "is required"})
        elif given is not None:
            errors.append({"field": kind, "message": "is not collected by this checkout"})
    if errors:
        raise ValidationProblem(errors)
    return contact


async def discount_code_for(conn: asyncpg.Connection, opened: Opened, code: str | None) -> dict | None:
    if not code:
        return None
    if not (opened.session["settings"] or {}).get("allow_discount_codes"):
        raise field_error("discount_code", "this checkout does not take discount codes")
    found = await catalogue.find_discount_code(
        conn, opened.account.id, code.strip(), currency=opened.session["currency"], now=opened.account.clock.now()
    )
    if found is None:
        raise field_error("discount_code", "is unknown, expired or used up")
    return {
        "id": found["id"],
        "code": found["code"],
        "name": found["code"],
        "percent_off": str(found["percent_off"]) if found.get("percent_off") is not None else None,
        "amount_off": found.get("amount_off"),
    }


async def preview_summary(pool: asyncpg.Pool, opened: Opened, items: list, discount_code: str | None) -> dict:
    """The summary of the buyer's current choices, for the page to show while the buyer
    changes them (PRODUCT §4.1: every number from the server). The same pricing path as
    ``submit`` — same validation, same field errors — but nothing is saved and the
    processor is not called; a discount code is looked up, not reserved."""
    ensure_open(opened)
    code = None
    if discount_code and discount_code.strip():
        async with tenant_tx(pool, opened.account.id) as conn:
            code = await discount_code_for(conn, opened, discount_code)
    return price_choices(opened, items, code)[1].as_api()


# -- submitting the page ---------------------------------------------------------------------
def _customer_name(contact: dict) -> str | None:
    if contact.get("company"):
        return contact["company"]
    name = " ".join(p for p in (contact.get("firstname"), contact.get("lastname")) if p)
    return name or None


async def submit(pool: asyncpg.Pool, processors: ProcessorRegistry, token: str, body: CheckoutSubmit) -> dict:
    opened = await load(pool, token)
    ensure_open(opened)
    account, session = opened.account, opened.session
    contact = check_contact_and_addresses(session, body)
    async with tenant_tx(pool, account.id) as conn:
        if session["source_type"] == "payment_link":
            link = await links_repo.get_link(conn, account.id, session["source_id"])
            if link is None or not link["active"]:
                raise SessionClosed(LINK_OFF)
        code = await discount_code_for(conn, opened, body.discount_code)
    selection, summary = price_choices(opened, body.items, code)
    async with tenant_tx(pool, account.id) as conn:
        locked = await repo.get_session(conn, account.id, session["id"], lock=True)
        if locked["status"] != "open":
            raise SessionClosed("This checkout has already been paid.")
        await repo.save_submission(
            conn,
            session["id"],
            selection=selection,
            contact=contact,
            billing_address=body.billing_address.model_dump(exclude_none=True) if body.billing_address else None,
            shipping_address=body.shipping_address.model_dump(exclude_none=True) if body.shipping_address else None,
            summary=summary.as_api(),
            discount_code=code,
            checkout_day=links_service.today(account),
        )
        reuse = locked["setup_intent_id"] and locked["processor_customer_id"]
        setup_attempt = locked["setup_attempt"] if reuse else await repo.next_setup_attempt(conn, session["id"])

    processor = processors.for_account(account, test_mode=session["test_mode"])
    try:
        setup = None
        if reuse:
            setup = await processor.retrieve_setup_intent(locked["setup_intent_id"])
            if setup.status not in ("requires_payment_method", "requires_confirmation", "requires_action"):
                setup = None  # canceled (declined card) or already used: start a new one
                async with tenant_tx(pool, account.id) as conn:
                    setup_attempt = await repo.next_setup_attempt(conn, session["id"])
        if setup is None:
            name = _customer_name(contact)
            customer_key = hashlib.sha256(f"{contact['email'].lower()}\0{name or ''}".encode()).hexdigest()[:32]
            customer = await processor.find_or_create_customer(
                email=contact["email"],
                name=name,
                metadata={"account_id": account.id},
                idempotency_key=f"commerce:{account.id}:customer:{customer_key}",
            )
            setup = await processor.create_setup_intent(
                customer_id=customer.id,
                payment_method_types=list(session["settings"].get("payment_methods", ["card"])),
                metadata={"account_id": account.id, "session_id": session["id"]},
                idempotency_key=f"commerce:{session['id']}:setup:{setup_attempt}",
            )
            async with tenant_tx(pool, account.id) as conn:
                await repo.save_setup(
                    conn,
                    session["id"],
                    customer_id=customer.id,
                    setup_intent_id=setup.id,
                    client_secret=setup.client_secret,
                )
    except ProcessorUnavailable:
        raise ServiceUnavailable("The payment processor is unreachable; please try again.") from None
    return {
        "summary": summary.as_api(),
        "payment": {"client_secret": setup.client_secret, "intent_id": setup.id, "intent_type": "setup_intent"},
    }


# -- completing the payment --------------------------------------------------------------------
async def complete(pool: asyncpg.Pool, processors: ProcessorRegistry, token: str) -> Completion:
    opened = await load(pool, token)
    account, session = opened.account, opened.session
    if session["status"] == "complete":
        return _completed(session, session["payment_id"])
    ensure_open(opened)
    if not session["setup_intent_id"] or not session["summary"]:
        raise Conflict("Submit the checkout form and confirm the payment method first.")

    processor = processors.for_account(account, test_mode=session["test_mode"])
    attempt = session["charge_attempt"]
    op_id = f"op_{session['id']}_charge_{attempt}"
    try:
        setup = await processor.retrieve_setup_intent(session["setup_intent_id"])
        if setup.status != "succeeded" or not setup.payment_method_id:
            raise Conflict("The payment processor has not confirmed the payment method yet.")
        amount = session["summary"]["total_due_now"]
        async with tenant_tx(pool, account.id) as conn:
            if not await repo.operation_exists(conn, op_id):  # a new charge, not a retry of one
                await _ensure_link_takes_this_payment(conn, account, session)
            op = await repo.claim_operation(
                conn,
                op_id=op_id,
                account_id=account.id,
                kind="charge",
                subject_id=session["id"],
                idempotency_key=f"commerce:{op_id}",
                request={
                    "amount": amount,
                    "currency": session["currency"],
                    "payment_method": setup.payment_method_id,
                    "method_type": setup.payment_method_type,
                },
            )
            if op["status"] in ("pending", "requires_action", "unknown"):
                await _reserve_discount_code(conn, account, session)
        if op["status"] == "requires_action" and op["result"] and op["result"].get("intent_id"):
            outcome = await processor.retrieve_payment_intent(op["result"]["intent_id"])
        else:
            await processor.attach_payment_method(
                payment_method_id=setup.payment_method_id, customer_id=session["processor_customer_id"]
            )
            outcome = await processor.charge(
                amount=op["request"]["amount"],
                currency=op["request"]["currency"],
                customer_id=session["processor_customer_id"],
                payment_method_id=op["request"]["payment_method"],
                off_session=False,
                metadata={"account_id": account.id, "session_id": session["id"], "operation_id": op_id},
                idempotency_key=op["idempotency_key"],
                payment_method_types=_bank_debit_types(op["request"]),
            )
    except ProcessorUnavailable:
        async with tenant_tx(pool, account.id) as conn:
            await repo.record_operation(conn, op_id, "unknown", {})
        raise ServiceUnavailable("The payment processor is unreachable; the payment is not lost — retry.") from None

    if outcome.status in ("succeeded", "processing"):
        return await _finalize(pool, account, session["id"], op_id, outcome, setup.payment_method_type or "card")
    async with tenant_tx(pool, account.id) as conn:
        if outcome.status == "requires_action":
            await repo.record_operation(conn, op_id, "requires_action", {"intent_id": outcome.id})
            return Completion("requires_action", client_secret=outcome.client_secret)
        await repo.record_operation(
            conn, op_id, "declined", {"intent_id": outcome.id, "decline_code": outcome.decline_code}
        )
        await repo.after_decline(conn, session["id"], attempt)
        if session["discount_code"]:
            await catalogue.release_reservation(conn, account.id, session["id"])
    return Completion(
        "declined",
        message=outcome.message or "The payment was declined. Please try another card.",
    )


LINK_OFF = "This payment link is no longer active; the merchant has turned it off."


def _one_off(link: asyncpg.Record) -> bool:
    return bool((link["settings"] or {}).get("deactivate_after_payment"))


async def _ensure_link_takes_this_payment(conn: asyncpg.Connection, account: Account, session: asyncpg.Record) -> None:
    """Before a new charge: the session's link must still be on (a session opened before
    the merchant turned it off, deleted it, or before a one-off link's first payment,
    takes no payment: 410). A one-off link (``deactivate_after_payment``) is locked and
    charged for one session at a time, so two buyers with the page open cannot both pay
    it; the second is asked to wait (409) while the first charge may still succeed."""
    if session["source_type"] != "payment_link":
        return
    link = await links_repo.get_link(conn, account.id, session["source_id"])
    if link is not None and _one_off(link):  # again, holding its row until commit
        link = await links_repo.get_link(conn, account.id, session["source_id"], lock=True)
    if link is None or not link["active"]:
        raise SessionClosed(LINK_OFF)
    if _one_off(link) and await repo.another_charge_in_flight(
        conn, account.id, session["source_id"], session["id"], account.clock.now()
    ):
        raise Conflict("Another buyer is paying this one-off link right now; try again in a minute.")


async def _reserve_discount_code(conn: asyncpg.Connection, account: Account, session: asyncpg.Record) -> None:
    """Take the session's discount-code redemption before charging (idempotent per
    session), so a code with one redemption left is not sold twice. When another buyer
    took the last one since this buyer applied it, nothing is charged: the buyer is asked
    to check out without it (the transaction, and the claimed operation, roll back)."""
    code = session["discount_code"]
    if not code:  # (a code reserved by an earlier attempt and since removed is given back)
        await catalogue.release_reservation(conn, account.id, session["id"])
        return

    async def reserve() -> bool:
        return await catalogue.redeem_discount_code(
            conn, account.id, code["id"], session_id=session["id"], payment_id=None, now=account.clock.now()
        )

    # (False at first also when an earlier attempt reserved another code: give that back)
    if not await reserve() and not (
        await catalogue.release_reservation(conn, account.id, session["id"]) and await reserve()
    ):
        raise field_error("discount_code", "has just been used up; remove it to pay the full price")


async def _redeem_discount_code(
    conn: asyncpg.Connection, account: Account, session: asyncpg.Record, payment_id: str, now
) -> None:
    """The paid session's redemption: normally the one reserved before the charge. A
    payment without a reservation (its session expired mid-charge and the reservation was
    given back) redeems now; if the code ran out meanwhile, the buyer has paid the
    discounted price and keeps it — logged, never charged again."""
    if await catalogue.attach_payment(conn, account.id, session["id"], payment_id):
        return
    code = session["discount_code"]
    if not await catalogue.redeem_discount_code(
        conn, account.id, code["id"], session_id=session["id"], payment_id=payment_id, now=now
    ):
        log.warning("discount code honoured past its limit", code_id=code["id"], payment_id=payment_id)


def _completed(session: asyncpg.Record, payment_id: str) -> Completion:
    after = (session["settings"] or {}).get("after_completion") or {}
    redirect = after.get("url") if after.get("type") == "redirect" else None
    return Completion("complete", payment_id=payment_id, redirect_url=redirect)


def _bank_debit_types(request: dict) -> list[str] | None:
    """A bank debit's PaymentIntent names its method type (Stripe requires it for methods
    other than cards); a card charge keeps the parameters it always had."""
    method = request.get("method_type")
    return [method] if method and method != "card" else None


async def _finalize(
    pool: asyncpg.Pool, account: Account, session_id: str, op_id: str, outcome: IntentOutcome, method_type: str
) -> Completion:
    recorded = await record_payment(pool, account, session_id, outcome, op_id=op_id, method_type=method_type)
    return _completed(recorded.session, recorded.payment_id)


@dataclass(frozen=True)
class Recorded:
    session: asyncpg.Record
    payment_id: str
    #: False when the session had been completed already (by a concurrent /complete or
    #: the processor's webhook); ``payment_id`` is then that payment's.
    created: bool


async def record_payment(
    pool: asyncpg.Pool,
    account: Account,
    session_id: str,
    outcome: IntentOutcome,
    *,
    op_id: str | None,
    method_type: str,
) -> Recorded:
    """The one place where a PaymentIntent the processor accepted becomes a payment: from
    ``/complete`` or from the processor's webhook (``services/checkout/webhooks``),
    whichever comes first — exactly once, under the session's row lock.

    ``outcome`` is "succeeded" or "processing" (a bank debit not settled yet); either way
    the session completes and ``purchase.completed`` carries the payment's status. The
    webhook moves a processing payment to its final outcome later."""
    async with tenant_tx(pool, account.id) as conn:
        session = await repo.get_session(conn, account.id, session_id, lock=True)
        if session["status"] == "complete":  # a concurrent complete (or the webhook) got here first
            return Recorded(session, session["payment_id"], created=False)
        now = account.clock.now()
        summary = session["summary"]
        settled = outcome.fee is not None and outcome.balance_currency == outcome.currency
        payment = await payments_repo.insert_payment(
            conn,
            id=new_id("pay"),
            account_id=account.id,
            session_id=session["id"],
            source_type=session["source_type"],
            source_id=session["source_id"],
            status="succeeded" if outcome.status == "succeeded" else "processing",
            amount=outcome.amount,
            currency=outcome.currency,
            fee=outcome.fee if settled else None,
            net=outcome.net if settled else None,
            method_type=method_type,
            email=session["contact"]["email"],
            contact=session["contact"],
            billing_address=session["billing_address"],
            shipping_address=session["shipping_address"],
            processor_payment_intent_id=outcome.id,
            processor_charge_id=outcome.charge_id,
            processor_customer_id=session["processor_customer_id"],
            test_mode=session["test_mode"],
            created_at=now,
            updated_at=now,
        )
        await repo.mark_complete(conn, session["id"], payment["id"], now)
        if session["discount_code"]:
            await _redeem_discount_code(conn, account, session, payment["id"], now)
        if session["source_type"] == "payment_link":
            await links_repo.deactivate_after_payment(conn, account.id, session["source_id"], now)
        elif session["source_type"] == "quote":
            from ..quotes import service as quotes  # quotes build on sessions, not the reverse

            await quotes.mark_paid(conn, account, session["source_id"], payment["id"], now)
        if op_id:
            await repo.record_operation(
                conn, op_id, "succeeded", {"intent_id": outcome.id, "payment_id": payment["id"]}
            )
        await publish_event(
            conn,
            schema=SCHEMA,
            producer="checkout",
            account_id=account.id,
            event=_purchase_event(account, session, payment, outcome, summary),
            occurred_at=now,
        )
    log.info("payment recorded", payment_id=payment["id"], session_id=session["id"], status=payment["status"])
    return Recorded(session, payment["id"], created=True)


def _purchase_event(account: Account, session, payment, outcome: IntentOutcome, summary: dict) -> PurchaseCompletedV1:
    """Everything the other services need about this purchase (billing: subscriptions;
    notifications: the receipt's line math; crm_sync: contact, company, deal rule)."""
    stored = {li["id"]: li for li in session["line_items"]}
    items = []
    for line in summary["lines"]:
        li = stored[line["line_item_id"]]
        recurring = None
        if li.get("recurring"):
            group = next(g for g in summary["subscriptions"] if g["subscription_group"] == line["subscription_group"])
            recurring = RecurringTerms(
                interval=li["recurring"]["interval"],
                payments=li["recurring"].get("payments"),
                end_date=li["recurring"].get("end_date"),
                start_date=group["start_date"],
            )
        rate = li.get("tax_rate")
        items.append(
            PurchasedItem(
                line_item_id=li["id"],
                product_id=li.get("product_id"),
                name=li["name"],
                description=li.get("description"),
                quantity=line["quantity"],
                unit_amount=line["unit_amount"],
                unit_discount=line["unit_discount"],
                amount=line["amount"],
                discount=line["discount"],
                tax=line["tax"],
                recurring_tax=line["recurring_tax"],
                tax_rate=TaxRateRef(**rate) if rate else None,
                due_now=line["due_now"],
                recurring=recurring,
                subscription_group=line["subscription_group"],
            )
        )
    subscriptions = [
        SubscriptionTerms(
            subscription_group=g["subscription_group"],
            interval=g["interval"],
            payments=g["payments"],
            end_date=g["end_date"],
            start_date=g["start_date"],
            first_payment_charged=g["starts_now"],
            line_item_ids=g["line_item_ids"],
            amount=g["amount"],
            tax=g["tax"],
        )
        for g in summary["subscriptions"]
    ]
    settings = session["settings"] or {}
    deal_rule = None
    if session["source_type"] == "payment_link":
        deal_rule = DealRule(
            link_id=session["source_id"],
            link_name=settings.get("link_name") or "",
            deal_id=settings.get("deal_id"),
            create_deal=settings.get("create_deal"),
        )
    quote = QuoteRef(**settings["quote"]) if session["source_type"] == "quote" and settings.get("quote") else None
    code = session["discount_code"]
    return PurchaseCompletedV1(
        payment_id=payment["id"],
        payment_status="succeeded" if payment["status"] == "succeeded" else "processing",
        session_id=session["id"],
        source={"type": session["source_type"], "id": session["source_id"]},
        amount=payment["amount"],
        currency=payment["currency"],
        subtotal=summary["subtotal_due_now"],
        discount=sum(d["amount"] for d in summary["discounts_due_now"]),
        tax=summary["tax_due_now"],
        discount_code=code["code"] if code else None,
        method_type=payment["method_type"],
        processor_payment_id=outcome.id,
        processor_customer_id=session["processor_customer_id"],
        processor_payment_method_id=outcome.payment_method_id,
        contact=PurchaseContact(**session["contact"]),
        items=items,
        subscriptions=subscriptions,
        billing_address=Address(**session["billing_address"]) if session["billing_address"] else None,
        shipping_address=Address(**session["shipping_address"]) if session["shipping_address"] else None,
        deal_rule=deal_rule,
        quote=quote,
        crm_record=settings.get("crm_record"),
        paid_at=payment["created_at"],
        checkout_day=session["checkout_day"],
        test_mode=session["test_mode"],
        locale=account.settings.language,
    )
