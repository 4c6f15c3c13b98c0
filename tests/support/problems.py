"""Assertions on RFC 9457 problem responses, and an API client that fails on any 5xx."""

from __future__ import annotations

from typing import Any

from tests.support.client import Api, Response

PROBLEM_FIELDS = ("type", "title", "status", "detail")


def assert_problem(response: Response, status: int, field: str | None = None, *, contains: str | None = None) -> dict:
    """``response`` is an ``application/problem+json`` with ``status``; for validation
    failures (``field`` given) its ``errors`` name that field. Returns the body."""
    body = response.body
    assert response.status == status, f"expected {status}, got {response.status}: {body}"
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith("application/problem+json"), f"not problem+json: {content_type} {body}"
    assert isinstance(body, dict), body
    missing = [k for k in PROBLEM_FIELDS if k not in body]
    assert not missing, f"problem without {missing}: {body}"
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    if field is not None:
        errors = body.get("errors")
        assert isinstance(errors, list) and errors, f"no errors list: {body}"
        for error in errors:
            assert set(error) >= {"field", "message"}, error
            assert isinstance(error["message"], str) and error["message"], error
        fields = [e["field"] for e in errors]
        assert field in fields, f"expected an error for {field!r}, got {fields}: {body}"
        if contains is not None:
            messages = " ".join(e["message"] for e in errors if e["field"] == field)
            assert contains in messages, f"{contains!r} not in the message for {field}: {messages!r}"
    elif contains is not None:
        assert contains in body["detail"], body
    return body


def error_message(body: dict, field: str) -> str:
    return " ".join(e["message"] for e in body.get("errors", []) if e["field"] == field)


class CheckedApi(Api):
    """`Api` that fails the test on any 5xx: bad input must never reach a 500."""

    async def request(self, method: str, path: str, **kw: Any) -> Response:
        response = await super().request(method, path, **kw)
        assert response.status < 500, f"{method} {path[:200]} -> {response.status}: {response.body}"
        return response
