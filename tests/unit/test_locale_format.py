"""`shared.locale_format`: the compiled money format is babel's, to the character, for
every ISO 4217 currency with minor units and the locales we write in (and a few with
other patterns: suffix symbols, Indian grouping, apostrophe groups); dates and
percentages follow CLDR."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iso4217 import Currency

from shared import locale_format as fmt
from shared.money import Money, format_money

CURRENCIES = sorted(c.code for c in Currency if c.exponent is not None)
LOCALES = ["en", "sv", "en_US", "sv_SE", "en_GB", "de_DE", "de_CH", "fr_FR", "nl_NL", "en_IN", "ja_JP", "ar_EG"]


@settings(max_examples=400, deadline=None)
@given(
    amount=st.integers(min_value=-(10**15), max_value=10**15),
    currency=st.sampled_from(CURRENCIES),
    locale=st.sampled_from(LOCALES),
)
def test_money_is_babels_format(amount, currency, locale):
    assert fmt.money(amount, currency, locale) == format_money(Money(amount, currency), locale)


@pytest.mark.parametrize("currency", CURRENCIES)
def test_every_currency_in_our_languages(currency):
    for locale in ("en", "sv", "en_US", "sv_SE"):
        for amount in (0, 1, 99, 100, 123450, 100000000, -5):
            assert fmt.money(amount, currency, locale) == format_money(Money(amount, currency), locale)


def test_examples():
    nbsp = "\xa0"
    assert fmt.money(123450, "SEK", "sv_SE") == f"1{nbsp}234,50{nbsp}kr"
    assert fmt.money(123450, "USD", "en") == "$1,234.50"
    assert fmt.money(123456, "JPY", "en") == "¥123,456"
    assert fmt.money(1234, "KWD", "en") == "KWD1.234"  # babel applies no currency spacing
    assert fmt.money(-2500, "USD", "en") == "-$25.00"
    with pytest.raises(TypeError):
        fmt.money(12.5, "USD", "en")  # type: ignore[arg-type]


def test_dates_and_percentages():
    assert fmt.day(date(2027, 1, 15), "sv_SE") == "15 januari 2027"
    assert fmt.day(date(2027, 1, 15), "en") == "January 15, 2027"
    assert fmt.day(date(2027, 4, 9), "sv", "medium") == "9 apr. 2027"
    late = datetime(2027, 3, 1, 23, 30, tzinfo=UTC)
    assert fmt.local_day(late, "Europe/Stockholm", "sv") == "2 mars 2027"
    assert fmt.local_day(late, "America/New_York", "en") == "March 1, 2027"
    assert fmt.percent("25", "sv") == "25\xa0%"
    assert fmt.percent("8.875", "en") == "8.875%"
