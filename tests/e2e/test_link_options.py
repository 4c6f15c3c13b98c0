"""Payment-link line items and their options (PRODUCT §2, §3.1, §4.3; API.md "Payment
links"): what is stored for each option, every semantic refusal (field and message), and
the summary a checkout session opened from each kind of link shows.

`tests/e2e/test_bad_input.py` covers the generic refusals (types, lengths, missing
fields, mass assignment); this module covers what the options *mean*. The shop's test
clock stands at 2031-01-15 12:00 UTC, so every billing date below is exact. Every request
goes through `CheckedApi`: no 5xx, whatever the input.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.client import Buyer
from tests.support.problems import CheckedApi, assert_problem, error_message

pytestmark = pytest.mark.e2e

TODAY = "2031-01-15"
NOW = f"{TODAY}T12:00:00Z"
INTERVALS = (
    "weekly",
    "biweekly",
    "monthly",
    "quarterly",
    "semiannually",
    "annually",
    "every_2_years",
    "every_3_years",
    "every_4_years",
    "every_5_years",
)
#: interval -> the dates of the 2nd and 3rd payment of a term bought on TODAY
LATER_DATES = {
    "weekly": ("2031-01-22", "2031-01-29"),
    "biweekly": ("2031-01-29", "2031-02-12"),
    "monthly": ("2031-02-15", "2031-03-15"),
    "quarterly": ("2031-04-15", "2031-07-15"),
    "semiannually": ("2031-07-15", "2032-01-15"),
    "annually": ("2032-01-15", "2033-01-15"),
    "every_2_years": ("2033-01-15", "2035-01-15"),
    "every_3_years": ("2034-01-15", "2037-01-15"),
    "every_4_years": ("2035-01-15", "2039-01-15"),
    "every_5_years": ("2036-01-15", "2041-01-15"),
}


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(scope="module")
async def shop(session, stack) -> CheckedApi:
    """One account for the module: clock at NOW, USD, EUR, GBP, JPY and SEK enabled."""
    created = stack.create_account(f"Link options shop {uuid.uuid4().hex[:6]}", "USD", True)
    api = CheckedApi(session, stack.config.base_url, created["api_key"])
    advanced = await api.post("/v1/test_clock/advance", {"to": NOW})
    assert advanced.status == 200, advanced.body
    enabled = await api.patch("/v1/account", {"currencies": ["USD", "EUR", "GBP", "JPY", "SEK"]})
    assert enabled.status == 200, enabled.body
    return api


@pytest.fixture
def buyer(session, stack) -> Buyer:
    checkout = Buyer(session, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")
    checkout.api = CheckedApi(session, stack.config.base_url)
    return checkout


# -- helpers -------------------------------------------------------------------------------------
def link_body(*items: dict, currency: str = "USD", **settings: Any) -> dict:
    return {"name": "Options link", "currency": currency, "line_items": list(items), **settings}


async def create(api: CheckedApi, body: dict) -> dict:
    created = await api.post("/v1/payment_links", body)
    assert created.status == 201, created.body
    return created.body


async def newest_link(api: CheckedApi) -> list[str]:
    listed = await api.get("/v1/payment_links?limit=1")
    assert listed.status == 200, listed.body
    return [link["id"] for link in listed.body["data"]]


async def refused(api: CheckedApi, body: dict, field: str, *words: str, status: int = 422) -> str:
    """POST the link: refused with ``status`` naming ``field``, the message containing
    every one of ``words``, and nothing stored. Returns that field's message."""
    before = await newest_link(api)
    problem = assert_problem(await api.post("/v1/payment_links", body), status, field)
    message = error_message(problem, field)
    for word in words:
        assert word in message, f"{word!r} not in the message for {field}: {message!r} ({problem})"
    assert await newest_link(api) == before, "a refused link was stored"
    return message


async def summary_of(buyer: Buyer, link: dict) -> dict:
    """The summary a new session of the link shows before the buyer changes anything."""
    await buyer.open(link["url"])
    view = await buyer.view()
    assert view.status == 200, view.body
    assert view.body["status"] == "open"
    return view.body["summary"]


def money_view(summary: dict) -> dict:
    """The API.md part of a summary."""
    return {
        key: summary[key]
        for key in ("subtotal_due_now", "discounts_due_now", "tax_due_now", "total_due_now", "future_payments", "total")
    }


def payments(*pairs: tuple[str, int], group: str = "group_1") -> list[dict]:
    return [{"date": day, "amount": amount, "subscription_group": group} for day, amount in pairs]


async def tax_rate(api: CheckedApi, percentage: str, name: str = "Sales tax") -> dict:
    created = await api.post("/v1/tax_rates", {"name": name, "percentage": percentage})
    assert created.status == 201, created.body
    return created.body


# -- custom and library items -----------------------------------------------------------------------
async def test_a_custom_item_is_stored_exactly_as_given(shop):
    link = await create(
        shop,
        link_body({"name": "Roasting class", "description": "Two hours, Saturday", "quantity": 2, "unit_amount": 4500}),
    )
    (item,) = link["line_items"]
    assert item["id"].startswith("li_")
    assert {k: v for k, v in item.items() if k != "id"} == {
        "product_id": None,
        "name": "Roasting class",
        "description": "Two hours, Saturday",
        "quantity": 2,
        "unit_amount": 4500,
        "optional": False,
        "adjustable_quantity": None,
        "custom_amount": None,
        "recurring": None,
        "unit_discount": None,
        "tax_rate_id": None,
        "tax_rate": None,
    }
    assert (await shop.get(f"/v1/payment_links/{link['id']}")).body["line_items"] == link["line_items"]


async def test_a_library_item_copies_the_products_name_description_price_and_frequency(shop, buyer):
    one_time = (
        await shop.post(
            "/v1/products",
            {"name": "Beans, 1 kg", "description": "Washed", "sku": "B1", "unit_amount": 2450, "currency": "USD"},
        )
    ).body
    monthly = (
        await shop.post(
            "/v1/products",
            {"name": "Beans club", "unit_amount": 1900, "currency": "USD", "recurring": {"interval": "quarterly"}},
        )
    ).body
    link = await create(shop, link_body({"product_id": one_time["id"], "quantity": 2}, {"product_id": monthly["id"]}))
    first, second = link["line_items"]
    assert (first["product_id"], first["name"], first["description"], first["unit_amount"], first["quantity"]) == (
        one_time["id"], "Beans, 1 kg", "Washed", 2450, 2,
    )  # fmt: skip
    assert first["recurring"] is None
    assert (second["product_id"], second["name"], second["description"], second["unit_amount"]) == (
        monthly["id"], "Beans club", None, 1900,
    )  # fmt: skip
    assert second["recurring"] == {"interval": "quarterly", "payments": None, "end_date": None, "start": None}
    summary = await summary_of(buyer, link)
    assert summary["total_due_now"] == 2 * 2450 + 1900
    assert summary["future_payments"] == payments(("2031-04-15", 1900)) and summary["total"] is None

    # the merchant's own values win over the product's; `recurring: null` sells it once
    overridden = await create(
        shop,
        link_body(
            {"product_id": monthly["id"], "name": "Club, first box", "unit_amount": 2500, "recurring": None},
            {"product_id": monthly["id"], "recurring": {"interval": "monthly", "payments": 6}},
        ),
    )
    first, second = overridden["line_items"]
    assert (first["name"], first["unit_amount"], first["recurring"]) == ("Club, first box", 2500, None)
    assert second["recurring"] == {"interval": "monthly", "payments": 6, "end_date": None, "start": None}
    assert second["name"] == "Beans club" and second["unit_amount"] == 1900


async def test_library_item_refusals(shop, stack, session):
    euro = (await shop.post("/v1/products", {"name": "Euro beans", "unit_amount": 900, "currency": "EUR"})).body
    await refused(shop, link_body({"product_id": euro["id"]}), "line_items[0].product_id", "EUR", "USD")
    await refused(shop, link_body({"product_id": "prod_doesnotexist"}), "line_items[0].product_id", "no such product")
    gone = (await shop.post("/v1/products", {"name": "Gone", "unit_amount": 900, "currency": "USD"})).body
    assert (await shop.request("DELETE", f"/v1/products/{gone['id']}")).status == 200
    await refused(shop, link_body({"product_id": gone["id"]}), "line_items[0].product_id", "no such product")
    other = stack.create_account(f"Other shop {uuid.uuid4().hex[:6]}", "USD", True)
    other_api = CheckedApi(session, stack.config.base_url, other["api_key"])
    theirs = (await other_api.post("/v1/products", {"name": "Theirs", "unit_amount": 900, "currency": "USD"})).body
    await refused(shop, link_body({"product_id": theirs["id"]}), "line_items[0].product_id", "no such product")
    # neither a product nor a name: the item has no name
    await refused(shop, link_body({"unit_amount": 900}), "line_items[0].name", "required")


async def test_a_line_items_tax_rate_must_be_an_active_rate_of_the_account(shop, stack, session):
    inactive = (await shop.post("/v1/tax_rates", {"name": "Old VAT", "percentage": "20", "active": False})).body
    other = stack.create_account(f"Other shop {uuid.uuid4().hex[:6]}", "USD", True)
    other_api = CheckedApi(session, stack.config.base_url, other["api_key"])
    theirs = (await other_api.post("/v1/tax_rates", {"name": "Their VAT", "percentage": "20"})).body
    for rate_id in (inactive["id"], theirs["id"], "txr_nope"):
        await refused(
            shop, link_body({"name": "Mug", "unit_amount": 900, "tax_rate_id": rate_id}), "line_items[0].tax_rate_id",
            "no such (active) tax rate",
        )  # fmt: skip


# -- quantity and price ---------------------------------------------------------------------------------
async def test_a_unit_discount_may_not_make_an_item_free(shop):
    await refused(
        shop,
        link_body({"name": "Mug", "unit_amount": 900, "unit_discount": {"amount_off": 900}}),
        "line_items[0].unit_discount.amount_off",
        "less than the unit price",
    )
    await refused(
        shop,
        link_body({"name": "Mug", "unit_amount": 900, "unit_discount": {"percent_off": "100"}}),
        "line_items[0].unit_discount.percent_off",
        "less than 100",
    )
    # 99.5 % of 1.00 rounds (half-up, per unit) to the whole price: a zero-priced item
    await refused(
        shop,
        link_body(
            {"name": "Mug", "unit_amount": 100, "unit_discount": {"percent_off": "99.5"}},
            {"name": "Pot", "unit_amount": 5000},
        ),
        "line_items[0].unit_discount.percent_off",
        "zero",
    )
    await refused(
        shop,
        link_body({"name": "Mug", "unit_amount": 900, "unit_discount": {"percent_off": "10", "amount_off": 5}}),
        "line_items[0].unit_discount",
        "either percent_off or amount_off",
    )
    await refused(
        shop,
        link_body({"name": "Mug", "unit_amount": 900, "unit_discount": {"percent_off": "12.125"}}),
        "line_items[0].unit_discount.percent_off",
        "2 decimals",
    )


# -- optional items ---------------------------------------------------------------------------------------
async def test_an_optional_item_is_offered_but_not_selected(shop, buyer):
    link = await create(
        shop,
        link_body(
            {"name": "Beans", "unit_amount": 2000},
            {
                "name": "Grinder",
                "unit_amount": 6000,
                "optional": True,
                "adjustable_quantity": {"minimum": 1, "maximum": 2},
            },
        ),
    )
    beans, grinder = link["line_items"]
    assert beans["optional"] is False and grinder["optional"] is True
    assert grinder["adjustable_quantity"] == {"minimum": 1, "maximum": 2}
    summary = await summary_of(buyer, link)
    assert summary["subtotal_due_now"] == 2000 and summary["total"] == 2000
    assert [line["line_item_id"] for line in summary["lines"]] == [beans["id"]]
    view = (await buyer.view()).body
    assert [(li["id"], li["optional"]) for li in view["line_items"]] == [(beans["id"], False), (grinder["id"], True)]
    chosen = await buyer.submit(
        {"email": "optional@example.com"}, items=[{"line_item_id": grinder["id"], "selected": True, "quantity": 2}]
    )
    assert chosen.status == 200, chosen.body
    assert chosen.body["summary"]["total_due_now"] == 2000 + 2 * 6000


async def test_a_link_needs_at_least_one_item_that_is_not_optional(shop):
    await refused(
        shop,
        link_body(
            {"name": "Beans", "unit_amount": 2000, "optional": True},
            {"name": "Mug", "unit_amount": 900, "optional": True},
        ),
        "line_items",
        "optional",
    )


# -- buyer-editable quantity ------------------------------------------------------------------------------
async def test_an_adjustable_quantity_is_bounded_for_the_buyer(shop, buyer):
    link = await create(
        shop,
        link_body(
            {"name": "Tickets", "quantity": 2, "unit_amount": 1500, "adjustable_quantity": {"minimum": 1, "maximum": 5}}
        ),
    )
    (item,) = link["line_items"]
    assert (item["quantity"], item["adjustable_quantity"]) == (2, {"minimum": 1, "maximum": 5})
    assert (await summary_of(buyer, link))["total_due_now"] == 3000
    view = (await buyer.view()).body
    assert view["line_items"][0]["adjustable_quantity"] == {"minimum": 1, "maximum": 5}
    for quantity, total in ((1, 1500), (5, 7500)):
        chosen = await buyer.submit(
            {"email": "q@example.com"}, items=[{"line_item_id": item["id"], "quantity": quantity}]
        )
        assert chosen.status == 200, chosen.body
        assert chosen.body["summary"]["total_due_now"] == total
    for quantity in (6, 10_000):
        problem = assert_problem(
            await buyer.submit({"email": "q@example.com"}, items=[{"line_item_id": item["id"], "quantity": quantity}]),
            422,
            "items[0].quantity",
        )
        assert "between 1 and 5" in error_message(problem, "items[0].quantity")


@pytest.mark.parametrize(
    ("case", "item", "field", "words"),
    [
        (
            "default_below_minimum",
            {"quantity": 1, "adjustable_quantity": {"minimum": 2, "maximum": 5}},
            "line_items[0].quantity",
            ("within", "minimum and maximum"),
        ),
        (
            "default_above_maximum",
            {"quantity": 6, "adjustable_quantity": {"minimum": 1, "maximum": 5}},
            "line_items[0].quantity",
            ("within",),
        ),
        (
            "minimum_above_maximum",
            {"quantity": 3, "adjustable_quantity": {"minimum": 4, "maximum": 2}},
            "line_items[0].adjustable_quantity",
            ("minimum must not exceed maximum",),
        ),
        (
            "minimum_zero",
            {"adjustable_quantity": {"minimum": 0, "maximum": 2}},
            "line_items[0].adjustable_quantity.minimum",
            ("greater than or equal to 1",),
        ),
        ("no_maximum", {"adjustable_quantity": {"minimum": 1}}, "line_items[0].adjustable_quantity.maximum", ()),
        (
            "with_custom_amount",
            {"adjustable_quantity": {"minimum": 1, "maximum": 3}, "custom_amount": {}},
            "line_items[0].custom_amount",
            ("cannot be combined",),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v and "[" not in v else None,
)
async def test_adjustable_quantity_refusals(shop, case, item, field, words):
    await refused(shop, link_body({"name": "Tickets", "unit_amount": 1500, **item}), field, *words)


async def test_the_smallest_order_a_buyer_can_choose_must_reach_the_minimum_charge(shop):
    # two stickers at $0.30 are $0.60, but the buyer may take one: $0.30 cannot be charged
    message = await refused(
        shop,
        link_body(
            {"name": "Sticker", "quantity": 2, "unit_amount": 30, "adjustable_quantity": {"minimum": 1, "maximum": 9}}
        ),
        "line_items",
        "$0.50",
        "$0.30",
    )
    assert "smallest" in message
    # with a minimum of two it is fine
    await create(
        shop,
        link_body(
            {"name": "Sticker", "quantity": 2, "unit_amount": 30, "adjustable_quantity": {"minimum": 2, "maximum": 9}}
        ),
    )


# -- buyer-chosen amount ----------------------------------------------------------------------------------
async def test_a_buyer_chosen_amount_with_and_without_bounds(shop, buyer):
    link = await create(
        shop,
        link_body(
            {"name": "Donation", "custom_amount": {}},
            {"name": "Gift", "unit_amount": 2500, "custom_amount": {"minimum": 1000, "maximum": 10000}},
        ),
    )
    free, gift = link["line_items"]
    # no bounds: at least the currency's minimum charge, suggested at that minimum
    assert (free["custom_amount"], free["unit_amount"], free["quantity"]) == ({"minimum": 50, "maximum": None}, 50, 1)
    assert (gift["custom_amount"], gift["unit_amount"]) == ({"minimum": 1000, "maximum": 10000}, 2500)
    assert (await summary_of(buyer, link))["total_due_now"] == 2550
    chosen = await buyer.submit(
        {"email": "donor@example.com"},
        items=[{"line_item_id": free["id"], "amount": 123_45}, {"line_item_id": gift["id"], "amount": 10000}],
    )
    assert chosen.status == 200, chosen.body
    assert chosen.body["summary"]["total_due_now"] == 123_45 + 10000
    for choice, field, words in (
        ({"line_item_id": free["id"], "amount": 49}, "items[0].amount", "at least $0.50"),
        ({"line_item_id": gift["id"], "amount": 999}, "items[0].amount", "between $10.00 and $100.00"),
        ({"line_item_id": gift["id"], "amount": 10001}, "items[0].amount", "between $10.00 and $100.00"),
    ):
        problem = assert_problem(await buyer.submit({"email": "donor@example.com"}, items=[choice]), 422, field)
        assert words in error_message(problem, field)


async def test_a_recurring_buyer_chosen_amount(shop, buyer):
    link = await create(
        shop,
        link_body({"name": "Monthly support", "custom_amount": {"minimum": 500}, "recurring": {"interval": "monthly"}}),
    )
    (item,) = link["line_items"]
    assert item["custom_amount"] == {"minimum": 500, "maximum": None} and item["unit_amount"] == 500
    await summary_of(buyer, link)
    chosen = await buyer.submit({"email": "patron@example.com"}, items=[{"line_item_id": item["id"], "amount": 1200}])
    assert chosen.status == 200, chosen.body
    summary = chosen.body["summary"]
    assert summary["total_due_now"] == 1200 and summary["total"] is None
    assert summary["future_payments"] == payments(("2031-02-15", 1200))


@pytest.mark.parametrize(
    ("case", "item", "field", "words"),
    [
        (
            "minimum_below_the_minimum_charge",
            {"custom_amount": {"minimum": 49}},
            "line_items[0].custom_amount.minimum",
            ("minimum charge", "$0.50"),
        ),
        (
            "maximum_below_the_minimum_charge",
            {"custom_amount": {"maximum": 40}},
            "line_items[0].custom_amount.maximum",
            ("below the minimum",),
        ),
        (
            "maximum_below_minimum",
            {"custom_amount": {"minimum": 2000, "maximum": 1000}},
            "line_items[0].custom_amount",
            ("minimum must not exceed maximum",),
        ),
        (
            "suggestion_below",
            {"unit_amount": 900, "custom_amount": {"minimum": 1000}},
            "line_items[0].unit_amount",
            ("within the custom amount bounds",),
        ),
        (
            "suggestion_above",
            {"unit_amount": 5000, "custom_amount": {"minimum": 1000, "maximum": 2000}},
            "line_items[0].unit_amount",
            ("within the custom amount bounds",),
        ),
        ("quantity", {"quantity": 2, "custom_amount": {}}, "line_items[0].quantity", ("must be 1",)),
        (
            "unit_discount",
            {"custom_amount": {}, "unit_discount": {"percent_off": "10"}},
            "line_items[0].unit_discount",
            ("does not apply",),
        ),
        ("zero_minimum", {"custom_amount": {"minimum": 0}}, "line_items[0].custom_amount.minimum", ()),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v and "[" not in v else None,
)
async def test_buyer_chosen_amount_refusals(shop, case, item, field, words):
    await refused(shop, link_body({"name": "Donation", **item}), field, *words)


async def test_the_custom_amount_minimum_follows_the_currency(shop):
    link = await create(shop, link_body({"name": "Kifu", "custom_amount": {}}, currency="JPY"))
    assert link["line_items"][0]["custom_amount"] == {"minimum": 50, "maximum": None}
    await refused(
        shop, link_body({"name": "Gåva", "custom_amount": {"minimum": 299}}, currency="SEK"),
        "line_items[0].custom_amount.minimum", "SEK3.00",
    )  # fmt: skip


# -- recurring terms ------------------------------------------------------------------------------------
@pytest.mark.parametrize("interval", INTERVALS)
async def test_a_fixed_number_of_payments_for_every_interval(shop, buyer, interval):
    link = await create(
        shop,
        link_body(
            {"name": f"Plan ({interval})", "unit_amount": 1000, "recurring": {"interval": interval, "payments": 3}}
        ),
    )
    assert link["line_items"][0]["recurring"] == {"interval": interval, "payments": 3, "end_date": None, "start": None}
    summary = await summary_of(buyer, link)
    second, third = LATER_DATES[interval]
    assert money_view(summary) == {
        "subtotal_due_now": 1000,
        "discounts_due_now": [],
        "tax_due_now": 0,
        "total_due_now": 1000,
        "future_payments": payments((second, 1000), (third, 1000)),
        "total": 3000,
    }
    (group,) = summary["subscriptions"]
    assert (group["interval"], group["payments"], group["start_date"], group["starts_now"]) == (
        interval,
        3,
        TODAY,
        True,
    )


async def test_renewing_until_cancelled_has_no_total(shop, buyer):
    link = await create(shop, link_body({"name": "Hosting", "unit_amount": 700, "recurring": {"interval": "weekly"}}))
    assert link["line_items"][0]["recurring"] == {
        "interval": "weekly",
        "payments": None,
        "end_date": None,
        "start": None,
    }
    summary = await summary_of(buyer, link)
    assert money_view(summary) == {
        "subtotal_due_now": 700,
        "discounts_due_now": [],
        "tax_due_now": 0,
        "total_due_now": 700,
        "future_payments": payments(("2031-01-22", 700)),  # only the next one of an endless term
        "total": None,
    }
    assert summary["subscriptions"][0]["renews_until_cancelled"] is True


async def test_renewing_until_an_end_date_lists_every_payment_and_a_total(shop, buyer):
    link = await create(
        shop,
        link_body(
            {"name": "Season", "unit_amount": 1000, "recurring": {"interval": "monthly", "end_date": "2031-04-20"}}
        ),
    )
    assert link["line_items"][0]["recurring"]["end_date"] == "2031-04-20"
    summary = await summary_of(buyer, link)
    assert summary["future_payments"] == payments(("2031-02-15", 1000), ("2031-03-15", 1000), ("2031-04-15", 1000))
    assert summary["total"] == 4000


async def test_recurring_items_of_different_terms_form_separate_subscriptions(shop, buyer):
    link = await create(
        shop,
        link_body(
            {"name": "Coffee club", "unit_amount": 1500, "recurring": {"interval": "monthly", "payments": 2}},
            {"name": "Filter club", "unit_amount": 500, "recurring": {"interval": "monthly", "payments": 2}},
            {"name": "Magazine", "unit_amount": 3000, "recurring": {"interval": "annually", "payments": 2}},
        ),
    )
    summary = await summary_of(buyer, link)
    assert summary["total_due_now"] == 5000
    assert summary["future_payments"] == [
        {"date": "2031-02-15", "amount": 2000, "subscription_group": "group_1"},
        {"date": "2032-01-15", "amount": 3000, "subscription_group": "group_2"},
    ]
    assert summary["total"] == 10000


@pytest.mark.parametrize(
    ("case", "recurring", "field", "words"),
    [
        (
            "payments_and_end_date",
            {"interval": "monthly", "payments": 3, "end_date": "2031-06-01"},
            "line_items[0].recurring",
            ("until cancelled",),
        ),
        (
            "end_date_today",
            {"interval": "monthly", "end_date": TODAY},
            "line_items[0].recurring.end_date",
            ("after today",),
        ),
        (
            "end_date_past",
            {"interval": "monthly", "end_date": "2030-12-31"},
            "line_items[0].recurring.end_date",
            ("after today",),
        ),
        (
            "end_date_before_the_start",
            {"interval": "monthly", "end_date": "2031-02-01", "start": {"date": "2031-03-01"}},
            "line_items[0].recurring.end_date",
            ("billing start",),
        ),
        (
            "end_date_before_a_delayed_start",
            {"interval": "monthly", "end_date": "2031-01-20", "start": {"delay_days": 10}},
            "line_items[0].recurring.end_date",
            ("billing start",),
        ),
        ("unknown_interval", {"interval": "daily"}, "line_items[0].recurring.interval", ("monthly",)),
        ("zero_payments", {"interval": "monthly", "payments": 0}, "line_items[0].recurring.payments", ()),
        ("no_interval", {"payments": 3}, "line_items[0].recurring.interval", ()),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v and "[" not in v else None,
)
async def test_recurring_term_refusals(shop, case, recurring, field, words):
    body = link_body(
        {"name": "Plan", "unit_amount": 1000, "recurring": recurring}, {"name": "Deposit", "unit_amount": 5000}
    )
    await refused(shop, body, field, *words)


# -- delayed start --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "first", "second"),
    [
        ({"date": "2031-03-01"}, "2031-03-01", "2031-04-01"),
        ({"delay_days": 10}, "2031-01-25", "2031-02-25"),
        ({"delay_months": 2}, "2031-03-15", "2031-04-15"),
    ],
    ids=["date", "delay_days", "delay_months"],
)
async def test_a_delayed_start_charges_only_the_deposit_now(shop, buyer, start, first, second):
    link = await create(
        shop,
        link_body(
            {"name": "Deposit", "unit_amount": 5000},
            {"name": "Plan", "unit_amount": 1500, "recurring": {"interval": "monthly", "payments": 2, "start": start}},
        ),
    )
    assert link["line_items"][1]["recurring"]["start"] == start
    summary = await summary_of(buyer, link)
    assert money_view(summary) == {
        "subtotal_due_now": 5000,
        "discounts_due_now": [],
        "tax_due_now": 0,
        "total_due_now": 5000,
        "future_payments": payments((first, 1500), (second, 1500)),
        "total": 8000,
    }
    (group,) = summary["subscriptions"]
    assert (group["start_date"], group["starts_now"]) == (first, False)
    assert [line["due_now"] for line in summary["lines"]] == [True, False]


async def test_a_link_whose_items_all_start_later_is_refused(shop):
    later = {"interval": "monthly", "start": {"delay_days": 30}}
    message = await refused(
        shop,
        link_body(
            {"name": "Plan", "unit_amount": 1500, "recurring": later},
            {"name": "Extra", "unit_amount": 900, "recurring": later},
        ),
        "line_items",
        "add an item",
        "deposit",
    )
    assert "due now" in message
    # an optional item due now does not help: unless the buyer picks it, nothing is charged
    await refused(
        shop,
        link_body(
            {"name": "Plan", "unit_amount": 1500, "recurring": later},
            {"name": "Mug", "unit_amount": 900, "optional": True},
        ),
        "line_items",
        "add an item",
        "deposit",
    )


@pytest.mark.parametrize(
    ("case", "start", "field", "words"),
    [
        ("date_today", {"date": TODAY}, "line_items[0].recurring.start.date", ("future date",)),
        ("date_past", {"date": "2031-01-01"}, "line_items[0].recurring.start.date", ("future date",)),
        ("two_kinds", {"delay_days": 3, "delay_months": 1}, "line_items[0].recurring.start", ("exactly one",)),
        ("none_given", {}, "line_items[0].recurring.start", ("exactly one",)),
        ("zero_days", {"delay_days": 0}, "line_items[0].recurring.start.delay_days", ()),
        ("zero_months", {"delay_months": 0}, "line_items[0].recurring.start.delay_months", ()),
        ("not_a_date", {"date": "2031-02-30"}, "line_items[0].recurring.start.date", ()),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v and "[" not in v else None,
)
async def test_delayed_start_refusals(shop, case, start, field, words):
    body = link_body(
        {"name": "Plan", "unit_amount": 1500, "recurring": {"interval": "monthly", "start": start}},
        {"name": "Deposit", "unit_amount": 5000},
    )
    await refused(shop, body, field, *words)


async def test_a_start_date_that_has_passed_bills_from_checkout(stack, session, buyer):
    created = stack.create_account(f"Passed start {uuid.uuid4().hex[:6]}", "USD", True)
    api = CheckedApi(session, stack.config.base_url, created["api_key"])
    assert (await api.post("/v1/test_clock/advance", {"to": NOW})).status == 200
    link = await create(
        api,
        link_body(
            {"name": "Deposit", "unit_amount": 5000},
            {"name": "Plan", "unit_amount": 1500, "recurring": {"interval": "weekly", "start": {"date": "2031-01-20"}}},
        ),
    )
    assert (await api.post("/v1/test_clock/advance", {"to": "2031-03-02T12:00:00Z"})).status == 200
    summary = await summary_of(buyer, link)
    # never a payment date in the past: the plan starts the day the buyer checks out
    assert summary["total_due_now"] == 6500
    assert summary["future_payments"] == payments(("2031-03-09", 1500))
    assert summary["subscriptions"][0]["start_date"] == "2031-03-02"


# -- discounts -----------------------------------------------------------------------------------------
async def test_unit_discounts_apply_per_unit_and_to_every_payment(shop, buyer):
    link = await create(
        shop,
        link_body(
            {"name": "Mugs", "quantity": 3, "unit_amount": 999, "unit_discount": {"percent_off": "15"}},
            {
                "name": "Club",
                "unit_amount": 1000,
                "unit_discount": {"amount_off": 250},
                "recurring": {"interval": "monthly", "payments": 3},
            },
        ),
    )
    mugs, club = link["line_items"]
    assert mugs["unit_discount"] == {"percent_off": "15", "amount_off": None}
    assert club["unit_discount"] == {"percent_off": None, "amount_off": 250}
    summary = await summary_of(buyer, link)
    # 15 % of 9.99 = 1.4985 → 1.50 per unit (rounded before multiplying): (9.99 − 1.50) × 3
    assert [(line["unit_discount"], line["amount"]) for line in summary["lines"]] == [(150, 2547), (250, 750)]
    assert summary["total_due_now"] == 2547 + 750
    assert summary["future_payments"] == payments(("2031-02-15", 750), ("2031-03-15", 750))
    assert summary["total"] == 2547 + 3 * 750


async def test_the_order_discount_applies_to_what_is_due_now(shop, buyer):
    link = await create(
        shop,
        link_body(
            {"name": "Kit", "unit_amount": 4000},
            {"name": "Club", "unit_amount": 2000, "recurring": {"interval": "monthly", "payments": 2}},
            order_discount={"name": "Welcome", "amount_off": 1500},
        ),
    )
    assert link["order_discount"] == {"name": "Welcome", "percent_off": None, "amount_off": 1500}
    summary = await summary_of(buyer, link)
    assert money_view(summary) == {
        "subtotal_due_now": 6000,
        "discounts_due_now": [{"name": "Welcome", "amount": 1500}],
        "tax_due_now": 0,
        "total_due_now": 4500,
        "future_payments": payments(("2031-02-15", 2000)),  # later payments are not discounted
        "total": 6500,
    }
    # spread over the lines in proportion: 1000 of the kit's 4000, 500 of the club's 2000
    assert [line["discount"] for line in summary["lines"]] == [1000, 500]

    percent = await create(
        shop, link_body({"name": "Kit", "unit_amount": 4000}, order_discount={"name": "Spring", "percent_off": "12.5"})
    )
    assert percent["order_discount"] == {"name": "Spring", "percent_off": "12.5", "amount_off": None}
    assert money_view(await summary_of(buyer, percent))["discounts_due_now"] == [{"name": "Spring", "amount": 500}]


async def test_unit_and_order_discounts_with_tax_on_every_payment(shop, buyer):
    rate = await tax_rate(shop, "8.875")
    link = await create(
        shop,
        link_body(
            {
                "name": "Seats",
                "quantity": 3,
                "unit_amount": 1000,
                "unit_discount": {"percent_off": "10"},
                "tax_rate_id": rate["id"],
                "recurring": {"interval": "monthly", "payments": 2},
            },
            {"name": "Setup", "unit_amount": 500, "unit_discount": {"amount_off": 50}},
            order_discount={"name": "Launch", "percent_off": "10"},
        ),
    )
    seats = link["line_items"][0]
    assert (seats["tax_rate_id"], seats["tax_rate"]) == (
        rate["id"], {"id": rate["id"], "name": "Sales tax", "percentage": "8.875"},
    )  # fmt: skip
    summary = await summary_of(buyer, link)
    # seats 2700, setup 450; Launch 10 % of 3150 = 315 split 270 / 45;
    # tax now 8.875 % × (2700 − 270) = 215.66 → 216; each later payment 2700 + 239.63 → 240
    assert money_view(summary) == {
        "subtotal_due_now": 3150,
        "discounts_due_now": [{"name": "Launch", "amount": 315}],
        "tax_due_now": 216,
        "total_due_now": 3051,
        "future_payments": payments(("2031-02-15", 2940)),
        "total": 5991,
    }
    assert [(line["discount"], line["tax"], line["recurring_tax"]) for line in summary["lines"]] == [
        (270, 216, 240),
        (45, 0, 0),
    ]


async def test_order_discount_refusals(shop):
    item = {"name": "Kit", "unit_amount": 4000}
    await refused(
        shop, link_body(item, order_discount={"name": "Both", "percent_off": "10", "amount_off": 100}),
        "order_discount", "either percent_off or amount_off",
    )  # fmt: skip
    await refused(shop, link_body(item, order_discount={"percent_off": "10"}), "order_discount.name")
    await refused(
        shop, link_body(item, order_discount={"name": "Too much", "percent_off": "100.5"}),
        "order_discount.percent_off", "at most 100",
    )  # fmt: skip
    # a discount that leaves less than the minimum charge due now
    await refused(
        shop, link_body(item, order_discount={"name": "All", "percent_off": "100"}), "line_items", "$0.50", "$0.00"
    )
    await refused(
        shop, link_body(item, order_discount={"name": "Most", "amount_off": 3960}), "line_items", "$0.50", "$0.40"
    )


async def test_discount_codes_only_where_the_link_allows_them(shop, buyer):
    code = f"SAVE{uuid.uuid4().hex[:6]}".upper()
    assert (await shop.post("/v1/discount_codes", {"code": code, "percent_off": "20"})).status == 201
    closed = await create(shop, link_body({"name": "Kit", "unit_amount": 4000}))
    assert closed["allow_discount_codes"] is False
    await buyer.open(closed["url"])
    assert (await buyer.view()).body["allow_discount_codes"] is False
    problem = assert_problem(await buyer.submit({"email": "c@example.com"}, discount_code=code), 422, "discount_code")
    assert "does not take discount codes" in error_message(problem, "discount_code")

    opened = await create(
        shop,
        link_body(
            {"name": "Kit", "unit_amount": 4000},
            allow_discount_codes=True,
            order_discount={"name": "Link", "amount_off": 1000},
        ),
    )
    assert opened["allow_discount_codes"] is True
    await buyer.open(opened["url"])
    assert (await buyer.view()).body["allow_discount_codes"] is True
    applied = await buyer.submit({"email": "c@example.com"}, discount_code=code.lower())
    assert applied.status == 200, applied.body
    # the link's discount first, then the code on what remains (20 % of 3000)
    assert applied.body["summary"]["discounts_due_now"] == [
        {"name": "Link", "amount": 1000},
        {"name": code, "amount": 600},
    ]
    assert applied.body["summary"]["total_due_now"] == 2400
    unknown = await buyer.submit({"email": "c@example.com"}, discount_code="NOSUCHCODE")
    assert "unknown" in error_message(assert_problem(unknown, 422, "discount_code"), "discount_code")


# -- minimum charge and currencies ----------------------------------------------------------------------
async def test_the_minimum_charge_counts_discounts_and_tax_per_currency(shop):
    rate = await tax_rate(shop, "25", name="VAT")
    # $0.40 + 25 % tax = $0.50: enough
    await create(shop, link_body({"name": "Sticker", "unit_amount": 40, "tax_rate_id": rate["id"]}))
    await refused(
        shop, link_body({"name": "Sticker", "unit_amount": 39, "tax_rate_id": rate["id"]}), "line_items", "$0.49"
    )
    await create(shop, link_body({"name": "Sticker", "unit_amount": 30}, currency="GBP"))
    await refused(
        shop, link_body({"name": "Sticker", "unit_amount": 29}, currency="GBP"), "line_items", "£0.30", "£0.29"
    )
    await create(shop, link_body({"name": "Sticker", "unit_amount": 50}, currency="JPY"))
    await refused(shop, link_body({"name": "Sticker", "unit_amount": 49}, currency="JPY"), "line_items", "¥50", "¥49")
    await refused(shop, link_body({"name": "Sticker", "unit_amount": 299}, currency="SEK"), "line_items", "SEK3.00")
    # optional items do not count towards it
    await refused(
        shop,
        link_body({"name": "Sticker", "unit_amount": 40}, {"name": "Poster", "unit_amount": 900, "optional": True}),
        "line_items",
        "$0.50",
    )


@pytest.mark.parametrize(
    ("currency", "methods", "bad_index", "bad"),
    [
        ("USD", ["card", "sepa_debit"], 1, "sepa_debit"),
        ("USD", ["bacs_debit"], 0, "bacs_debit"),
        ("EUR", ["card", "us_bank_account"], 1, "us_bank_account"),
        ("EUR", ["bacs_debit", "card"], 0, "bacs_debit"),
        ("GBP", ["sepa_debit"], 0, "sepa_debit"),
        ("JPY", ["card", "us_bank_account"], 1, "us_bank_account"),
    ],
)
async def test_payment_methods_the_currency_does_not_allow_are_refused(shop, currency, methods, bad_index, bad):
    body = link_body({"name": "Kit", "unit_amount": 4000}, currency=currency, payment_methods=methods)
    await refused(shop, body, f"payment_methods[{bad_index}]", bad, f"not available for {currency}")


@pytest.mark.parametrize(
    ("currency", "methods"),
    [("USD", ["us_bank_account", "card"]), ("EUR", ["card", "sepa_debit"]), ("GBP", ["bacs_debit"]), ("JPY", ["card"])],
)
async def test_payment_methods_the_currency_allows_are_kept_in_order(shop, buyer, currency, methods):
    link = await create(
        shop, link_body({"name": "Kit", "unit_amount": 4000}, currency=currency, payment_methods=methods)
    )
    assert link["payment_methods"] == methods
    await buyer.open(link["url"])
    assert (await buyer.view()).body["payment_methods"] == methods


async def test_a_payment_method_listed_twice_is_refused(shop):
    body = link_body({"name": "Kit", "unit_amount": 4000}, payment_methods=["card", "card"])
    await refused(shop, body, "payment_methods", "repeat")


@pytest.mark.parametrize(
    ("currency", "words"),
    [
        ("HUF", ("HUF", "minor unit")),
        ("COP", ("COP", "minor unit")),
        ("JOD", ("JOD", "does not offer")),
        ("VEF", ("VEF", "does not offer")),
        ("NOK", ("NOK", "not enabled")),  # a currency the processor takes, not enabled for the account
    ],
)
async def test_currency_refusals_name_the_currency_and_the_reason(shop, currency, words):
    await refused(shop, link_body({"name": "Kit", "unit_amount": 40000}, currency=currency), "currency", *words)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"line_items": [{"name": "Kit", "unit_amount": 4000, "optional": "yes"}]}, "line_items[0].optional"),
        ({"allow_discount_codes": 1}, "allow_discount_codes"),
        ({"collect_billing_address": "true"}, "collect_billing_address"),
        ({"deactivate_after_payment": 0}, "deactivate_after_payment"),
        ({"contact_fields": [{"property": "phone", "required": "yes"}]}, "contact_fields[0].required"),
    ],
)
async def test_switches_are_json_booleans(shop, change, field):
    await refused(shop, {**link_body({"name": "Kit", "unit_amount": 4000}), **change}, field)


async def test_a_link_whose_only_offer_has_ended_opens_a_410_page(session, stack, buyer):
    """An end date that passes after the link was made: the page says the offer has ended
    (410) instead of charging a payment beyond the end date."""
    created = stack.create_account(f"Ended offer shop {uuid.uuid4().hex[:6]}", "USD", True)
    api = CheckedApi(session, stack.config.base_url, created["api_key"])
    assert (await api.post("/v1/test_clock/advance", {"to": NOW})).status == 200
    link = await create(
        api,
        link_body(
            {"name": "Winter box", "unit_amount": 1000, "recurring": {"interval": "monthly", "end_date": "2031-02-10"}}
        ),
    )
    assert (await summary_of(buyer, link))["total"] == 1000  # one payment, at checkout
    assert (await api.post("/v1/test_clock/advance", {"to": "2031-02-11T12:00:00Z"})).status == 200
    async with session.get(link["url"]) as page:  # (follows the 303 to the page)
        text = await page.text()
        assert page.status == 410, (page.status, text[:500])
    assert "Winter box was sold until 2031-02-10" in text
