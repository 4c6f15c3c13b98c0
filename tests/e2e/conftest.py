from __future__ import annotations

import aiohttp
import pytest

from tests.support.browser import launch_chromium
from tests.support.client import Api, Buyer

pytestmark = pytest.mark.e2e

ONE_ITEM_LINK = {
    "name": "Test link",
    "currency": "USD",
    "line_items": [{"name": "Coffee beans, 1 kg", "quantity": 2, "unit_amount": 1250}],
}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def new_account(stack):
    """Create a test-mode account with the operator CLI (``commerce accounts create``)."""

    def make(name: str = "Shop", currency: str = "USD", test_mode: bool = True) -> dict:
        return stack.create_account(name, currency, test_mode)

    return make


@pytest.fixture
def account(new_account) -> dict:
    return new_account()


@pytest.fixture
def api(http, stack, account) -> Api:
    return Api(http, stack.config.base_url, account["api_key"])


@pytest.fixture
def buyer(http, stack) -> Buyer:
    return Buyer(http, stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}")


@pytest.fixture
async def link(api) -> dict:
    created = await api.post("/v1/payment_links", ONE_ITEM_LINK)
    assert created.status == 201, created.body
    return created.body


@pytest.fixture(scope="module")
async def browser():
    """Headless Chromium (Debian's), one per test module."""
    async with launch_chromium() as running:
        yield running


@pytest.fixture
def origins(stack) -> set[str]:
    """The origins the checkout page may talk to: ours and the test processor's."""
    return {stack.config.base_url, f"http://127.0.0.1:{stack.config.ports.test_processor}"}
