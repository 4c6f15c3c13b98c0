"""Paying a record (an invoice, a quote) through its public page's Pay button."""

from __future__ import annotations

from typing import Any

from tests.support.client import Api


async def pay_through_button(api: Api, buyer, path: str, email: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The buyer presses the button (its JSON form; pressed twice: the same open session)
    and pays with a card. Returns (the session as the page showed it, the completion)."""
    opened = await api.request("POST", path, key="")
    assert opened.status == 201, opened.body
    assert opened.body["url"].endswith(f"/checkout/{opened.body['session_token']}")
    again = await api.request("POST", path, key="")  # the same open session, never a second one
    assert again.status == 201 and again.body["session_token"] == opened.body["session_token"]
    buyer.token = opened.body["session_token"]
    view = await buyer.view()
    assert view.status == 200, view.body
    buyer.csrf = view.body["csrf_token"]
    submitted = await buyer.submit({"email": email})
    assert submitted.status == 200, submitted.body
    confirmed = await buyer.confirm_card(submitted.body["payment"]["client_secret"])
    assert confirmed["http_status"] == 200, confirmed
    done = await buyer.complete()
    assert done.status == 200 and done.body["status"] == "complete", done.body
    return view.body, done.body
