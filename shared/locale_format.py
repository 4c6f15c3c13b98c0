"""Locale formats of documents (invoices, quotes): money, dates and postal addresses.

Services that render documents for buyers use these instead of formatting by hand, so an
invoice reads "1 234,50 kr" and "15 januari 2027" in Swedish and "$1,234.50" and
"January 15, 2027" in American English. Pure functions over babel's CLDR data.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date

from .money import Money, format_money

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


def money(amount: int, currency: str, locale: str) -> str:
    """``1234_50`` SEK in sv_SE -> ``1 234,50 kr`` (no-break spaces, as CLDR writes it)."""
    return format_money(Money(int(amount), currency), locale)


def day(value: date, locale: str, style: str = "long") -> str:
    """A calendar date: ``15 januari 2027`` (sv_SE), ``January 15, 2027`` (en_US)."""
    return format_date(value, style, locale=locale)


def territory(locale: str) -> str | None:
    return Locale.parse(locale).territory


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
        names = Locale.parse(locale).territories
        lines.append(names.get(country, country))
    return [line for line in lines if line]
