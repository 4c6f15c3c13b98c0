"""The checkout page cache (services/checkout/sessions/handlers.py, TARGETS P1): the page
served (rendered once per "same page", then filled in with each session's token and
CSRF token) is byte for byte what a fresh render of that session gives; and a change of
the link or of the account shows on the next session's page.

The served page comes from the running stack; the fresh render from the same code in this
process (the checkout app built from the stack's environment, no cache involved), reading
the session through the same load path as the service.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from services.checkout.app import create_app
from services.checkout.sessions import handlers, service
from services.checkout.settings import CheckoutSettings
from shared.db import create_pool

pytestmark = pytest.mark.e2e

LINK = {
    "name": "Cache link",
    "currency": "USD",
    "line_items": [
        {"name": "Beans", "quantity": 1, "unit_amount": 2490},
        {"name": "Mug", "quantity": 1, "unit_amount": 900, "optional": True},
    ],
    "allow_discount_codes": True,
}


@pytest.fixture
def checkout_app(stack, monkeypatch):
    for name, value in stack.env.items():
        if name.startswith(("CHECKOUT_", "COMMERCE_")):
            monkeypatch.setenv(name, value)
    return create_app(CheckoutSettings())


@pytest.fixture
async def pool(stack):
    pool = await create_pool(stack.env["CHECKOUT_DATABASE_URL"], application_name="page-cache-test", max_size=2)
    yield pool
    await pool.close()


async def _open(http, stack, link: dict) -> str:
    async with http.get(link["url"], allow_redirects=False) as r:
        assert r.status == 303, r.status
        return r.headers["Location"].rsplit("/", 1)[1]


async def _served(http, stack, token: str) -> tuple[bytes, dict]:
    async with http.get(f"{stack.config.base_url}/checkout/{token}") as r:
        assert r.status == 200, r.status
        return await r.read(), r.headers.copy()


async def _fresh(checkout_app, pool, token: str):
    opened = await service.load(pool, token)
    request = make_mocked_request("GET", f"/checkout/{token}", app=checkout_app)
    response = handlers.render_checkout_page(request, opened, token)
    assert response.status == 200
    return response.body, response.headers, opened.session["csrf_token"]


async def _assert_same_as_fresh(http, stack, checkout_app, pool, token: str) -> bytes:
    served, served_headers = await _served(http, stack, token)
    fresh, fresh_headers, csrf = await _fresh(checkout_app, pool, token)
    assert served == fresh
    for name in ("Content-Type", "Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"):
        assert served_headers[name] == fresh_headers[name], name
    assert served_headers["Cache-Control"] == "no-store"
    page = served.decode()
    assert f'data-token="{token}"' in page and f'data-csrf="{csrf}"' in page
    return served


async def test_a_cached_page_is_the_fresh_render_of_each_session(http, stack, api, checkout_app, pool):
    created = await api.post("/v1/payment_links", LINK)
    assert created.status == 201, created.body
    first, second = await _open(http, stack, created.body), await _open(http, stack, created.body)

    page_1 = await _assert_same_as_fresh(http, stack, checkout_app, pool, first)
    page_2 = await _assert_same_as_fresh(http, stack, checkout_app, pool, second)
    page_1_again = await _assert_same_as_fresh(http, stack, checkout_app, pool, first)
    assert page_1 == page_1_again
    assert page_1 != page_2  # each session its own token and CSRF token
    csrf_1 = (await service.load(pool, first)).session["csrf_token"]
    csrf_2 = (await service.load(pool, second)).session["csrf_token"]
    assert page_1.replace(first.encode(), second.encode()).replace(csrf_1.encode(), csrf_2.encode()) == page_2


async def test_a_changed_link_or_account_shows_on_the_next_page(http, stack, api, checkout_app, pool):
    created = await api.post("/v1/payment_links", LINK)
    assert created.status == 201, created.body
    link = created.body
    before = await _open(http, stack, link)
    page_before = await _assert_same_as_fresh(http, stack, checkout_app, pool, before)

    changed = await api.patch(
        f"/v1/payment_links/{link['id']}",
        {"line_items": [{"name": "Tea", "quantity": 2, "unit_amount": 700}]},
    )
    assert changed.status == 200, changed.body
    after_link = await _open(http, stack, link)
    page_after_link = await _assert_same_as_fresh(http, stack, checkout_app, pool, after_link)
    assert b"Tea" in page_after_link and b"Beans" not in page_after_link
    # the session opened before keeps its snapshot of the link
    assert await _assert_same_as_fresh(http, stack, checkout_app, pool, before) == page_before

    renamed = await api.patch("/v1/account", {"name": "Renamed shop"})
    assert renamed.status == 200, renamed.body
    after_account = await _open(http, stack, link)
    page_after_account = await _assert_same_as_fresh(http, stack, checkout_app, pool, after_account)
    assert b"Renamed shop" in page_after_account
    assert b"Renamed shop" in await _assert_same_as_fresh(http, stack, checkout_app, pool, after_link)
