"""Locale formats of documents and e-mails (invoices, quotes, receipts): money, dates,
percentages and postal addresses.

Services that render documents for buyers use these instead of formatting by hand, so an
invoice reads "1 234,50 kr" and "15 januari 2027" in Swedish and "$1,234.50" and
"January 15, 2027" in American English. Pure functions over babel's CLDR data.

Money and dates are formatted from patterns compiled once per (locale, currency) and
(locale, style): babel parses the locale and the pattern on every call (≈ 120 µs per
amount), which would dominate rendering an e-mail (TARGETS P6). The compiled money format
is babel's own pattern, symbols and grouping applied to the integer minor units — no
Decimal or float on the way; ``tests/unit/test_locale_format.py`` checks it against
`shared.money.format_money` (babel) for every currency and several locales.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import get_date_format
from babel.numbers import (
    format_percent,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
    parse_pattern,
)

from .money import exponent

#: The default locale (language + territory) of each supported language.
DEFAULT_LOCALES = {"en": "en_US", "sv": "sv_SE"}
#: Territories whose postal format puts the postal code before the city ("114 55 Stockholm").
_CODE_BEFORE_CITY = frozenset(
    {"SE", "DE", "AT", "CH", "FR", "IT", "ES", "NL", "BE", "DK", "NO", "FI", "PL", "PT", "CZ", "IS"}
)


@lru_cache(maxsize=64)
def normalize_locale(value: str | None, language: str = "en") -> str:
    """A babel-parsable locale (``sv-SE`` and ``sv_SE`` alike); the language's default
    when ``value`` is empty or unknown."""
    fallback = DEFAULT_LOCALES.get(language, "en_US")
    if not value:
        return fallback
    try:
        parsed = Locale.parse(value.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return fallback
    return str(parsed)


@lru_cache(maxsize=64)
def _locale(locale: str) -> Locale:
    return Locale.parse(locale)


@dataclass(frozen=True, slots=True)
class _MoneyFormat:
    """A locale's standard currency pattern for one currency, ready to apply."""

    prefix: tuple[str, str]  # (positive, negative)
    suffix: tuple[str, str]
    group: str
    decimal: str
    grouping: tuple[int, int]
    int_min: int
    digits: int

    def apply(self, amount: int) -> str:
        negative = amount < 0
        major, minor = divmod(-amount if negative else amount, 10**self.digits)
        whole = str(major).rjust(self.int_min, "0")
        size, grouped = self.grouping[0], ""
        while len(whole) > size:
            grouped = self.group + whole[-size:] + grouped
            whole = whole[:-size]
            size = self.grouping[1]
        number = whole + grouped
        if self.digits:
            number += self.decimal + str(minor).rjust(self.digits, "0")
        return self.prefix[negative] + number + self.suffix[negative]


def _affix(text: str, currency: str, loc: Locale) -> str:
    text = text.replace("¤¤", currency).replace("¤", get_currency_symbol(currency, loc))
    return re.sub(r"'([^']*)'", lambda m: m.group(1) or "'", text)


@lru_cache(maxsize=512)
def _money_format(currency: str, locale: str) -> _MoneyFormat:
    loc = _locale(locale)
    pattern = parse_pattern(loc.currency_formats["standard"].pattern)
    if pattern.exp_prec or pattern.scale or "@" in pattern.pattern or "¤¤¤" in pattern.pattern:
        raise ValueError(f"unsupported currency pattern {pattern.pattern!r} in {locale}")
    return _MoneyFormat(
        prefix=(_affix(pattern.prefix[0], currency, loc), _affix(pattern.prefix[1], currency, loc)),
        suffix=(_affix(pattern.suffix[0], currency, loc), _affix(pattern.suffix[1], currency, loc)),
        group=get_group_symbol(loc),
        decimal=get_decimal_symbol(loc),
        grouping=pattern.grouping,
        int_min=pattern.int_prec[0],
        digits=exponent(currency),
    )


def money(amount: int, currency: str, locale: str) -> str:
    """``1234_50`` SEK in sv_SE -> ``1 234,50 kr`` (no-break spaces, as CLDR writes it);
    the ISO 4217 number of decimals (``¥123,456``, ``KWD 1.234``)."""
    if type(amount) is not int:
        raise TypeError("money amounts are integer minor units")
    return _money_format(currency.upper(), locale).apply(amount)


@lru_cache(maxsize=64)
def _date_pattern(locale: str, style: str):
    return get_date_format(style, locale=_locale(locale))


def day(value: date, locale: str, style: str = "long") -> str:
    """A calendar date: ``15 januari 2027`` (sv_SE), ``January 15, 2027`` (en_US)."""
    return _date_pattern(locale, style).apply(value, _locale(locale))


def local_day(instant: datetime, time_zone: str, locale: str, style: str = "long") -> str:
    """The calendar date of an instant in a time zone (the account's): 23:30 UTC on
    1 March is ``2 mars 2026`` in Stockholm."""
    return day(instant.astimezone(ZoneInfo(time_zone)).date(), locale, style)


@lru_cache(maxsize=1024)
def percent(percentage: str, locale: str) -> str:
    """A tax rate given as a decimal string of percent: ``"8.875"`` -> ``8.875%`` (en),
    ``25 %`` (sv, with a no-break space). Cached: an account has a few rates."""
    return format_percent(Decimal(percentage) / 100, locale=_locale(locale), decimal_quantization=False)


def territory(locale: str) -> str | None:
    return _locale(locale).territory


def address_lines(address: dict | None, locale: str) -> list[str]:
    """A postal address as printed lines in the locale's order: postal code before the
    city in most of Europe, ``City, STATE ZIP`` in the United States and elsewhere."""
    if not address:
        return []
    get = lambda key: (address.get(key) or "").strip()  # noqa: E731
    lines = [get("line1"), get("line2")]
    city, state, code = get("city"), get("state"), get("postal_code")
    country = get("country").upper()
    if (country or territory(locale) or "") in _CODE_BEFORE_CITY:
        lines.append(" ".join(p for p in (code, city) if p))
        lines.append(state)
    else:
        lines.append(", ".join(p for p in (city, " ".join(q for q in (state, code) if q)) if p))
    if country:
        names = _locale(locale).territories
        lines.append(names.get(country, country))
    return [line for line in lines if line]
