"""shared.money and shared.currency: ISO 4217 exponents, Money rules, processor refusals,
minimum charges and locale formatting (PRODUCT §1 "Money", "Currencies and the processor")."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import iso4217
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.currency import (
    MINOR_UNIT_MISMATCH,
    NOT_OFFERED,
    STRIPE_MINIMUM_CHARGE,
    minimum_charge,
    processor_refusal,
)
from shared.money import Money, UnknownCurrency, exponent, format_money, is_known_currency, normalize_currency

NBSP = "\xa0"


def iso_table() -> dict[str, int | None]:
    """Minor units straight from the ISO 4217 table the package ships (not a hand list)."""
    root = ET.parse(Path(iso4217.__file__).with_name("table.xml")).getroot()
    table: dict[str, int | None] = {}
    for entry in root.iter("CcyNtry"):
        code, units = entry.findtext("Ccy"), entry.findtext("CcyMnrUnts")
        if code:
            table[code] = int(units) if units and units.isdigit() else None
    return table


# -- exponents ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("SEK", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("ISK", 0),
        ("HUF", 2),
        ("KWD", 3),
        ("BHD", 3),
        ("JOD", 3),
        ("TND", 3),
        ("CLF", 4),
        ("UYW", 4),
    ],
)
def test_exponent_of_well_known_currencies(code, expected):
    assert exponent(code) == expected
    assert exponent(code.lower()) == expected


def test_every_exponent_matches_the_iso_4217_table():
    table = iso_table()
    assert len(table) > 150
    for code, units in table.items():
        if units is None:  # funds, metals, "no currency": no minor unit, refused
            with pytest.raises(UnknownCurrency):
                exponent(code)
        else:
            assert exponent(code) == units, code


@pytest.mark.parametrize("code", ["XAU", "XXX", "XDR", "XTS"])
def test_currencies_without_a_minor_unit_have_no_exponent(code):
    with pytest.raises(UnknownCurrency):
        exponent(code)


@pytest.mark.parametrize("code", ["usd", "Usd", "USD", "jpy"])
def test_normalize_accepts_any_case(code):
    assert normalize_currency(code) == code.upper()


@pytest.mark.parametrize("code", ["", "US", "USDD", "ABC", "QQQ", "12$", "U1D", "€UR", None, 840])
def test_unknown_currency_codes_are_refused(code):
    with pytest.raises(UnknownCurrency):
        normalize_currency(code)
    assert not is_known_currency(code)


# -- Money -----------------------------------------------------------------------------------
def test_money_normalizes_the_currency_and_compares_by_value():
    assert Money(100, "usd") == Money(100, "USD")
    assert Money(100, "usd").currency == "USD"
    assert hash(Money(5, "eur")) == hash(Money(5, "EUR"))
    assert Money(1, "USD") != Money(1, "EUR")


@pytest.mark.parametrize("amount", [1.5, 1.0, Decimal("1"), "100", True, False, None])
def test_money_amount_must_be_an_int(amount):
    with pytest.raises(TypeError):
        Money(amount, "USD")


def test_money_refuses_unknown_currency():
    with pytest.raises(UnknownCurrency):
        Money(1, "ZZZ")


def test_money_arithmetic_and_comparisons():
    a, b = Money(1250, "USD"), Money(750, "USD")
    assert a + b == Money(2000, "USD")
    assert a - b == Money(500, "USD")
    assert b - a == Money(-500, "USD")
    assert b < a and b <= a and a <= a and a > b and a >= b
    assert not (a < a)
    assert sum([a, b], Money(0, "USD")) == Money(2000, "USD")


@pytest.mark.parametrize("op", ["add", "sub", "lt", "le"])
def test_money_refuses_mixing_currencies(op):
    a, b = Money(1, "USD"), Money(1, "EUR")
    with pytest.raises(ValueError, match="currency mismatch"):
        getattr(a, f"__{op}__")(b)


@pytest.mark.parametrize("other", [1, 1.0, Decimal("1"), "1"])
def test_money_only_combines_with_money(other):
    with pytest.raises(TypeError):
        Money(1, "USD") + other
    with pytest.raises(TypeError):
        Money(1, "USD") - other


def test_money_is_immutable():
    m = Money(1, "USD")
    with pytest.raises(AttributeError):
        m.amount = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("money", "expected"),
    [
        (Money(123456, "USD"), Decimal("1234.56")),
        (Money(123456, "JPY"), Decimal("123456")),
        (Money(123456, "KWD"), Decimal("123.456")),
        (Money(5, "USD"), Decimal("0.05")),
        (Money(-1, "CLF"), Decimal("-0.0001")),
    ],
)
def test_to_decimal_is_exact(money, expected):
    assert money.to_decimal() == expected
    assert money.as_dict() == {"amount": money.amount, "currency": money.currency}


@settings(deadline=None)  # the CPU is shared: time per example is noise
@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.sampled_from(["USD", "JPY", "KWD", "EUR", "CLF"]),
)
def test_money_addition_is_integer_addition(a, b, code):
    total = Money(a, code) + Money(b, code)
    assert total == Money(a + b, code)
    assert type(total.amount) is int
    assert (total - Money(b, code)) == Money(a, code)
    assert total.to_decimal() == Money(a, code).to_decimal() + Money(b, code).to_decimal()


# -- formatting ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("money", "locale", "expected"),
    [
        (Money(123456, "USD"), "en", "$1,234.56"),
        (Money(5, "USD"), "en", "$0.05"),
        (Money(2500, "USD"), "en", "$25.00"),
        (Money(123456, "JPY"), "en", "¥123,456"),
        (Money(123456, "KWD"), "en", "KWD123.456"),
        (Money(123456, "USD"), "sv", f"1{NBSP}234,56{NBSP}US$"),
        (Money(123456, "SEK"), "sv", f"1{NBSP}234,56{NBSP}kr"),
        (Money(100, "JPY"), "sv", f"100{NBSP}JPY"),
    ],
)
def test_format_money_by_locale(money, locale, expected):
    assert format_money(money, locale) == expected


def test_format_uses_the_iso_number_of_decimals_even_where_cldr_differs():
    # CLDR shows HUF without decimals in some locales; our amounts are ISO minor units.
    assert format_money(Money(17500, "HUF"), "en").endswith("175.00")
    assert format_money(Money(1, "CLF"), "en").endswith("0.0001")


# -- processor refusals ----------------------------------------------------------------------
SPEC_MISMATCH = "AFN ALL AMD COP CRC HUF IDR ISK LBP MMK MRO MUR PKR RSD SOS TZS UZS YER".split()
SPEC_NOT_OFFERED = "BHD BYR CLF EEK ERN GHS IQD IRR JOD KWD LTL LVL LYD OMR SDG SYP TND VEF ZMK".split()


def test_refusal_lists_are_exactly_the_product_spec():
    assert set(SPEC_MISMATCH) == MINOR_UNIT_MISMATCH
    assert set(SPEC_NOT_OFFERED) == NOT_OFFERED
    assert not (MINOR_UNIT_MISMATCH & NOT_OFFERED)


@pytest.mark.parametrize("code", SPEC_MISMATCH)
def test_minor_unit_mismatch_refusal_names_currency_and_reason(code):
    for spelled in (code, code.lower()):
        refusal = processor_refusal(spelled)
        assert refusal is not None and refusal.currency == code
        assert code in refusal.message
        assert "minor unit" in refusal.message


@pytest.mark.parametrize("code", SPEC_NOT_OFFERED)
def test_not_offered_refusal_names_currency_and_reason(code):
    refusal = processor_refusal(code.lower())
    assert refusal is not None and refusal.currency == code
    assert code in refusal.message
    assert "does not offer" in refusal.message


@pytest.mark.parametrize("code", ["ABC", "QQQ", "XAU", "12$", ""])
def test_unknown_currencies_are_refused_with_a_reason(code):
    refusal = processor_refusal(code)
    assert refusal is not None
    assert "ISO 4217" in refusal.message


@pytest.mark.parametrize("code", ["USD", "usd", "EUR", "SEK", "JPY", "GBP", "CLP", "KRW", "CHF"])
def test_ordinary_currencies_are_accepted(code):
    assert processor_refusal(code) is None


# -- minimum charges -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "minimum"),
    [
        ("USD", 50),
        ("usd", 50),
        ("EUR", 50),
        ("GBP", 30),
        ("JPY", 50),
        ("SEK", 300),
        ("CZK", 1500),
        ("HKD", 400),
        ("MXN", 1000),
        ("AED", 200),
    ],
)
def test_stripe_published_minimums(code, minimum):
    assert minimum_charge(code) == minimum


def test_unlisted_currencies_need_half_a_major_unit():
    assert "ZAR" not in STRIPE_MINIMUM_CHARGE and "CLP" not in STRIPE_MINIMUM_CHARGE
    assert minimum_charge("ZAR") == 50  # 0.50 with two decimals
    assert minimum_charge("CLP") == 50  # no decimals: at least 50
    assert minimum_charge("CLF") == 5000  # four decimals: 0.5000


def test_every_listed_minimum_is_a_positive_int():
    for code, minimum in STRIPE_MINIMUM_CHARGE.items():
        assert type(minimum) is int and minimum > 0
        if is_known_currency(code):  # a retired code (BGN since 2026) is simply never used
            assert minimum_charge(code) == minimum


def test_minimum_charge_of_an_unknown_currency_raises():
    with pytest.raises(UnknownCurrency):
        minimum_charge("QQQ")
