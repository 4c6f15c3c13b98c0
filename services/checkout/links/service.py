"""Payment link rules (PRODUCT §3): what a valid link is, how it inherits the account's
defaults, and how its items become pricing inputs.

A link stores its line items (library items copied from their product; tax rates copied
with their percentage, so a link keeps the terms it was saved with) and its effective
settings: the account's payment-link defaults at creation, overridden by the link's own
values. Editing the account's defaults later changes new links only.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic import ValidationError

from shared.accounts import Account
from shared.currency import minimum_charge, processor_refusal
from shared.events.models import PaymentLinkAssociatedV1
from shared.ids import new_id, new_token
from shared.link_settings import ContactField, method_allowed, normalize_contact_fields, sanitize_checkout_text
from shared.money import Money, format_money
from shared.outbox import publish_event
from shared.pricing import Discount, Item, PricingError, Recurring, Summary, price, unit_discount_amount
from shared.schedule import delayed_start
from shared.web.problem import Conflict, ValidationProblem, field_error

from . import repository as repo
from .schemas import LineItemIn, LinkCreate, LinkUpdate, SimplifiedLinkCreate

SETTING_FIELDS = (
    "order_discount", "allow_discount_codes", "create_deal", "deal_id", "checkout_text", "contact_fields",
    "payment_methods", "collect_billing_address", "collect_shipping_address", "after_completion",
    "deactivate_after_payment",
)  # fmt: skip


def check_currency(account: Account, currency: str, field: str = "currency") -> str:
    refusal = processor_refusal(currency)
    if refusal is not None:
        raise field_error(field, refusal.message)
    code = currency.upper()
    if code not in account.settings.currencies:
        raise field_error(field, f"{code} is not enabled for this account (see PATCH /v1/account currencies)")
    return code


def today(account: Account) -> date:
    """The account-local calendar date of its clock."""
    from zoneinfo import ZoneInfo

    return account.clock.now().astimezone(ZoneInfo(account.settings.time_zone)).date()


# -- line items ---------------------------------------------------------------------------------
def _discount_dict(discount: Any) -> dict | None:
    if discount is None:
        return None
    return {
        "percent_off": str(discount.percent_off) if discount.percent_off is not None else None,
        "amount_off": discount.amount_off,
    }


async def build_line_items(
    conn: asyncpg.Connection, account: Account, currency: str, items: list[LineItemIn], given: list[set[str]]
) -> list[dict]:
    """Validate the items and resolve products and tax rates into stored line items.
    ``given`` holds, per item, the fields the merchant set (so a product's values fill
    only the others)."""
    errors: list[dict[str, str]] = []
    tax_ids = sorted({i.tax_rate_id for i in items if i.tax_rate_id})
    rates = {}
    if tax_ids:
        from ..catalogue import service as catalogue  # imported here: built alongside this module

        rates = await catalogue.tax_rates_by_id(conn, account.id, tax_ids)
    minimum = minimum_charge(currency)
    day = today(account)
    out: list[dict] = []
    for index, item in enumerate(items):
        at = f"line_items[{index}]"

        def err(field: str, message: str, at: str = at) -> None:
            errors.append({"field": f"{at}.{field}" if field else at, "message": message})

        name, description, unit_amount = item.name, item.description, item.unit_amount
        recurring = item.recurring.model_dump(mode="json") if item.recurring else None
        if item.product_id:
            from ..catalogue import service as catalogue

            product = await catalogue.get_product(conn, account.id, item.product_id)
            if product is None:
                err("product_id", "no such product")
                continue
            if product["currency"] != currency:
                err("product_id", f"the product is priced in {product['currency']}, the link in {currency}")
            name = name if "name" in given[index] else product["name"]
            description = description if "description" in given[index] else product.get("description")
            unit_amount = unit_amount if "unit_amount" in given[index] else product["unit_amount"]
            if "recurring" not in given[index] and product.get("recurring_interval"):
                recurring = {
                    "interval": product["recurring_interval"],
                    "payments": None,
                    "end_date": None,
                    "start": None,
                }
        if not name:
            err("name", "is required (or give a product_id)")
        custom = item.custom_amount
        if custom is not None:
            if item.adjustable_quantity is not None:
                err("custom_amount", "a buyer-chosen price cannot be combined with an adjustable quantity")
            if item.quantity != 1:
                err("quantity", "must be 1 for an item whose price the buyer chooses")
            if item.unit_discount is not None:
                err("unit_discount", "does not apply to a price the buyer chooses")
            low = custom.minimum if custom.minimum is not None else minimum
            if low < minimum:
                err(
                    "custom_amount.minimum",
                    f"must be at least the minimum charge {format_money(Money(minimum, currency))}",
                )
            if custom.maximum is not None and custom.maximum < low:
                err("custom_amount.maximum", "must not be below the minimum")
            if unit_amount is not None and not (low <= unit_amount <= (custom.maximum or unit_amount)):
                err("unit_amount", "the suggested amount must lie within the custom amount bounds")
            custom_dict = {"minimum": low, "maximum": custom.maximum}
            unit_amount = unit_amount if unit_amount is not None else low
        else:
            custom_dict = None
            if unit_amount is None:
                err("unit_amount", "is required (or give a product_id, or a custom_amount)")
        adjustable = item.adjustable_quantity
        if adjustable is not None and not adjustable.minimum <= item.quantity <= adjustable.maximum:
            err("quantity", "must lie within adjustable_quantity's minimum and maximum")
        if item.unit_discount is not None and unit_amount is not None:
            d = item.unit_discount
            if d.amount_off is not None and d.amount_off >= unit_amount:
                err("unit_discount.amount_off", "must be less than the unit price: zero-priced items are refused")
            elif (
                d.percent_off is not None
                and unit_discount_amount(unit_amount, Discount(percent_off=d.percent_off)) >= unit_amount
            ):
                # the per-unit discount is rounded half-up, so 99.5 % of 1.00 takes all of it
                err(
                    "unit_discount.percent_off",
                    "takes the whole unit price once rounded to the minor unit: the item would cost zero, "
                    "and zero-priced items are refused",
                )
        if recurring is not None:
            start = recurring.get("start") or {}
            if start:
                recurring["start"] = start = {k: v for k, v in start.items() if v is not None}
            start_ok = True
            if start.get("date") and date.fromisoformat(start["date"]) <= day:
                start_ok = False
                err("recurring.start.date", "must be a future date (leave start out to bill from checkout)")
            end = date.fromisoformat(recurring["end_date"]) if recurring.get("end_date") else None
            if end is not None and end <= day:
                err("recurring.end_date", "must be after today")
            elif end is not None and start_ok and end < (first := delayed_start(day, start or None)):
                # otherwise the item would never be charged
                err("recurring.end_date", f"must not be before the billing start ({first.isoformat()})")
        tax_rate = None
        if item.tax_rate_id:
            rate = rates.get(item.tax_rate_id)
            if rate is None:
                err("tax_rate_id", "no such (active) tax rate")
            else:
                tax_rate = {"id": rate["id"], "name": rate["name"], "percentage": str(rate["percentage"])}
        out.append(
            {
                "id": new_id("li"),
                "product_id": item.product_id,
                "name": name,
                "description": description,
                "quantity": item.quantity,
                "unit_amount": unit_amount,
                "optional": item.optional,
                "adjustable_quantity": item.adjustable_quantity.model_dump() if adjustable else None,
                "custom_amount": custom_dict,
                "recurring": recurring,
                "unit_discount": _discount_dict(item.unit_discount),
                "tax_rate_id": item.tax_rate_id,
                "tax_rate": tax_rate,
            }
        )
    if errors:
        raise ValidationProblem(errors)
    return out


def _discount(stored: dict | None, name: str = "") -> Discount | None:
    if not stored:
        return None
    percent = stored.get("percent_off")
    return Discount(
        percent_off=Decimal(percent) if percent is not None else None,
        amount_off=stored.get("amount_off") if percent is None else None,
        name=stored.get("name", name),
    )


def _recurring(stored: dict | None) -> Recurring | None:
    if not stored:
        return None
    end = stored.get("end_date")
    return Recurring(
        interval=stored["interval"],
        payments=stored.get("payments"),
        end_date=date.fromisoformat(end) if end else None,
        start=stored.get("start") or None,
    )


def pricing_items(line_items: list[dict], choices: dict[str, dict] | None = None) -> list[Item]:
    """Stored line items (with the buyer's choices, if any) as pricing inputs. Without
    choices: optional items unselected, default quantities, suggested custom amounts."""
    choices = choices or {}
    items = []
    for li in line_items:
        choice = choices.get(li["id"], {})
        rate = li.get("tax_rate")
        items.append(
            Item(
                line_item_id=li["id"],
                name=li["name"],
                quantity=choice.get("quantity", li["quantity"]),
                unit_amount=choice.get("amount", li["unit_amount"]),
                selected=choice.get("selected", not li.get("optional", False)),
                unit_discount=_discount(li.get("unit_discount")),
                tax_percent=Decimal(rate["percentage"]) if rate else None,
                recurring=_recurring(li.get("recurring")),
            )
        )
    return items


def order_discounts(settings: dict, code: dict | None = None) -> tuple[Discount, ...]:
    """The link's one-time discount, then a discount code — in that order (§4.3)."""
    discounts = []
    if settings.get("order_discount"):
        discounts.append(_discount(settings["order_discount"]))
    if code:
        discounts.append(_discount(code, name=code.get("code", "Discount code")))
    return tuple(d for d in discounts if d is not None)


def check_due_now(summary: Summary, line_items: list[dict], currency: str, field: str = "line_items") -> None:
    """§3.1: something must be due at checkout, and at least the processor's minimum."""
    if (
        summary.lines
        and not any(line.due_now for line in summary.lines)
        and all(li.get("recurring") for li in line_items)
    ):
        raise field_error(
            field,
            "every item starts billing later, so nothing would be charged at checkout: add an item "
            "(or a deposit) that is due now",
        )
    minimum = minimum_charge(currency)
    if summary.total_due_now < minimum:
        raise field_error(
            field,
            f"the total due at checkout must be at least {format_money(Money(minimum, currency))} "
            f"(it is {format_money(Money(summary.total_due_now, currency))})",
        )


def _smallest_choices(line_items: list[dict]) -> dict[str, dict]:
    """The least a buyer can choose: optional items left out, quantities and chosen
    amounts at their minimum."""
    choices: dict[str, dict] = {}
    for li in line_items:
        choice: dict[str, Any] = {}
        if li.get("adjustable_quantity"):
            choice["quantity"] = li["adjustable_quantity"]["minimum"]
        if li.get("custom_amount"):
            choice["amount"] = li["custom_amount"]["minimum"]
        if choice:
            choices[li["id"]] = choice
    return choices


def check_link_pricing(
    line_items: list[dict], settings: dict, currency: str, day: date, field: str = "line_items"
) -> None:
    """§3.1 for a link as the merchant saves it: something is bought and charged at
    checkout whatever the buyer chooses, and it reaches the minimum charge (decision 18)."""
    if all(li.get("optional") for li in line_items):
        raise field_error(field, "every item is optional: at least one item must be bought (not optional)")
    discounts = order_discounts(settings)
    try:
        summary = price(pricing_items(line_items), currency, checkout_day=day, order_discounts=discounts)
        smallest = price(
            pricing_items(line_items, _smallest_choices(line_items)),
            currency,
            checkout_day=day,
            order_discounts=discounts,
        )
    except PricingError as exc:
        raise field_error(exc.field, exc.message) from None
    if not any(line.due_now for line in summary.lines):
        raise field_error(
            field,
            "every item the buyer must buy starts billing later, so nothing would be due now at checkout: add an "
            "item (or a deposit) that is charged at checkout",
        )
    check_due_now(summary, line_items, currency, field)
    minimum = minimum_charge(currency)
    if smallest.total_due_now < minimum:
        raise field_error(
            field,
            f"the smallest order a buyer can choose (quantities and chosen amounts at their minimum) comes to "
            f"{format_money(Money(smallest.total_due_now, currency))} due at checkout, below the minimum charge "
            f"of {format_money(Money(minimum, currency))}",
        )


def embeddable(line_items: list[dict]) -> tuple[bool, str | None]:
    """§3.3: an embed code only for fixed price and quantity, nothing optional, all charged
    at checkout. Returns (allowed, reason if not)."""
    for li in line_items:
        if li.get("optional"):
            return False, f"'{li['name']}' is optional"
        if li.get("adjustable_quantity"):
            return False, f"the buyer can change the quantity of '{li['name']}'"
        if li.get("custom_amount"):
            return False, f"the buyer chooses the price of '{li['name']}'"
        if li.get("recurring") and li["recurring"].get("start"):
            return False, f"'{li['name']}' starts billing after checkout"
    return True, None


# -- settings -----------------------------------------------------------------------------------
def _default_settings(account: Account, currency: str) -> dict:
    """A new link's settings before its own values: the account's payment-link defaults
    (payment methods the currency does not allow, and shipping while the account does
    not ship, are left out)."""
    defaults = account.settings.payment_link_defaults
    return {
        "order_discount": None,
        "allow_discount_codes": False,
        "create_deal": defaults.create_deal.model_dump() if defaults.create_deal else None,
        "deal_id": None,
        "checkout_text": defaults.checkout_text,
        "contact_fields": normalize_contact_fields(defaults.contact_fields),
        "payment_methods": [m for m in defaults.payment_methods if method_allowed(m, currency)] or ["card"],
        "collect_billing_address": defaults.collect_billing_address,
        "collect_shipping_address": defaults.collect_shipping_address and account.settings.shipping_enabled,
        "after_completion": defaults.after_completion.model_dump(exclude_none=True),
        "deactivate_after_payment": False,
    }


def _order_discount(value: dict | None) -> dict | None:
    """Stored and shown with both kinds named, like a unit discount."""
    if not value:
        return None
    return {"name": value["name"], "percent_off": value.get("percent_off"), "amount_off": value.get("amount_off")}


async def build_settings(
    conn: asyncpg.Connection,
    account: Account,
    currency: str,
    given: dict[str, Any],
    base: dict | None,
    *,
    currency_changed: bool = False,
) -> dict:
    """Effective settings: ``base`` (the link's current settings, or the account's
    defaults for a new link) with the given values applied, validated.

    A new link checks everything it ends up with (inherited values too); an edit checks
    what it changes (payment methods also when the currency changes), so that a link whose
    deal was deleted, or whose account stopped shipping, can still be renamed or turned off."""
    creating = base is None
    settings = _default_settings(account, currency) if base is None else dict(base)
    errors: list[dict[str, str]] = []
    for key, value in given.items():
        if key == "contact_fields":
            try:
                settings[key] = normalize_contact_fields([ContactField.model_validate(f) for f in value])
            except (ValueError, ValidationError) as exc:
                errors.append({"field": "contact_fields", "message": str(exc).splitlines()[0]})
        elif key == "checkout_text":
            settings[key] = (sanitize_checkout_text(value) or None) if value else None
        elif key == "after_completion":
            settings[key] = {k: v for k, v in value.items() if v is not None} if value else {"type": "message"}
        elif key == "order_discount":
            settings[key] = _order_discount(value)
        elif key in ("create_deal", "deal_id"):
            settings[key] = value or None
        elif key in SETTING_FIELDS:
            settings[key] = value

    def check(key: str) -> bool:
        return creating or key in given

    if check("payment_methods") or currency_changed:
        for index, method in enumerate(settings["payment_methods"]):
            if not method_allowed(method, currency):
                errors.append(
                    {
                        "field": f"payment_methods[{index}]",
                        "message": f"{method} is not available for {currency} payments",
                    }
                )
    if check("collect_shipping_address") and settings["collect_shipping_address"]:
        if not account.settings.shipping_enabled:
            errors.append(
                {"field": "collect_shipping_address", "message": "turn on shipping in the account settings first"}
            )
    if check("create_deal") and settings.get("create_deal"):
        errors.extend(
            await _deal_creation_errors(conn, account, settings["create_deal"], inherited="create_deal" not in given)
        )
    if check("deal_id") and settings.get("deal_id"):
        from .. import crm_refs  # imported here: built alongside this module

        if await crm_refs.find_record(conn, account.id, "deal", settings["deal_id"]) is None:
            errors.append({"field": "deal_id", "message": "no such deal"})
    if errors:
        raise ValidationProblem(errors)
    return settings


async def _deal_creation_errors(conn: asyncpg.Connection, account: Account, deal: dict, *, inherited: bool) -> list:
    from .. import crm_refs  # imported here: built alongside this module

    note = " (inherited from the account's payment_link_defaults)" if inherited else ""
    if await crm_refs.find_record(conn, account.id, "pipeline", deal["pipeline"]) is None:
        return [{"field": "create_deal.pipeline", "message": f"no such pipeline{note}"}]
    if await crm_refs.pipeline_stage(conn, account.id, deal["pipeline"], deal["stage"]) is None:
        return [{"field": "create_deal.stage", "message": f"is not a stage of that pipeline{note}"}]
    return []


#: Fields an edit may not set to null (the others clear to their default with null).
NOT_NULL = (
    "name", "active", "currency", "line_items", "allow_discount_codes", "contact_fields", "payment_methods",
    "collect_billing_address", "collect_shipping_address", "deactivate_after_payment",
)  # fmt: skip


def _given_fields(body: LinkCreate | LinkUpdate) -> dict[str, Any]:
    """The settings the merchant gave. On a new link, null for a field that cannot be
    null means "not given" (the account's default applies)."""
    data = body.model_dump(mode="json", exclude_unset=True)
    return {k: v for k, v in data.items() if k in SETTING_FIELDS and not (v is None and k in NOT_NULL)}


def _item_given(body: LinkCreate | LinkUpdate) -> list[set[str]]:
    return [set(item.model_fields_set) for item in body.line_items or []]


def _validated(account: Account, currency: str, line_items: list[dict], settings: dict) -> dict:
    check_link_pricing(line_items, settings, currency, today(account))
    allowed, reason = embeddable(line_items)
    return {**settings, "embeddable": allowed, "embed_refusal": reason}


async def create_link(
    conn: asyncpg.Connection, account: Account, body: LinkCreate, *, crm_record: dict | None = None
) -> asyncpg.Record:
    currency = check_currency(account, body.currency)
    line_items = await build_line_items(conn, account, currency, body.line_items, _item_given(body))
    settings = await build_settings(conn, account, currency, _given_fields(body), None)
    if crm_record is not None:
        settings["crm_record"] = crm_record
    settings = _validated(account, currency, line_items, settings)
    row = await repo.insert_link(
        conn,
        link_id=new_id("plink"),
        account_id=account.id,
        slug=new_token(16),
        name=body.name or "Payment link",
        active=True if body.active is None else body.active,
        currency=currency,
        line_items=line_items,
        settings=settings,
        now=account.clock.now(),
    )
    await _announce_crm_record(conn, account, row)
    return row


async def update_link(
    conn: asyncpg.Connection, account: Account, link: asyncpg.Record, body: LinkUpdate
) -> asyncpg.Record:
    """PATCH: the fields given change, the others stay; ``line_items`` replaces the list
    (new item ids). Null clears a setting that may be empty and is refused for the rest."""
    nulls = [f for f in NOT_NULL if f in body.model_fields_set and getattr(body, f) is None]
    if nulls:
        raise ValidationProblem([{"field": f, "message": "may not be null"} for f in nulls])
    currency = check_currency(account, body.currency) if body.currency else link["currency"]
    if body.line_items is not None:
        line_items = await build_line_items(conn, account, currency, body.line_items, _item_given(body))
    else:
        line_items = link["line_items"]
        if currency != link["currency"]:
            raise field_error("currency", "changing the currency needs the line items again (prices are per currency)")
    given = _given_fields(body)
    settings = await build_settings(
        conn, account, currency, given, link["settings"], currency_changed=currency != link["currency"]
    )
    # What is charged changes only with the items, the currency or the order discount.
    if body.line_items is not None or "order_discount" in given:
        settings = _validated(account, currency, line_items, settings)
    return await repo.update_link(
        conn,
        account.id,
        link["id"],
        name=body.name,
        active=body.active,
        currency=currency,
        line_items=line_items,
        settings=settings,
        now=account.clock.now(),
    )


async def clone_link(conn: asyncpg.Connection, account: Account, link: asyncpg.Record) -> asyncpg.Record:
    """A new link (new id, URL and item ids) with the same items and settings, named
    "Copy of …", and active whatever the original's state (decision 20)."""
    line_items = [{**li, "id": new_id("li")} for li in link["line_items"]]
    row = await repo.insert_link(
        conn,
        link_id=new_id("plink"),
        account_id=account.id,
        slug=new_token(16),
        name=f"Copy of {link['name']}"[:200],
        active=True,
        currency=link["currency"],
        line_items=line_items,
        settings=link["settings"],
        now=account.clock.now(),
    )
    await _announce_crm_record(conn, account, row)
    return row


async def _announce_crm_record(conn: asyncpg.Connection, account: Account, link: asyncpg.Record) -> None:
    """A link made from a CRM record (§3.4; its clones keep the record, decision 20) is
    associated with it from creation: ``payment_link.associated`` in the link's own
    transaction, so crm_sync records it even before any payment. The record cannot
    change afterwards (``crm_record`` is read-only, decision 19)."""
    record = (link["settings"] or {}).get("crm_record")
    if not record:
        return
    await publish_event(
        conn,
        schema="checkout",
        producer="checkout",
        account_id=account.id,
        event=PaymentLinkAssociatedV1(
            link_id=link["id"], kind=record["type"], record_id=record["id"], associated_at=link["created_at"]
        ),
        occurred_at=link["created_at"],
    )


#: Errors of the full link a simplified link is made into, named by the simplified body's fields.
_SIMPLIFIED_FIELDS = {
    "line_items[0].name": "item_name",
    "line_items[0].unit_amount": "unit_amount",
    "line_items": "unit_amount",
}


async def create_simplified_link(
    conn: asyncpg.Connection, account: Account, kind: str, record_id: str, body: SimplifiedLinkCreate
) -> asyncpg.Record:
    """§3.4: from a contact, company or deal — one one-time item, associated with the record."""
    from .. import crm_refs

    if await crm_refs.find_record(conn, account.id, kind, record_id) is None:
        from shared.web.problem import NotFound

        raise NotFound(f"No such {kind}.")
    full = LinkCreate.model_validate(
        {
            "name": body.name,
            "currency": body.currency,
            "line_items": [{"name": body.item_name, "unit_amount": body.unit_amount}],
            "deactivate_after_payment": body.deactivate_after_payment,
            **({"deal_id": record_id} if kind == "deal" else {}),
        }
    )
    try:
        return await create_link(conn, account, full, crm_record={"type": kind, "id": record_id})
    except ValidationProblem as problem:
        errors = [{**e, "field": _SIMPLIFIED_FIELDS.get(e["field"], e["field"])} for e in problem.errors or []]
        raise ValidationProblem(errors) from None


def embed_html(link_url: str, name: str) -> str:
    from html import escape

    return (
        f'<a href="{escape(link_url, quote=True)}" target="_blank" rel="noopener" '
        f'style="display:inline-block;padding:12px 20px;border-radius:6px;background:#2354d6;color:#fff;'
        f'font:600 16px system-ui,sans-serif;text-decoration:none">{escape(name)}</a>'
    )


def refuse_embed(link: asyncpg.Record) -> None:
    settings = link["settings"] or {}
    if not settings.get("embeddable"):
        raise Conflict(f"This link cannot be embedded: {settings.get('embed_refusal') or 'not eligible'}.")
