"""The merchant's subscription operations (API.md "Subscriptions and invoices"):
create from scratch, change, cancel, pause, resume, the buyer's update link.

Every change goes through `service.change` (a new version and its ``subscription.updated``
snapshot in the same transaction). Rules (docs/decisions.md, "subscription admin API"):

- Billing keeps no copy of the CRM or of the catalogue. A ``contact_id`` is stored as
  given (crm_sync falls back to the e-mail when it does not exist); the e-mail is
  required whenever the subscription charges or invoices, since billing cannot look it
  up. Line items carry their own name, price and ``tax_percent``.
- Periods are priced by `shared.pricing.price_period` only.
- A subscription created to charge automatically has no payment method: its charges wait
  (``charging/service.py`` `prepare_due`) until the buyer saves one through the update link.
- Lock order is the charge job's: the subscription's open charges first, then the
  subscription row (`_lock`), so a cancellation never deadlocks with a charge in progress.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from shared.accounts import Account
from shared.config import CommonSettings
from shared.currency import minimum_charge, processor_refusal
from shared.ids import new_id
from shared.money import Money, format_money
from shared.pricing import Discount, Item, PricingError, price_period, unit_discount_amount
from shared.schedule import nth_date
from shared.web.problem import Conflict, NotFound, ValidationProblem, field_error

from ..charging.scheduler import schedule_for_account
from . import lifecycle
from . import repository as repo
from .schemas import UPDATE_NOT_NULL, CollectionIn, LineItemIn, SubscriptionCreate, SubscriptionUpdate
from .service import change
from .service import create as insert_subscription
from .tokens import payment_method_token_hash, payment_method_url

S = "billing"
#: Charge statuses that may still take money.
OPEN_CHARGES = ("scheduled", "processing", "retrying")
#: How far ahead a subscription may start (as a link's delayed start).
MAX_START_AHEAD = timedelta(days=3650)
#: Methods that need the buyer's e-mail and a chargeable amount.
COLLECTED = ("charge_automatically", "send_invoice")


class InvalidTransition(Conflict):
    slug = "invalid-transition"


def local_today(account: Account) -> date:
    return account.clock.now().astimezone(ZoneInfo(account.settings.time_zone)).date()


# -- line items and amounts ---------------------------------------------------------------------
def _discount(item: LineItemIn) -> Discount | None:
    d = item.unit_discount
    if d is None:
        return None
    return Discount(percent_off=d.percent_off) if d.percent_off is not None else Discount(amount_off=d.amount_off)


def price_lines(items: list[LineItemIn], field: str = "line_items") -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Validate and price one period's lines: (stored lines, {amount, subtotal, tax})."""
    errors: list[dict[str, str]] = []
    for index, item in enumerate(items):
        if item.tax_percent is None and (item.tax_rate_id is not None or item.tax_name is not None):
            errors.append(
                {
                    "field": f"{field}[{index}].tax_percent",
                    "message": "is required with tax_rate_id or tax_name (billing keeps no copy of the tax rates)",
                }
            )
        discount = _discount(item)
        if discount is not None and unit_discount_amount(item.unit_amount, discount) >= item.unit_amount:
            key = "amount_off" if discount.amount_off is not None else "percent_off"
            errors.append(
                {
                    "field": f"{field}[{index}].unit_discount.{key}",
                    "message": "takes the whole unit price (once rounded to the minor unit): "
                    "give a smaller discount or leave it out",
                }
            )
    if errors:
        raise ValidationProblem(errors)
    try:
        period = price_period(
            [
                Item(
                    line_item_id=str(index),
                    name=item.name,
                    quantity=item.quantity,
                    unit_amount=item.unit_amount,
                    unit_discount=_discount(item),
                    tax_percent=item.tax_decimal(),
                )
                for index, item in enumerate(items)
            ]
        )
    except PricingError as exc:
        raise field_error(field, exc.message) from None
    lines = []
    for item, priced in zip(items, period.lines, strict=True):
        rate = None
        if item.tax_percent is not None:
            rate = {"id": item.tax_rate_id or "", "name": item.tax_name or "Tax", "percentage": _percent_text(item)}
        lines.append(
            {
                "line_item_id": new_id("li"),
                "product_id": item.product_id,
                "name": item.name,
                "description": item.description,
                "quantity": item.quantity,
                "unit_amount": item.unit_amount,
                "unit_discount": priced.unit_discount,
                # the discount as given, so a later reader knows how the amount came about
                "unit_discount_rule": _discount_rule(item),
                "amount": priced.amount,
                "tax": priced.tax,
                "tax_rate": rate,
            }
        )
    return lines, {"amount": period.total, "subtotal": period.subtotal, "tax": period.tax}


def _discount_rule(item: LineItemIn) -> dict[str, Any] | None:
    d = item.unit_discount
    if d is None:
        return None
    return {"percent_off": str(d.percent_off) if d.percent_off is not None else None, "amount_off": d.amount_off}


def _percent_text(item: LineItemIn) -> str:
    text = f"{Decimal(item.tax_percent or '0'):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def check_currency(account: Account, currency: str) -> str:
    refusal = processor_refusal(currency)
    if refusal is not None:
        raise field_error("currency", refusal.message)
    code = currency.upper()
    if code not in account.settings.currencies:
        raise field_error("currency", f"{code} is not enabled for this account (see PATCH /v1/account currencies)")
    return code


def check_collectable(method: str, currency: str, amount: int, field: str = "line_items") -> None:
    """What is charged or invoiced must reach the processor's minimum charge."""
    minimum = minimum_charge(currency)
    if method in COLLECTED and amount < minimum:
        raise field_error(
            field,
            f"each payment ({format_money(Money(amount, currency))}) must be at least the minimum charge "
            f"{format_money(Money(minimum, currency))} when it is charged or invoiced",
        )


def check_collection(collection: CollectionIn) -> None:
    if collection.collect_payment_method_on_first_invoice and collection.method != "charge_automatically":
        raise field_error("collection.collect_payment_method_on_first_invoice", "is for charge_automatically only")
    if not collection.invoiced and collection.payment_terms_days is not None:
        raise field_error(
            "collection.payment_terms_days",
            "is for send_invoice (or the first invoice of charge_automatically with "
            "collect_payment_method_on_first_invoice)",
        )


def _next_date(anchor: date, interval: str, index: int, end_date: date | None) -> date | None:
    when = nth_date(anchor, interval, index)
    return None if end_date is not None and when > end_date else when


# -- locking and charges ------------------------------------------------------------------------
async def get_or_404(conn: asyncpg.Connection, account_id: str, subscription_id: str) -> asyncpg.Record:
    row = await repo.get(conn, account_id, subscription_id)
    if row is None:
        raise NotFound("No such subscription.")
    return row


async def _lock(conn: asyncpg.Connection, account_id: str, subscription_id: str) -> tuple[asyncpg.Record, list]:
    """The subscription and its open charges, locked in the charge job's order."""
    charges = await conn.fetch(
        f"""SELECT id, status, period_index, attempts FROM {S}.charges
            WHERE account_id = $1 AND subscription_id = $2 AND status = ANY($3::text[])
            ORDER BY period_index FOR UPDATE""",
        account_id,
        subscription_id,
        list(OPEN_CHARGES),
    )
    row = await repo.get(conn, account_id, subscription_id, lock=True)
    if row is None:
        raise NotFound("No such subscription.")
    return row, charges


def _refuse_in_flight(charges: list, action: str) -> None:
    if any(c["status"] == "processing" for c in charges):
        raise InvalidTransition(
            f"A payment of this subscription is being processed; {action} once its outcome is known "
            "(a card takes seconds, a bank debit can take days)."
        )


async def _drop_open_charges(conn: asyncpg.Connection, subscription_id: str, at: datetime) -> None:
    """Nothing more is taken for the open charges: one never attempted is deleted (it
    carries no history, and its payment date may be charged again after a resume); one
    in retries is canceled and kept with its attempts."""
    await conn.execute(
        f"DELETE FROM {S}.charges WHERE subscription_id = $1 AND status = 'scheduled' AND attempts = 0",
        subscription_id,
    )
    await conn.execute(
        f"""UPDATE {S}.charges SET status = 'canceled', updated_at = $2
            WHERE subscription_id = $1 AND status IN ('scheduled', 'retrying')""",
        subscription_id,
        at,
    )


def _refuse_ended(row: asyncpg.Record, action: str) -> None:
    if row["status"] in lifecycle.ENDED:
        raise InvalidTransition(f"The subscription is {row['status']}; it cannot be {action}.")


# -- create ---------------------------------------------------------------------------------------
async def create(
    conn: asyncpg.Connection,
    settings: CommonSettings,
    account: Account,
    body: SubscriptionCreate,
    *,
    origin: tuple[str, str, str] | None = None,
) -> asyncpg.Record | None:
    """A subscription from scratch. ``origin`` (source type, source id, group key): made
    from another record (a converted quote) — once per group however often it is asked
    (None when it exists already)."""
    currency = check_currency(account, body.currency)
    method = body.collection.method
    if body.contact_id is None and body.email is None:
        raise field_error("email", "give the billing contact: contact_id of an existing contact, or a new one's email")
    if method in COLLECTED and body.email is None:
        raise field_error(
            "email", f"is required when the subscription is collected ({method}): billing cannot read the contact's"
        )
    check_collection(body.collection)
    if body.payments is not None and body.end_date is not None:
        raise field_error("end_date", "is for subscriptions that renew until cancelled (payments: null)")
    today = local_today(account)
    start = body.start_date or today
    if start < today:
        raise field_error("start_date", f"must not be before today ({today.isoformat()}, the account's date)")
    if start > today + MAX_START_AHEAD:
        raise field_error("start_date", f"must be within {MAX_START_AHEAD.days} days from today")
    if body.end_date is not None and body.end_date < start:
        raise field_error("end_date", f"must not be before the start date ({start.isoformat()})")
    lines, totals = price_lines(body.line_items)
    check_collectable(method, currency, totals["amount"])

    pos = lifecycle.at_birth(
        anchor=start,
        interval=body.interval,
        payments_total=body.payments,
        end_date=body.end_date,
        first_payment_charged=False,
        today=today,
    )
    now = account.clock.now()
    sub_id = new_id("sub")
    deal_ids = list(dict.fromkeys([*body.deal_ids, *([body.from_deal_id] if body.from_deal_id else [])]))
    contact = {"email": body.email, "firstname": body.firstname, "lastname": body.lastname}
    row = await insert_subscription(
        conn,
        settings,
        {
            "id": sub_id,
            "account_id": account.id,
            "status": pos.status,
            "currency": currency,
            "interval": body.interval,
            "start_date": start,
            "payments_total": body.payments,
            "payments_made": 0,
            "end_date": body.end_date,
            "next_index": pos.next_index,
            "next_payment_date": pos.next_payment_date,
            **totals,
            "line_items": lines,
            "email": body.email,
            "contact": {k: v for k, v in contact.items() if v is not None},
            "contact_id": body.contact_id,
            "company_id": body.company_id,
            "deal_ids": deal_ids,
            "billing_address": body.billing_address.model_dump() if body.billing_address else None,
            "collection_method": method,
            "payment_terms_days": body.collection.terms(),
            "collect_method_on_first_invoice": body.collection.collect_payment_method_on_first_invoice,
            "invoice_settings": body.invoice_settings.model_dump(),
            "source_type": origin[0] if origin else "deal" if body.from_deal_id else "api",
            "source_id": origin[1] if origin else body.from_deal_id or sub_id,
            **({"origin_payment_id": origin[1], "subscription_group": origin[2]} if origin else {}),
            "metadata": body.metadata,
            "test_mode": account.test_mode,
            "created_at": now,
            "updated_at": now,
        },
        now,
    )
    assert row is not None or origin is not None  # only an origin's group can exist already
    return row


# -- change ---------------------------------------------------------------------------------------
async def update(conn: asyncpg.Connection, account: Account, subscription_id: str, body: SubscriptionUpdate):
    given = body.model_fields_set
    nulls = [f for f in UPDATE_NOT_NULL if f in given and getattr(body, f) is None]
    if nulls:
        raise ValidationProblem([{"field": f, "message": "may not be null"} for f in nulls])
    row, charges = await _lock(conn, account.id, subscription_id)
    _refuse_ended(row, "changed")
    now = account.clock.now()
    today = local_today(account)
    changes: dict[str, Any] = {}

    amount = row["amount"]
    if body.line_items is not None:
        # Applies to charges created from now on; a charge already made keeps its amount.
        lines, totals = price_lines(body.line_items)
        changes.update(line_items=lines, **totals)
        amount = totals["amount"]

    method = row["collection_method"]
    if body.collection is not None:
        changes.update(_collection_changes(row, body.collection, charges))
        method = body.collection.method
    if "line_items" in changes or "collection_method" in changes:
        check_collectable(method, row["currency"], amount)

    if "end_date" in given:
        changes.update(_end_date_changes(row, body.end_date, today, now))
    if "billing_address" in given:
        changes["billing_address"] = body.billing_address.model_dump() if body.billing_address else None
    if body.invoice_settings is not None:
        changes["invoice_settings"] = body.invoice_settings.model_dump()
    if body.metadata is not None:
        changes["metadata"] = body.metadata
    if not changes:
        return row
    if changes.get("status") == "completed" or changes.get("collection_method", method) != row["collection_method"]:
        await _drop_open_charges(conn, row["id"], now)  # (only waiting ones remain here)
    return await change(conn, row, changes, now)


def _collection_changes(row: asyncpg.Record, collection: CollectionIn, charges: list) -> dict[str, Any]:
    check_collection(collection)
    method = collection.method
    if method != row["collection_method"] and any(c["attempts"] or c["status"] != "scheduled" for c in charges):
        raise InvalidTransition(
            "A payment of this subscription is being processed or in retries; change the collection "
            "method once it is settled, or cancel the subscription."
        )
    if method in COLLECTED and not row["email"]:
        raise field_error("collection.method", f"{method} needs the buyer's e-mail, and this subscription has none")
    return {
        "collection_method": method,
        "payment_terms_days": collection.terms(),
        "collect_method_on_first_invoice": collection.collect_payment_method_on_first_invoice,
    }


def _end_date_changes(row: asyncpg.Record, end_date: date | None, today: date, now: datetime) -> dict[str, Any]:
    if end_date is not None:
        if row["payments_total"] is not None:
            raise field_error("end_date", "a subscription with a fixed number of payments ends after them")
        if end_date < today:
            raise field_error("end_date", f"must not be before today ({today.isoformat()}, the account's date)")
        if end_date < row["start_date"]:
            raise field_error("end_date", f"must not be before the start date ({row['start_date'].isoformat()})")
    changes: dict[str, Any] = {"end_date": end_date}
    if row["status"] in ("scheduled", "active"):
        when = _next_date(row["start_date"], row["interval"], row["next_index"], end_date)
        changes["next_payment_date"] = when
        if when is None:  # nothing left to charge: it ends now, as after its last payment
            changes.update(status="completed", ended_at=now)
    return changes


# -- cancel, pause, resume ---------------------------------------------------------------------------
async def cancel(conn: asyncpg.Connection, account: Account, subscription_id: str, *, at_period_end: bool):
    row, charges = await _lock(conn, account.id, subscription_id)
    _refuse_ended(row, "canceled")
    now = account.clock.now()
    if at_period_end:
        if row["cancel_at_period_end"]:
            raise InvalidTransition("The subscription is already set to cancel at the end of its period.")
        if row["status"] not in ("scheduled", "active", "past_due"):
            raise InvalidTransition(
                f"A {row['status']} subscription has no current period to finish; cancel it now (at_period_end: false)."
            )
        # No further payment is created (the scheduler skips it); charging/transitions.py
        # ends it when its next payment date comes.
        return await change(conn, row, {"cancel_at_period_end": True}, now)
    _refuse_in_flight(charges, "cancel it")
    await _drop_open_charges(conn, row["id"], now)
    return await change(
        conn,
        row,
        {"status": "canceled", "canceled_at": now, "ended_at": now, "next_payment_date": None},
        now,
    )


async def pause(conn: asyncpg.Connection, account: Account, subscription_id: str):
    row, charges = await _lock(conn, account.id, subscription_id)
    if row["status"] not in ("scheduled", "active", "past_due"):
        raise InvalidTransition(f"A {row['status']} subscription cannot be paused.")
    _refuse_in_flight(charges, "pause it")
    now = account.clock.now()
    # A payment in retries is dropped: the paused periods are not charged (§6.4).
    await _drop_open_charges(conn, row["id"], now)
    return await change(conn, row, {"status": "paused", "paused_at": now, "next_payment_date": None}, now)


async def resume(conn: asyncpg.Connection, account: Account, subscription_id: str):
    row, _ = await _lock(conn, account.id, subscription_id)
    if row["status"] != "paused":
        raise InvalidTransition(f"Only a paused subscription can be resumed; this one is {row['status']}.")
    now = account.clock.now()
    today = local_today(account)
    pos = lifecycle.on_resume(
        lifecycle.Position(row["status"], row["payments_made"], row["next_index"], row["next_payment_date"]),
        anchor=row["start_date"],
        interval=row["interval"],
        end_date=row["end_date"],
        today=today,
    )
    pos = await _free_index(conn, row, pos, today)
    changes: dict[str, Any] = {
        "status": pos.status,
        "next_index": pos.next_index,
        "next_payment_date": pos.next_payment_date,
        "paused_at": None,
    }
    if pos.status == "completed":
        changes["ended_at"] = now
    updated = await change(conn, row, changes, now)
    if pos.next_payment_date is not None and pos.next_payment_date <= today:
        await schedule_for_account(conn, account.id)  # due today: charge it now, not on the next pass
    return updated


async def _free_index(
    conn: asyncpg.Connection, row: asyncpg.Record, pos: lifecycle.Position, today: date
) -> lifecycle.Position:
    """A payment date that was attempted before the pause (it failed, then the pause
    forgave it) keeps its canceled charge (one per date) and is not charged again: the
    next date is. (Charges never attempted were deleted by the pause.)"""
    while pos.next_payment_date is not None:
        taken = await conn.fetchval(
            f"SELECT 1 FROM {S}.charges WHERE subscription_id = $1 AND period_index = $2",
            row["id"],
            pos.next_index,
        )
        if not taken:
            return pos
        index = pos.next_index + 1
        when = _next_date(row["start_date"], row["interval"], index, row["end_date"])
        status = pos.status
        if when is None:
            status = "completed"
        elif status == "scheduled" and when <= today:
            status = "active"
        pos = lifecycle.Position(status, pos.payments_made, index, when)
    return pos


# -- the buyer's update link ---------------------------------------------------------------------------
async def payment_method_link(
    conn: asyncpg.Connection, settings: CommonSettings, account: Account, subscription_id: str, *, rotate: bool
) -> tuple[str, bool]:
    """The update link; ``rotate`` makes a new one and revokes the old (its hash no longer
    resolves). Rotation is not part of the snapshot, so it publishes nothing."""
    row = await repo.get(conn, account.id, subscription_id, lock=rotate)
    if row is None:
        raise NotFound("No such subscription.")
    _refuse_ended(row, "given a payment method")
    version = row["pm_token_version"]
    if rotate:
        version += 1
        await repo.update(
            conn,
            row["id"],
            {"pm_token_version": version, "pm_token_hash": payment_method_token_hash(settings, row["id"], version)},
            account.clock.now(),
        )
    return payment_method_url(settings, row["id"], version), rotate
