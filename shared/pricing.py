"""The one place where amounts are computed (PRODUCT §4.3), for links, quotes,
subscriptions and invoices alike. Pure: integers and Decimal percentages in, integers
out; no I/O, no floats.

Rules, in order:
1. Line amount = (unit price − unit discount) × quantity. A percentage unit discount is
   rounded half-up to the minor unit *per unit*, before multiplying; a fixed unit
   discount never exceeds the unit price.
2. Subtotal due now = the line amounts of the selected items charged at checkout
   (one-time items, and recurring items whose billing starts at checkout).
3. Order discounts (the link's one-time discount, then a discount code) apply only to
   what is due now, each to what remains after the ones before it: a percentage is
   rounded half-up on that amount, a fixed amount never exceeds it. Each is spread over
   the due-now lines in proportion to what remains of each (largest remainder, so the
   parts add up exactly; equal remainders go to the earlier line).
4. Tax per line = rate × (line amount − its share of order discounts), rounded half-up
   per line. Recurring lines are taxed on every payment, not only the first.
5. Total due now = subtotal − order discounts + tax.
6. Recurring items sharing frequency, terms, end date and start date form one
   subscription group (§6.2); each later payment is listed by date and amount per group.
   A start date that has passed by the checkout day is the checkout day.
7. Total = everything the buyer will ever pay, or None when a group renews until
   cancelled (no end): then only its next payment is listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from .schedule import delayed_start, payment_dates

#: Stripe's largest charge (8 digits of minor units); bigger totals are refused up front.
MAX_AMOUNT = 99_999_999
#: Future payments listed per group at most (a fixed term can be long; the list stays bounded).
MAX_LISTED_PAYMENTS = 1_000

_HUNDRED = Decimal(100)


class PricingError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# -- inputs ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Discount:
    """A percentage (Decimal, 0 < p ≤ 100) or a fixed amount (minor units, > 0)."""

    percent_off: Decimal | None = None
    amount_off: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("a discount is either percent_off or amount_off")


@dataclass(frozen=True, slots=True)
class Recurring:
    interval: str
    #: Number of payments; None = renews until cancelled (optionally until ``end_date``).
    payments: int | None = None
    end_date: date | None = None
    #: None (at checkout) | {"date": ...} | {"delay_days": n} | {"delay_months": n}
    start: dict | None = None


@dataclass(frozen=True, slots=True)
class Item:
    line_item_id: str
    name: str
    quantity: int
    unit_amount: int
    selected: bool = True
    unit_discount: Discount | None = None
    tax_percent: Decimal | None = None
    recurring: Recurring | None = None


# -- outputs --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PricedLine:
    line_item_id: str
    name: str
    quantity: int
    unit_amount: int
    #: Per unit, after rounding (rule 1).
    unit_discount: int
    #: (unit price − unit discount) × quantity: the amount of each payment of this line.
    amount: int
    due_now: bool
    #: Share of the order discounts (due-now lines only).
    discount: int = 0
    #: Tax on what is charged now (0 for lines not due now).
    tax: int = 0
    #: Tax on each later payment of a recurring line (no order discounts there).
    recurring_tax: int = 0
    subscription_group: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionGroup:
    key: str
    interval: str
    payments: int | None
    end_date: date | None
    start_date: date
    starts_now: bool
    line_item_ids: tuple[str, ...]
    #: Every later payment of the group: line amounts plus their tax.
    amount: int
    tax: int

    @property
    def renews_until_cancelled(self) -> bool:
        return self.payments is None and self.end_date is None


@dataclass(frozen=True, slots=True)
class FuturePayment:
    date: date
    amount: int
    subscription_group: str


@dataclass(frozen=True, slots=True)
class Summary:
    currency: str
    lines: tuple[PricedLine, ...]
    subtotal_due_now: int
    discounts_due_now: tuple[tuple[str, int], ...] = ()
    tax_due_now: int = 0
    groups: tuple[SubscriptionGroup, ...] = ()
    future_payments: tuple[FuturePayment, ...] = field(default_factory=tuple)

    @property
    def renews_until_cancelled(self) -> bool:
        return any(g.renews_until_cancelled for g in self.groups)

    @property
    def discount_due_now(self) -> int:
        return sum(amount for _, amount in self.discounts_due_now)

    @property
    def total_due_now(self) -> int:
        return self.subtotal_due_now - self.discount_due_now + self.tax_due_now

    @property
    def total(self) -> int | None:
        if self.renews_until_cancelled:
            return None
        return self.total_due_now + sum(p.amount for p in self.future_payments)

    def as_api(self) -> dict:
        return {
            "currency": self.currency,
            "lines": [
                {
                    "line_item_id": line.line_item_id,
                    "name": line.name,
                    "quantity": line.quantity,
                    "unit_amount": line.unit_amount,
                    "unit_discount": line.unit_discount,
                    "amount": line.amount,
                    "due_now": line.due_now,
                    "discount": line.discount,
                    "tax": line.tax,
                    "recurring_tax": line.recurring_tax,
                    "subscription_group": line.subscription_group,
                }
                for line in self.lines
            ],
            "subtotal_due_now": self.subtotal_due_now,
            "discounts_due_now": [{"name": n, "amount": a} for n, a in self.discounts_due_now],
            "tax_due_now": self.tax_due_now,
            "total_due_now": self.total_due_now,
            "future_payments": [
                {"date": p.date.isoformat(), "amount": p.amount, "subscription_group": p.subscription_group}
                for p in self.future_payments
            ],
            "subscriptions": [
                {
                    "subscription_group": g.key,
                    "interval": g.interval,
                    "payments": g.payments,
                    "end_date": g.end_date.isoformat() if g.end_date else None,
                    "start_date": g.start_date.isoformat(),
                    "starts_now": g.starts_now,
                    "line_item_ids": list(g.line_item_ids),
                    "amount": g.amount,
                    "tax": g.tax,
                    "renews_until_cancelled": g.renews_until_cancelled,
                }
                for g in self.groups
            ],
            "total": self.total,
        }


# -- arithmetic -----------------------------------------------------------------------------
def percent_of(amount: int, percent: Decimal) -> int:
    """``percent`` % of ``amount`` (≥ 0), rounded half-up to the minor unit."""
    if amount < 0:
        raise ValueError("amounts here are never negative")
    return int((Decimal(amount) * percent / _HUNDRED).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def discount_amount(base: int, discount: Discount) -> int:
    """What a discount takes off ``base``: never more than ``base``."""
    if discount.percent_off is not None:
        return min(base, percent_of(base, discount.percent_off))
    return min(base, discount.amount_off or 0)


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` over ``weights`` in proportion, exactly (largest remainder; ties go
    to the earlier position). Zero weights get nothing."""
    whole = sum(weights)
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError("allocation works on non-negative amounts")
    if total == 0 or whole == 0:
        return [0] * len(weights)
    if total > whole:
        raise ValueError("cannot allocate more than the weights add up to")
    exact = [total * w for w in weights]
    shares = [e // whole for e in exact]
    left = total - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] % whole), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares


def unit_discount_amount(unit_amount: int, discount: Discount | None) -> int:
    if discount is None:
        return 0
    return discount_amount(unit_amount, discount)


def line_amount(unit_amount: int, quantity: int, discount: Discount | None) -> tuple[int, int]:
    """A line's per-unit discount (rounded first) and its amount before tax:
    (unit price − unit discount) × quantity."""
    per_unit = unit_discount_amount(unit_amount, discount)
    return per_unit, (unit_amount - per_unit) * quantity


# -- the summary ----------------------------------------------------------------------------
def _group_key(item: Item, start: date) -> tuple:
    r = item.recurring
    return (r.interval, r.payments, r.end_date, start)


def price(
    items: list[Item],
    currency: str,
    *,
    checkout_day: date | None = None,
    order_discounts: tuple[Discount, ...] = (),
) -> Summary:
    """Price the selected items as bought on ``checkout_day`` (the account's local date)."""
    selected = [i for i in items if i.selected]
    if checkout_day is None and any(i.recurring for i in selected):
        raise ValueError("recurring items are priced as of a checkout day (the account's local date)")
    today = checkout_day or date.min

    # Rule 1 and the grouping of recurring items (rule 6).
    starts: dict[str, date] = {}
    group_of: dict[tuple, str] = {}
    base_lines: list[PricedLine] = []
    for item in selected:
        if item.unit_amount <= 0 or item.quantity <= 0:
            raise PricingError("line_items", "unit amount and quantity must be positive")
        per_unit, amount = line_amount(item.unit_amount, item.quantity, item.unit_discount)
        group = None
        due_now = True
        if item.recurring is not None:
            # A start date that has passed bills from checkout: no payment date lies in the past.
            start = max(delayed_start(today, item.recurring.start), today)
            end = item.recurring.end_date
            if end is not None and start > end:  # (the link outlived its offer)
                raise PricingError("line_items", f"{item.name} was sold until {end.isoformat()}, which has passed")
            starts[item.line_item_id] = start
            key = _group_key(item, start)
            group = group_of.setdefault(key, f"group_{len(group_of) + 1}")
            due_now = start <= today
        base_lines.append(
            PricedLine(
                line_item_id=item.line_item_id,
                name=item.name,
                quantity=item.quantity,
                unit_amount=item.unit_amount,
                unit_discount=per_unit,
                amount=amount,
                due_now=due_now,
                recurring_tax=percent_of(amount, item.tax_percent) if item.recurring and item.tax_percent else 0,
                subscription_group=group,
            )
        )

    # Rules 2 and 3: order discounts over what is due now, each on what remains.
    due = [i for i, line in enumerate(base_lines) if line.due_now]
    shares = [0] * len(base_lines)
    applied: list[tuple[str, int]] = []
    for discount in order_discounts:
        remaining = [base_lines[i].amount - shares[i] for i in due]
        taken = discount_amount(sum(remaining), discount)
        for i, part in zip(due, allocate(taken, remaining), strict=True):
            shares[i] += part
        if taken:
            applied.append((discount.name, taken))

    # Rule 4: tax per line on what it is charged now.
    by_id = {item.line_item_id: item for item in selected}
    lines = []
    for i, line in enumerate(base_lines):
        rate = by_id[line.line_item_id].tax_percent
        tax = percent_of(line.amount - shares[i], rate) if line.due_now and rate else 0
        lines.append(replace(line, discount=shares[i], tax=tax))

    # Rule 6: subscription groups and their later payments.
    groups: list[SubscriptionGroup] = []
    future: list[FuturePayment] = []
    for key, name in group_of.items():
        interval, payments, end_date, start = key
        members = [line for line in lines if line.subscription_group == name]
        amount = sum(m.amount for m in members)
        tax = sum(m.recurring_tax for m in members)
        starts_now = start <= today
        group = SubscriptionGroup(
            key=name,
            interval=interval,
            payments=payments,
            end_date=end_date,
            start_date=start,
            starts_now=starts_now,
            line_item_ids=tuple(m.line_item_id for m in members),
            amount=amount + tax,
            tax=tax,
        )
        groups.append(group)
        dates = payment_dates(start, interval, payments=payments, end_date=end_date)
        if starts_now:
            next(dates, None)  # the first payment is the one charged at checkout
        limit = 1 if group.renews_until_cancelled else MAX_LISTED_PAYMENTS
        for n, when in enumerate(dates):
            if n >= limit:
                break
            future.append(FuturePayment(when, group.amount, name))
    future.sort(key=lambda p: (p.date, p.subscription_group))

    subtotal = sum(line.amount for line in lines if line.due_now)
    summary = Summary(
        currency=currency,
        lines=tuple(lines),
        subtotal_due_now=subtotal,
        discounts_due_now=tuple(applied),
        tax_due_now=sum(line.tax for line in lines),
        groups=tuple(groups),
        future_payments=tuple(future),
    )
    if summary.total_due_now > MAX_AMOUNT or any(g.amount > MAX_AMOUNT for g in groups):
        raise PricingError("line_items", f"a payment exceeds the largest amount a processor charges ({MAX_AMOUNT})")
    return summary


# -- one period of a subscription -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PeriodLine:
    name: str
    quantity: int
    unit_amount: int
    unit_discount: int
    #: (unit price − unit discount) × quantity.
    amount: int
    tax: int


@dataclass(frozen=True, slots=True)
class PeriodCharge:
    """What each automatic payment of a subscription charges (no order discounts: they
    apply to what is charged at checkout only, as for links)."""

    lines: tuple[PeriodLine, ...]
    subtotal: int
    tax: int

    @property
    def total(self) -> int:
        return self.subtotal + self.tax


def price_period(items: list[Item]) -> PeriodCharge:
    """Price one period of a subscription's line items (created by the API, replaced, or
    re-priced): per-unit discount rounded first, then tax per line (as `price` does)."""
    lines = []
    for item in items:
        if item.quantity < 1 or item.unit_amount < 0:
            raise PricingError("line_items", "each line has a quantity of at least 1 and a non-negative price")
        unit_discount, amount = line_amount(item.unit_amount, item.quantity, item.unit_discount)
        tax = percent_of(amount, item.tax_percent) if item.tax_percent else 0
        lines.append(PeriodLine(item.name, item.quantity, item.unit_amount, unit_discount, amount, tax))
    charge = PeriodCharge(tuple(lines), sum(x.amount for x in lines), sum(x.tax for x in lines))
    if charge.total > MAX_AMOUNT:
        raise PricingError("line_items", f"a payment exceeds the largest amount a processor charges ({MAX_AMOUNT})")
    return charge
