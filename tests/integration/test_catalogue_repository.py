"""The catalogue's contract functions (services/checkout/catalogue/service.py) and its
database rules, against the real database as the runtime role (row-level security on).

- `tax_rates_by_id`, `get_product`, `find_discount_code` return only the account's active,
  usable objects;
- `redeem_discount_code` counts and records a redemption inside the caller's transaction,
  refuses once the limit is reached, is idempotent per session, and of two transactions
  racing for the last redemption exactly one wins;
- the constraints of migration 0003 refuse what no code path may store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from services.checkout.catalogue import repository as repo
from services.checkout.catalogue.service import (
    find_discount_code,
    get_product,
    tax_rates_by_id,
)
from services.checkout.catalogue.service import (
    redeem_discount_code as redeem,
)
from shared.db import create_pool, tenant_tx
from shared.ids import new_id

S = "checkout"
NOW = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def app_pool(dsn) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(dsn(S), application_name="catalogue-it", min_size=1, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def owner_pool(dsn) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(dsn(S, owner=True), application_name="catalogue-it-owner", min_size=1, max_size=2)
    yield pool
    await pool.close()


async def make_account(owner_pool: asyncpg.Pool) -> str:
    account_id = f"acct_cat_{uuid.uuid4().hex[:12]}"
    await owner_pool.execute(
        f"INSERT INTO {S}.accounts (id, version, name, test_mode) VALUES ($1, 1, 'Catalogue test', true)",
        account_id,
    )
    return account_id


@pytest.fixture
async def a(owner_pool) -> str:
    return await make_account(owner_pool)


@pytest.fixture
async def b(owner_pool) -> str:
    return await make_account(owner_pool)


# -- seeding through the repository (as the runtime role, in a tenant transaction) ------------
async def add_product(pool, account_id: str, *, active: bool = True, interval: str | None = "monthly") -> str:
    product_id = new_id("prod")
    async with tenant_tx(pool, account_id) as conn:
        await repo.insert_product(
            conn,
            product_id=product_id,
            account_id=account_id,
            name="Coffee subscription",
            description="1 kg a month",
            sku="COF-1",
            unit_amount=2500,
            currency="USD",
            recurring_interval=interval,
            active=active,
            now=NOW,
        )
    return product_id


async def add_tax_rate(pool, account_id: str, percentage: str, *, active: bool = True) -> str:
    tax_rate_id = new_id("txr")
    async with tenant_tx(pool, account_id) as conn:
        await repo.insert_tax_rate(
            conn,
            tax_rate_id=tax_rate_id,
            account_id=account_id,
            name=f"Tax {percentage}",
            percentage=Decimal(percentage),
            active=active,
            now=NOW,
        )
    return tax_rate_id


async def add_code(
    pool,
    account_id: str,
    code: str,
    *,
    percent_off: str | None = None,
    amount_off: int | None = None,
    currency: str | None = None,
    expires_at: datetime | None = None,
    max_redemptions: int | None = None,
    active: bool = True,
) -> str:
    code_id = new_id("dc")
    async with tenant_tx(pool, account_id) as conn:
        row = await repo.insert_discount_code(
            conn,
            discount_code_id=code_id,
            account_id=account_id,
            code=code,
            percent_off=Decimal(percent_off) if percent_off is not None else None,
            amount_off=amount_off,
            currency=currency,
            expires_at=expires_at,
            max_redemptions=max_redemptions,
            active=active,
            now=NOW,
        )
    assert row is not None, code
    return code_id


async def code_state(pool, account_id: str, code_id: str) -> tuple[int, list[str]]:
    """(times_redeemed, the sessions that redeemed it)."""
    async with tenant_tx(pool, account_id) as conn:
        times = await conn.fetchval(f"SELECT times_redeemed FROM {S}.discount_codes WHERE id = $1", code_id)
        sessions = await conn.fetch(
            f"SELECT session_id FROM {S}.discount_redemptions WHERE discount_code_id = $1 ORDER BY session_id",
            code_id,
        )
    return times, [r["session_id"] for r in sessions]


def unique_code(prefix: str = "CODE") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- tax_rates_by_id ----------------------------------------------------------------------------
async def test_tax_rates_by_id_returns_the_accounts_active_rates_with_decimal_percentages(app_pool, a, b):
    nyc = await add_tax_rate(app_pool, a, "8.875")
    tiny = await add_tax_rate(app_pool, a, "0.0001")
    zero = await add_tax_rate(app_pool, a, "0")
    retired = await add_tax_rate(app_pool, a, "25", active=False)
    foreign = await add_tax_rate(app_pool, b, "19")
    async with tenant_tx(app_pool, a) as conn:
        rates = await tax_rates_by_id(conn, a, [nyc, tiny, zero, retired, foreign, "txr_missing", nyc])
        assert await tax_rates_by_id(conn, a, []) == {}
    assert set(rates) == {nyc, tiny, zero}
    assert rates[nyc] == {"id": nyc, "name": "Tax 8.875", "percentage": Decimal("8.875")}
    assert isinstance(rates[nyc]["percentage"], Decimal) and str(rates[nyc]["percentage"]) == "8.875"
    assert rates[tiny]["percentage"] == Decimal("0.0001") and rates[zero]["percentage"] == 0
    # the other account sees its own rate only, even when it asks for a's by id
    async with tenant_tx(app_pool, b) as conn:
        assert set(await tax_rates_by_id(conn, b, [nyc, foreign])) == {foreign}
        assert await tax_rates_by_id(conn, a, [nyc]) == {}  # row-level security: tenant b sees no a rows


# -- get_product ------------------------------------------------------------------------------
async def test_get_product_returns_active_products_that_are_not_deleted(app_pool, a, b):
    monthly = await add_product(app_pool, a)
    one_time = await add_product(app_pool, a, interval=None)
    inactive = await add_product(app_pool, a, active=False)
    deleted = await add_product(app_pool, a)
    foreign = await add_product(app_pool, b)
    async with tenant_tx(app_pool, a) as conn:
        assert await repo.delete_product(conn, a, deleted, NOW)
        product = await get_product(conn, a, monthly)
        assert product is not None
        assert product["id"] == monthly and product["name"] == "Coffee subscription"
        assert product["description"] == "1 kg a month" and product["sku"] == "COF-1"
        assert product["unit_amount"] == 2500 and product["currency"] == "USD"
        assert product["recurring"] == {"interval": "monthly"} and product["recurring_interval"] == "monthly"
        one = await get_product(conn, a, one_time)
        assert one["recurring"] is None and one["recurring_interval"] is None
        for product_id in (inactive, deleted, foreign, "prod_missing"):
            assert await get_product(conn, a, product_id) is None, product_id


# -- find_discount_code -----------------------------------------------------------------------
async def test_find_discount_code_matches_without_regard_to_case(app_pool, a):
    code = unique_code("Spring")
    code_id = await add_code(app_pool, a, code, percent_off="12.5")
    async with tenant_tx(app_pool, a) as conn:
        for typed in (code, code.upper(), code.lower(), f"  {code.lower()} "):
            found = await find_discount_code(conn, a, typed, currency="eur", now=NOW)
            assert found == {
                "id": code_id,
                "code": code,
                "percent_off": Decimal("12.5"),
                "amount_off": None,
                "currency": None,
            }, typed
            assert isinstance(found["percent_off"], Decimal) and str(found["percent_off"]) == "12.5"
        for typed in ("", "   ", code + "x", code[:-1], "%", "x" * 500):
            assert await find_discount_code(conn, a, typed, currency="USD", now=NOW) is None, typed


async def test_find_discount_code_refuses_expired_inactive_exhausted_and_foreign_codes(app_pool, a, b):
    expiring = unique_code("EXP")
    await add_code(app_pool, a, expiring, percent_off="10", expires_at=NOW + timedelta(days=1))
    inactive = unique_code("OFF")
    await add_code(app_pool, a, inactive, percent_off="10", active=False)
    limited = unique_code("ONCE")
    limited_id = await add_code(app_pool, a, limited, percent_off="10", max_redemptions=1)
    foreign = unique_code("B")
    await add_code(app_pool, b, foreign, percent_off="10")
    async with tenant_tx(app_pool, a) as conn:
        assert await find_discount_code(conn, a, expiring, currency="USD", now=NOW) is not None
        just_before = NOW + timedelta(days=1) - timedelta(microseconds=1)
        assert await find_discount_code(conn, a, expiring, currency="USD", now=just_before) is not None
        assert await find_discount_code(conn, a, expiring, currency="USD", now=NOW + timedelta(days=1)) is None
        assert await find_discount_code(conn, a, expiring, currency="USD", now=NOW + timedelta(days=30)) is None
        assert await find_discount_code(conn, a, inactive, currency="USD", now=NOW) is None
        assert await find_discount_code(conn, a, foreign, currency="USD", now=NOW) is None
        assert await find_discount_code(conn, a, limited, currency="USD", now=NOW) is not None
        assert await redeem(conn, a, limited_id, session_id=new_id("cs"), payment_id="pay_1", now=NOW)
        assert await find_discount_code(conn, a, limited, currency="USD", now=NOW) is None  # used up


async def test_an_amount_off_code_is_usable_in_its_own_currency_only(app_pool, a):
    code = unique_code("FIVE")
    code_id = await add_code(app_pool, a, code, amount_off=500, currency="USD")
    async with tenant_tx(app_pool, a) as conn:
        found = await find_discount_code(conn, a, code.lower(), currency="usd", now=NOW)
        assert found == {"id": code_id, "code": code, "percent_off": None, "amount_off": 500, "currency": "USD"}
        for other in ("EUR", "JPY", "SEK"):
            assert await find_discount_code(conn, a, code, currency=other, now=NOW) is None, other


# -- redeem_discount_code -----------------------------------------------------------------------
async def test_redeeming_records_and_counts_until_the_limit(app_pool, a):
    code_id = await add_code(app_pool, a, unique_code("TWO"), amount_off=300, currency="USD", max_redemptions=2)
    s1, s2, s3 = (new_id("cs") for _ in range(3))
    async with tenant_tx(app_pool, a) as conn:
        assert await redeem(conn, a, code_id, session_id=s1, payment_id="pay_1", now=NOW) is True
    async with tenant_tx(app_pool, a) as conn:
        assert await redeem(conn, a, code_id, session_id=s2, payment_id="pay_2", now=NOW) is True
    async with tenant_tx(app_pool, a) as conn:
        assert await redeem(conn, a, code_id, session_id=s3, payment_id="pay_3", now=NOW) is False
    assert await code_state(app_pool, a, code_id) == (2, sorted([s1, s2]))
    async with tenant_tx(app_pool, a) as conn:
        row = await repo.get_redemption(conn, a, s1)
    assert row["payment_id"] == "pay_1" and row["discount_code_id"] == code_id and row["created_at"] == NOW


async def test_a_code_without_a_limit_is_redeemed_any_number_of_times(app_pool, a):
    code_id = await add_code(app_pool, a, unique_code("MANY"), percent_off="100")
    sessions = [new_id("cs") for _ in range(5)]
    for i, session_id in enumerate(sessions):
        async with tenant_tx(app_pool, a) as conn:
            assert await redeem(conn, a, code_id, session_id=session_id, payment_id=f"pay_{i}", now=NOW)
    assert await code_state(app_pool, a, code_id) == (5, sorted(sessions))


async def test_redeeming_a_session_again_is_idempotent(app_pool, a):
    code_id = await add_code(app_pool, a, unique_code("IDEM"), percent_off="5", max_redemptions=3)
    other_id = await add_code(app_pool, a, unique_code("OTHER"), percent_off="5")
    session_id = new_id("cs")
    for _ in range(3):
        async with tenant_tx(app_pool, a) as conn:
            assert await redeem(conn, a, code_id, session_id=session_id, payment_id="pay_1", now=NOW) is True
    async with tenant_tx(app_pool, a) as conn:  # one session redeems one code
        assert await redeem(conn, a, other_id, session_id=session_id, payment_id="pay_1", now=NOW) is False
    assert await code_state(app_pool, a, code_id) == (1, [session_id])
    assert await code_state(app_pool, a, other_id) == (0, [])


async def test_redemption_belongs_to_the_callers_transaction(app_pool, a):
    code_id = await add_code(app_pool, a, unique_code("TX"), percent_off="5", max_redemptions=1)
    with pytest.raises(RuntimeError):
        async with tenant_tx(app_pool, a) as conn:
            assert await redeem(conn, a, code_id, session_id=new_id("cs"), payment_id="pay_x", now=NOW)
            raise RuntimeError("the purchase failed after the redemption")
    assert await code_state(app_pool, a, code_id) == (0, [])  # rolled back with the purchase
    # a refusal leaves the caller's own writes in its transaction intact
    async with tenant_tx(app_pool, a) as conn:
        assert await redeem(conn, a, code_id, session_id=new_id("cs"), payment_id="pay_1", now=NOW)
    kept = new_id("txr")
    async with tenant_tx(app_pool, a) as conn:
        await repo.insert_tax_rate(
            conn, tax_rate_id=kept, account_id=a, name="Kept", percentage=Decimal(1), active=True, now=NOW
        )
        assert await redeem(conn, a, code_id, session_id=new_id("cs"), payment_id="pay_2", now=NOW) is False
        assert await repo.get_tax_rate(conn, a, kept) is not None
    async with tenant_tx(app_pool, a) as conn:
        assert await repo.get_tax_rate(conn, a, kept) is not None


async def test_another_accounts_code_cannot_be_redeemed(app_pool, a, b):
    foreign_id = await add_code(app_pool, b, unique_code("B"), percent_off="50")
    async with tenant_tx(app_pool, a) as conn:
        assert await redeem(conn, a, foreign_id, session_id=new_id("cs"), payment_id="pay_1", now=NOW) is False
        assert await redeem(conn, a, "dc_missing", session_id=new_id("cs"), payment_id="pay_1", now=NOW) is False
    assert await code_state(app_pool, b, foreign_id) == (0, [])


async def test_two_transactions_racing_for_the_last_redemption_exactly_one_wins(app_pool, a):
    """The first transaction takes the last redemption and holds it uncommitted; the second
    waits on the row, then sees the committed count and is refused."""
    code_id = await add_code(app_pool, a, unique_code("LAST"), percent_off="20", max_redemptions=2)
    async with tenant_tx(app_pool, a) as conn:  # one of two already used
        assert await redeem(conn, a, code_id, session_id=new_id("cs"), payment_id="pay_0", now=NOW)
    first_session, second_session = new_id("cs"), new_id("cs")
    first_took = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> bool:
        async with tenant_tx(app_pool, a) as conn:
            taken = await redeem(conn, a, code_id, session_id=first_session, payment_id="pay_1", now=NOW)
            first_took.set()
            await release_first.wait()
            return taken

    async def second() -> bool:
        await first_took.wait()
        async with tenant_tx(app_pool, a) as conn:
            return await redeem(conn, a, code_id, session_id=second_session, payment_id="pay_2", now=NOW)

    first_task, second_task = asyncio.create_task(first()), asyncio.create_task(second())
    await asyncio.wait_for(first_took.wait(), timeout=30)
    await asyncio.sleep(0.5)
    assert not second_task.done(), "the second transaction did not wait for the first"
    release_first.set()
    results = await asyncio.wait_for(asyncio.gather(first_task, second_task), timeout=30)
    assert results == [True, False]
    times, sessions = await code_state(app_pool, a, code_id)
    assert times == 2 and first_session in sessions and second_session not in sessions


async def test_concurrent_purchases_never_exceed_the_limit(app_pool, a):
    """Many transactions at once on codes with one redemption left: one winner per code."""
    codes = [await add_code(app_pool, a, unique_code("RACE"), percent_off="10", max_redemptions=1) for _ in range(5)]
    start = asyncio.Event()

    async def buy(code_id: str, n: int) -> bool:
        await start.wait()
        async with tenant_tx(app_pool, a) as conn:
            taken = await redeem(conn, a, code_id, session_id=new_id("cs"), payment_id=f"pay_{n}", now=NOW)
            await asyncio.sleep(0.05)  # keep the transaction open while the others try
            return taken

    tasks = {code_id: [asyncio.create_task(buy(code_id, n)) for n in range(3)] for code_id in codes}
    start.set()
    for code_id, racers in tasks.items():
        results = await asyncio.wait_for(asyncio.gather(*racers), timeout=60)
        assert sorted(results) == [False, False, True], results
        times, sessions = await code_state(app_pool, a, code_id)
        assert times == 1 and len(sessions) == 1


# -- the database's own rules -------------------------------------------------------------------
async def expect_refused(pool, account_id: str, error: type[Exception], sql: str, *args) -> None:
    with pytest.raises(error):
        async with tenant_tx(pool, account_id) as conn:
            await conn.execute(sql, *args)


async def test_discount_code_constraints(app_pool, a, b):
    insert = (
        f"INSERT INTO {S}.discount_codes (id, account_id, code, percent_off, amount_off, currency, "
        f"max_redemptions, times_redeemed, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    check = asyncpg.exceptions.CheckViolationError

    def row(**kw):
        values = {
            "code": unique_code(),
            "percent_off": None,
            "amount_off": None,
            "currency": None,
            "max_redemptions": None,
            "times_redeemed": 0,
        } | kw
        return (
            new_id("dc"),
            a,
            values["code"],
            values["percent_off"],
            values["amount_off"],
            values["currency"],
            values["max_redemptions"],
            values["times_redeemed"],
            NOW,
        )

    for bad in (
        {},  # neither a percentage nor an amount
        {"percent_off": Decimal(10), "amount_off": 100, "currency": "USD"},  # both
        {"percent_off": Decimal(0)},
        {"percent_off": Decimal("100.01")},
        {"amount_off": 0, "currency": "USD"},
        {"amount_off": 100},  # an amount without its currency
        {"percent_off": Decimal(10), "currency": "USD"},  # a currency on a percentage
        {"amount_off": 100, "currency": "usd"},
        {"percent_off": Decimal(10), "max_redemptions": 0},
        {"percent_off": Decimal(10), "max_redemptions": 1, "times_redeemed": 2},
        {"percent_off": Decimal(10), "times_redeemed": -1},
        {"percent_off": Decimal(10), "code": "has space"},
        {"percent_off": Decimal(10), "code": ""},
    ):
        await expect_refused(app_pool, a, check, insert, *row(**bad))
    # one code per account whatever its case; another account may use the same code
    code = unique_code("Dup")
    await add_code(app_pool, a, code, percent_off="10")
    await expect_refused(
        app_pool, a, asyncpg.exceptions.UniqueViolationError, insert, *row(code=code.upper(), percent_off=Decimal(5))
    )
    await add_code(app_pool, b, code.lower(), percent_off="10")
    async with tenant_tx(app_pool, a) as conn:
        duplicate = await repo.insert_discount_code(
            conn,
            discount_code_id=new_id("dc"),
            account_id=a,
            code=code.lower(),
            percent_off=Decimal(1),
            amount_off=None,
            currency=None,
            expires_at=None,
            max_redemptions=None,
            active=True,
            now=NOW,
        )
        assert duplicate is None
    # the counter can never pass the limit, whatever UPDATE is run
    limited = await add_code(app_pool, a, unique_code("LIM"), percent_off="10", max_redemptions=1)
    await expect_refused(app_pool, a, check, f"UPDATE {S}.discount_codes SET times_redeemed = 2 WHERE id = $1", limited)


async def test_redemption_constraints(app_pool, a, b):
    code_id = await add_code(app_pool, a, unique_code("R"), percent_off="10")
    foreign_id = await add_code(app_pool, b, unique_code("R"), percent_off="10")
    insert = (
        f"INSERT INTO {S}.discount_redemptions (session_id, account_id, discount_code_id, payment_id, created_at) "
        f"VALUES ($1, $2, $3, $4, $5)"
    )
    session_id = new_id("cs")
    async with tenant_tx(app_pool, a) as conn:
        await conn.execute(insert, session_id, a, code_id, "pay_1", NOW)
    await expect_refused(  # one redemption per session
        app_pool, a, asyncpg.exceptions.UniqueViolationError, insert, session_id, a, code_id, "pay_2", NOW
    )
    await expect_refused(  # the code must be the same account's
        app_pool, a, asyncpg.exceptions.ForeignKeyViolationError, insert, new_id("cs"), a, foreign_id, "pay_3", NOW
    )
    await expect_refused(
        app_pool, a, asyncpg.exceptions.ForeignKeyViolationError, insert, new_id("cs"), a, "dc_missing", "pay_4", NOW
    )


async def test_product_and_tax_rate_constraints(app_pool, a):
    product = (
        f"INSERT INTO {S}.products (id, account_id, name, unit_amount, currency, recurring_interval, active, "
        f"created_at, updated_at, deleted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)"
    )
    check = asyncpg.exceptions.CheckViolationError
    for name, amount, currency, interval, active, deleted_at in (
        ("Zero", 0, "USD", None, True, None),
        ("Negative", -100, "USD", None, True, None),
        ("", 100, "USD", None, True, None),
        ("Lower case", 100, "usd", None, True, None),
        ("Daily", 100, "USD", "daily", True, None),
        ("Deleted but active", 100, "USD", None, True, NOW),
    ):
        await expect_refused(
            app_pool, a, check, product, new_id("prod"), a, name, amount, currency, interval, active, NOW, deleted_at
        )
    for interval in (
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
    ):
        async with tenant_tx(app_pool, a) as conn:
            await conn.execute(product, new_id("prod"), a, interval, 100, "USD", interval, True, NOW, None)
    tax = f"INSERT INTO {S}.tax_rates (id, account_id, name, percentage, created_at) VALUES ($1, $2, $3, $4, $5)"
    for percentage in (Decimal("-0.0001"), Decimal("100.0001"), Decimal("999.9999")):
        await expect_refused(app_pool, a, check, tax, new_id("txr"), a, "Bad", percentage, NOW)
    await expect_refused(
        app_pool, a, asyncpg.exceptions.NumericValueOutOfRangeError, tax, new_id("txr"), a, "Huge", Decimal(10**5), NOW
    )
    for percentage in (Decimal(0), Decimal(100), Decimal("99.9999")):
        async with tenant_tx(app_pool, a) as conn:
            await conn.execute(tax, new_id("txr"), a, "Edge", percentage, NOW)
