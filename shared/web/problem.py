"""RFC 9457 problem details, and the middleware that turns every failure into one.

A handler raises a `Problem`; an unexpected exception becomes a 500 problem without
internals; a database outage becomes 503 with ``Retry-After``. Validation failures list
``errors: [{field, message}]`` naming each field.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

import redis.exceptions
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from ..db import UNAVAILABLE_ERRORS
from ..logging import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    status: int = 500
    slug: str | None = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
        status: int | None = None,
        slug: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if status is not None:
            self.status = status
        if slug is not None:
            self.slug = slug
        self.title = title or HTTPStatus(self.status).phrase
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(detail or self.title)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/problems/{self.slug}" if self.slug else "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body

    def to_response(self) -> web.Response:
        return web.Response(
            status=self.status,
            text=json.dumps(self.body()),
            content_type=PROBLEM_JSON,
            headers=self.headers,
        )


class BadRequest(Problem):
    status = 400
    slug = "bad-request"


class Unauthorized(Problem):
    status = 401
    slug = "unauthorized"

    def __init__(self, detail: str = "A valid API key is required.", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="commerce"'})
        super().__init__(detail, **kw)


class Forbidden(Problem):
    status = 403
    slug = "forbidden"


class NotFound(Problem):
    status = 404
    slug = "not-found"


class Conflict(Problem):
    status = 409
    slug = "conflict"


class Gone(Problem):
    status = 410
    slug = "gone"


class PayloadTooLarge(Problem):
    status = 413
    slug = "payload-too-large"


class UnsupportedMediaType(Problem):
    status = 415
    slug = "unsupported-media-type"


class ValidationProblem(Problem):
    status = 422
    slug = "validation-error"

    def __init__(self, errors: list[dict[str, str]], detail: str | None = None, **kw: Any) -> None:
        if detail is None:
            fields = ", ".join(sorted({e["field"] for e in errors}))
            detail = f"Invalid value for: {fields}" if fields else "The request is invalid."
        super().__init__(detail, errors=errors, title="Validation failed", **kw)


def field_error(field: str, message: str) -> ValidationProblem:
    return ValidationProblem([{"field": field, "message": message}])


class TooManyRequests(Problem):
    status = 429
    slug = "rate-limited"

    def __init__(self, retry_after: int, detail: str = "Too many requests.", **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(max(1, retry_after))})
        super().__init__(detail, **kw)


class ServiceUnavailable(Problem):
    status = 503
    slug = "unavailable"

    def __init__(self, detail: str = "A dependency is unavailable; retry shortly.", **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": "1"})
        super().__init__(detail, **kw)


_HTTP_DETAIL = {
    404: "No such resource.",
    405: "Method not allowed on this resource.",
    413: "The request body is too large.",
}


@web.middleware
async def problem_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem.to_response()
    except RequestPayloadError:  # e.g. a Content-Encoding the body does not decode with
        return BadRequest(
            "The request body could not be read (bad Content-Encoding or framing).",
            errors=[{"field": "body", "message": "could not be decoded"}],
        ).to_response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return Problem(_HTTP_DETAIL.get(exc.status, exc.reason), status=exc.status, headers=headers).to_response()
    except asyncio.CancelledError:
        raise
    except (*UNAVAILABLE_ERRORS, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("dependency unavailable", error=repr(exc), path=request.path)
        return ServiceUnavailable().to_response()
    except Exception:
        log.exception("unhandled error", path=request.path, method=request.method)
        return Problem("An unexpected error occurred.", status=500).to_response()
