"""Which currencies a processor accepts and the smallest amount it will charge.

PRODUCT §1: with Stripe (and the Stripe-compatible test processor) two lists of
currencies are refused, each for its own reason, and whatever is charged at checkout
must reach the processor's minimum for the currency.
"""

from __future__ import annotations

from dataclasses import dataclass

from .money import UnknownCurrency, exponent, normalize_currency

#: Stripe and ISO 4217 define these currencies' minor units differently.
MINOR_UNIT_MISMATCH = frozenset("AFN ALL AMD COP CRC HUF IDR ISK LBP MMK MRO MUR PKR RSD SOS TZS UZS YER".split())
#: Stripe does not offer these at all.
NOT_OFFERED = frozenset("BHD BYR CLF EEK ERN GHS IQD IRR JOD KWD LTL LVL LYD OMR SDG SYP TND VEF ZMK".split())

#: Stripe's published minimum charge amounts, in minor units of each currency.
#: Currencies it does not list must reach the equivalent of USD 0.50; without exchange
#: rates we use 0.50 of the currency's major unit (scaled by its exponent) and let the
#: processor's own check refuse anything smaller at charge time.
STRIPE_MINIMUM_CHARGE = {
    "USD": 50,
    "AED": 200,
    "AUD": 50,
    "BGN": 100,
    "BRL": 50,
    "CAD": 50,
    "CHF": 50,
    "CZK": 1500,
    "DKK": 250,
    "EUR": 50,
    "GBP": 30,
    "HKD": 400,
    "HUF": 17500,
    "INR": 50,
    "JPY": 50,
    "MXN": 1000,
    "MYR": 200,
    "NOK": 300,
    "NZD": 50,
    "PLN": 200,
    "RON": 200,
    "SEK": 300,
    "SGD": 50,
    "THB": 1000,
}


@dataclass(frozen=True)
class CurrencyRefusal:
    currency: str
    reason: str

    @property
    def message(self) -> str:
        return f"{self.currency} cannot be used with the payment processor: {self.reason}"


def processor_refusal(code: str) -> CurrencyRefusal | None:
    """Why the processor refuses this currency, or None when it is accepted."""
    upper = str(code).upper()
    if upper in MINOR_UNIT_MISMATCH:
        return CurrencyRefusal(
            upper,
            "the processor and ISO 4217 define its minor unit differently, so amounts would be charged wrongly",
        )
    if upper in NOT_OFFERED:
        return CurrencyRefusal(upper, "the processor does not offer this currency")
    try:
        normalize_currency(upper)
        exponent(upper)
    except UnknownCurrency:
        return CurrencyRefusal(upper, "it is not an ISO 4217 currency code")
    return None


def minimum_charge(code: str) -> int:
    """Smallest amount (minor units) the processor charges in this currency."""
    upper = normalize_currency(code)
    if upper in STRIPE_MINIMUM_CHARGE:
        return STRIPE_MINIMUM_CHARGE[upper]
    digits = exponent(upper)
    return 50 * 10 ** (digits - 2) if digits >= 2 else 50
