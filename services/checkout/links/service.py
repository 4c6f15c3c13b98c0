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
from shared.ids import new_id, new_token
from shared.link_settings import ContactField, method_allowed, normalize_contact_fields, sanitize_checkout_text
from shared.money import Money, format_money
from shared.pricing import Discount, Item, PricingError, Recurring, Summary, price
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
        if recurring is not None:
            if recurring.get("end_date") and date.fromisoformat(recurring["end_date"]) <= day:
                err("recurring.end_date", "must be after today")
            start = recurring.get("start") or {}
            if start.get("date") and date.fromisoformat(start["date"]) <= day:
                err("recurring.start.date", "must be a future date (leave start out to bill from checkout)")
            if start:
                recurring["start"] = {k: v for k, v in start.items() if v is not None}
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
async def build_settings(
    conn: asyncpg.Connection, account: Account, currency: str, given: dict[str, Any], base: dict | None
) -> dict:
    """Effective settings: ``base`` (the link's current settings, or the account's
    defaults for a new link) with the given values applied, validated."""
    defaults = account.settings.payment_link_defaults
    if base is None:
        base = {
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
    settings = dict(base)
    errors: list[dict[str, str]] = []
    for key, value in given.items():
        if key == "contact_fields":
            try:
                settings[key] = normalize_contact_fields([ContactField.model_validate(f) for f in value])
            except (ValueError, ValidationError) as exc:
                errors.append({"field": "contact_fields", "message": str(exc).splitlines()[0]})
        elif key == "checkout_text":
            settings[key] = sanitize_checkout_text(value) if value else None
        elif key == "after_completion":
            settings[key] = {k: v for k, v in value.items() if v is not None} if value else {"type": "message"}
        elif key in ("order_discount", "create_deal"):
            settings[key] = value or None
        elif key in SETTING_FIELDS:
            settings[key] = value if value is not None else base.get(key)
    for index, method in enumerate(settings["payment_methods"]):
        if not method_allowed(method, currency):
            errors.append(
                {"field": f"payment_methods[{index}]", "message": f"{method} is not available for {currency} payments"}
            )
    if settings["collect_shipping_address"] and not account.settings.shipping_enabled:
        errors.append(
            {"field": "collect_shipping_address", "message": "turn on shipping in the account settings first"}
        )
    if settings.get("create_deal") or settings.get("deal_id"):
        from .. import crm_refs  # imported here: built alongside this module
    if settings.get("create_deal"):
        deal = settings["create_deal"]
        stage = await crm_refs.pipeline_stage(conn, account.id, deal["pipeline"], deal["stage"])
        if stage is None:
            errors.append({"field": "create_deal", "message": "no such pipeline, or the stage is not in that pipeline"})
    if settings.get("deal_id") and await crm_refs.find_record(conn, account.id, "deal", settings["deal_id"]) is None:
        errors.append({"field": "deal_id", "message": "no such deal"})
    if errors:
        raise ValidationProblem(errors)
    return settings


def _given_fields(body: LinkCreate | LinkUpdate) -> dict[str, Any]:
    data = body.model_dump(mode="json", exclude_unset=True)
    return {k: v for k, v in data.items() if k in SETTING_FIELDS}


def _item_given(body: LinkCreate | LinkUpdate) -> list[set[str]]:
    return [set(item.model_fields_set) for item in body.line_items or []]


async def _validated(
    conn: asyncpg.Connection, account: Account, currency: str, line_items: list[dict], settings: dict
) -> dict:
    try:
        summary = price(
            pricing_items(line_items), currency, checkout_day=today(account), order_discounts=order_discounts(settings)
        )
    except PricingError as exc:
        raise field_error(exc.field, exc.message) from None
    check_due_now(summary, line_items, currency)
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
    settings = await _validated(conn, account, currency, line_items, settings)
    return await repo.insert_link(
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


async def update_link(
    conn: asyncpg.Connection, account: Account, link: asyncpg.Record, body: LinkUpdate
) -> asyncpg.Record:
    currency = check_currency(account, body.currency) if body.currency else link["currency"]
    if body.line_items is not None:
        line_items = await build_line_items(conn, account, currency, body.line_items, _item_given(body))
    else:
        line_items = link["line_items"]
        if currency != link["currency"]:
            raise field_error("currency", "changing the currency needs the line items again (prices are per currency)")
    settings = await build_settings(conn, account, currency, _given_fields(body), link["settings"])
    settings = await _validated(conn, account, currency, line_items, settings)
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
    line_items = [{**li, "id": new_id("li")} for li in link["line_items"]]
    return await repo.insert_link(
        conn,
        link_id=new_id("plink"),
        account_id=account.id,
        slug=new_token(16),
        name=f"Copy of {link['name']}"[:200],
        active=link["active"],
        currency=link["currency"],
        line_items=line_items,
        settings=link["settings"],
        now=account.clock.now(),
    )


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
    return await create_link(conn, account, full, crm_record={"type": kind, "id": record_id})


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
