"""Catalogue rules: currencies the account and the processor accept, one kind of discount
per code, codes unique whatever their case, timestamps from the account's clock.

The last four functions are the contract that links, quotes, sessions and subscriptions
call (keep their names and signatures): they read active catalogue objects and take a
discount-code redemption inside the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from shared.accounts import Account
from shared.ids import new_id
from shared.web.problem import Conflict, ValidationProblem, field_error

from ..links.service import check_currency
from . import repository as repo
from .schemas import (
    NOT_NULL,
    DiscountCodeCreate,
    ProductCreate,
    ProductPatch,
    TaxRateCreate,
    decimal_text,
    product_out,
)


# -- products ---------------------------------------------------------------------------------
async def create_product(conn: asyncpg.Connection, account: Account, body: ProductCreate) -> asyncpg.Record:
    currency = check_currency(account, body.currency)
    return await repo.insert_product(
        conn,
        product_id=new_id("prod"),
        account_id=account.id,
        name=body.name,
        description=body.description,
        sku=body.sku,
        unit_amount=body.unit_amount,
        currency=currency,
        recurring_interval=body.recurring.interval if body.recurring else None,
        active=body.active,
        now=account.clock.now(),
    )


async def update_product(
    conn: asyncpg.Connection, account: Account, product_id: str, patch: ProductPatch
) -> asyncpg.Record | None:
    """The product with the patch applied, or None when there is no such product.

    Line items copied from the product earlier keep their own values: they are copies."""
    given = patch.model_fields_set
    nulls = [{"field": f, "message": "may not be null"} for f in NOT_NULL if f in given and getattr(patch, f) is None]
    if nulls:
        raise ValidationProblem(nulls)
    current = await repo.get_product(conn, account.id, product_id, for_update=True)
    if current is None or not given:
        return current
    currency = check_currency(account, patch.currency) if "currency" in given else current["currency"]
    if "recurring" in given:
        interval = patch.recurring.interval if patch.recurring else None
    else:
        interval = current["recurring_interval"]
    return await repo.update_product(
        conn,
        account.id,
        product_id,
        name=patch.name if "name" in given else current["name"],
        description=patch.description if "description" in given else current["description"],
        sku=patch.sku if "sku" in given else current["sku"],
        unit_amount=patch.unit_amount if "unit_amount" in given else current["unit_amount"],
        currency=currency,
        recurring_interval=interval,
        active=patch.active if "active" in given else current["active"],
        now=account.clock.now(),
    )


async def delete_product(conn: asyncpg.Connection, account: Account, product_id: str) -> bool:
    return await repo.delete_product(conn, account.id, product_id, account.clock.now())


# -- tax rates --------------------------------------------------------------------------------
async def create_tax_rate(conn: asyncpg.Connection, account: Account, body: TaxRateCreate) -> asyncpg.Record:
    return await repo.insert_tax_rate(
        conn,
        tax_rate_id=new_id("txr"),
        account_id=account.id,
        name=body.name,
        percentage=body.percentage,
        active=body.active,
        now=account.clock.now(),
    )


# -- discount codes -----------------------------------------------------------------------------
async def create_discount_code(conn: asyncpg.Connection, account: Account, body: DiscountCodeCreate) -> asyncpg.Record:
    if body.percent_off is None and body.amount_off is None:
        raise ValidationProblem(
            [
                {"field": "percent_off", "message": "either percent_off or amount_off is required"},
                {"field": "amount_off", "message": "either percent_off or amount_off is required"},
            ]
        )
    if body.percent_off is not None and body.amount_off is not None:
        raise ValidationProblem(
            [
                {"field": "percent_off", "message": "a code takes percent_off or amount_off, not both"},
                {"field": "amount_off", "message": "a code takes percent_off or amount_off, not both"},
            ]
        )
    currency = None
    if body.amount_off is not None:
        if body.currency is None:
            raise field_error("currency", "is required with amount_off")
        currency = check_currency(account, body.currency)
    elif body.currency is not None:
        raise field_error("currency", "applies only to amount_off codes; a percent_off code works in any currency")
    now = account.clock.now()
    if body.expires_at is not None and body.expires_at <= now:
        raise field_error("expires_at", "must be in the future")
    row = await repo.insert_discount_code(
        conn,
        discount_code_id=new_id("dc"),
        account_id=account.id,
        code=body.code,
        percent_off=body.percent_off,
        amount_off=body.amount_off,
        currency=currency,
        expires_at=body.expires_at,
        max_redemptions=body.max_redemptions,
        active=body.active,
        now=now,
    )
    if row is None:
        raise Conflict(
            f"The discount code {body.code!r} already exists (codes are matched without regard to case).",
            errors=[{"field": "code", "message": "already exists (codes are matched without regard to case)"}],
        )
    return row


async def deactivate_discount_code(
    conn: asyncpg.Connection, account_id: str, discount_code_id: str
) -> asyncpg.Record | None:
    return await repo.deactivate_discount_code(conn, account_id, discount_code_id)


# -- the contract other code calls ------------------------------------------------------------
async def tax_rates_by_id(conn: asyncpg.Connection, account_id: str, ids: list[str]) -> dict[str, dict]:
    """``{id: {"id", "name", "percentage": Decimal}}`` of the account's *active* rates among
    ``ids``; unknown, inactive and other accounts' ids are absent."""
    wanted = sorted({i for i in ids if isinstance(i, str)})
    if not wanted:
        return {}
    rows = await repo.active_tax_rates(conn, account_id, wanted)
    return {r["id"]: {"id": r["id"], "name": r["name"], "percentage": _exact(r["percentage"])} for r in rows}


async def get_product(conn: asyncpg.Connection, account_id: str, product_id: str) -> dict | None:
    """The active, not deleted product as the API shows it (``id, name, description, sku,
    unit_amount, currency, recurring: None | {interval}``, ...) plus ``recurring_interval``
    (None | the interval), or None."""
    row = await repo.get_active_product(conn, account_id, product_id)
    if row is None:
        return None
    return {**product_out(row), "recurring_interval": row["recurring_interval"]}


async def find_discount_code(
    conn: asyncpg.Connection, account_id: str, code: str, *, currency: str, now: datetime
) -> dict | None:
    """The code a buyer typed, if it can be used now in ``currency``: matched without regard
    to case (surrounding spaces ignored), active, not expired at ``now``, with redemptions
    left, and — for an amount_off code — of the same currency. Returns ``{"id", "code",
    "percent_off": Decimal | None, "amount_off": int | None, "currency"}`` (``currency`` is
    None for a percent_off code), or None."""
    typed = code.strip() if isinstance(code, str) else ""
    if not typed or len(typed) > 100:
        return None
    row = await repo.find_usable_code(conn, account_id, typed, currency=str(currency).upper(), now=now)
    if row is None:
        return None
    return _code_dict(row)


def _exact(value: Decimal) -> Decimal:
    """Without the column's trailing zeros: ``8.8750`` -> ``Decimal("8.875")``."""
    return Decimal(decimal_text(value))


def _code_dict(row: Any) -> dict:
    return {
        "id": row["id"],
        "code": row["code"],
        "percent_off": _exact(row["percent_off"]) if row["percent_off"] is not None else None,
        "amount_off": row["amount_off"],
        "currency": row["currency"],
    }


class _SessionAlreadyRedeemed(Exception):
    pass


async def redeem_discount_code(
    conn: asyncpg.Connection,
    account_id: str,
    discount_code_id: str,
    *,
    session_id: str,
    payment_id: str | None,
    now: datetime,
) -> bool:
    """Record that ``session_id`` uses the code, and count it, inside the caller's
    transaction. ``payment_id`` None reserves the redemption before the charge (the
    checkout does this in the transaction that claims its charge operation);
    `attach_payment` completes it, `release_reservation` gives it back after a decline.
    False when the code's redemption limit is reached, even after giving back the
    reservations of sessions that expired unpaid (or there is no such code in the
    account): nothing is written then.

    The count is taken by one conditional ``UPDATE … WHERE times_redeemed <
    max_redemptions``, so of two purchases racing for the last redemption exactly one gets
    it. Idempotent per session: redeeming a session again returns True for the code it
    already redeemed (False for another code) and counts nothing. Expiry and the active
    flag are checked when the buyer applies the code (`find_discount_code`), not here: a
    buyer who applied a valid code keeps it while paying."""
    existing = await repo.get_redemption(conn, account_id, session_id)
    if existing is not None:
        return existing["discount_code_id"] == discount_code_id
    try:
        async with conn.transaction():  # a savepoint: a refusal leaves the caller's work intact
            if not await repo.take_redemption(conn, account_id, discount_code_id):
                if not await repo.release_abandoned_reservations(conn, account_id, discount_code_id, now):
                    return False
                if not await repo.take_redemption(conn, account_id, discount_code_id):
                    return False
            recorded = await repo.insert_redemption(
                conn,
                account_id=account_id,
                discount_code_id=discount_code_id,
                session_id=session_id,
                payment_id=payment_id,
                now=now,
            )
            if not recorded:  # a concurrent call redeemed this session first: undo our count
                raise _SessionAlreadyRedeemed
            return True
    except _SessionAlreadyRedeemed:
        existing = await repo.get_redemption(conn, account_id, session_id)
        return existing is not None and existing["discount_code_id"] == discount_code_id


async def attach_payment(conn: asyncpg.Connection, account_id: str, session_id: str, payment_id: str) -> bool:
    """The session's reserved redemption is paid: False when it had none reserved."""
    return await repo.attach_payment(conn, account_id, session_id, payment_id)


async def release_reservation(conn: asyncpg.Connection, account_id: str, session_id: str) -> bool:
    """A declined charge gives its reserved redemption back (the buyer may try another
    card, which reserves again)."""
    return await repo.release_reservation(conn, account_id, session_id)
