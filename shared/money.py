"""Money: an integer count of the currency's minor unit plus an ISO 4217 code.

Exponents come from the ISO 4217 data shipped by the ``iso4217`` package, never from a
hand-written list. There are no floats here; all arithmetic on amounts beyond adding
and comparing lives in ``shared.pricing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from iso4217 import Currency as _IsoCurrency


class UnknownCurrency(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(f"{code!r} is not an ISO 4217 currency code")
        self.code = code


@lru_cache(maxsize=512)
def _iso(code: str) -> _IsoCurrency:
    try:
        return _IsoCurrency(code.upper())
    except (ValueError, KeyError):
        raise UnknownCurrency(code) from None


def normalize_currency(code: str) -> str:
    """Upper-case ISO 4217 code (input may be any case); raises `UnknownCurrency`."""
    if not isinstance(code, str) or len(code) != 3 or not code.isalpha():
        raise UnknownCurrency(str(code))
    return _iso(code).code


def is_known_currency(code: str) -> bool:
    try:
        normalize_currency(code)
    except UnknownCurrency:
        return False
    return True


def exponent(code: str) -> int:
    """Number of minor-unit digits (USD 2, JPY 0, KWD 3). Funds/metals have none: refused."""
    iso = _iso(code)
    if iso.exponent is None:
        raise UnknownCurrency(code)
    return iso.exponent


@dataclass(frozen=True, slots=True, order=False)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount) is not int:  # bool is an int subclass: refuse it too
            raise TypeError("Money.amount must be an int count of minor units")
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError("can only combine Money with Money")
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def to_decimal(self) -> Decimal:
        """The amount in major units, exactly (for display and formatting only)."""
        return Decimal(self.amount).scaleb(-exponent(self.currency))

    def as_dict(self) -> dict:
        return {"amount": self.amount, "currency": self.currency}


def format_money(money: Money, locale: str = "en") -> str:
    """Locale-formatted amount with the ISO 4217 number of decimals.

    e.g. ``$1,234.56`` (en), ``1 234,56 US$`` (sv), ``¥123,456`` (en, JPY).
    """
    from babel import Locale
    from babel.numbers import parse_pattern

    loc = Locale.parse(locale)
    pattern = parse_pattern(loc.currency_formats["standard"].pattern)
    digits = exponent(money.currency)
    pattern.frac_prec = (digits, digits)
    return pattern.apply(money.to_decimal(), loc, currency=money.currency, currency_digits=False)
