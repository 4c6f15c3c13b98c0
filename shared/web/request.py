"""Reading request input strictly: size, media type, UTF-8, JSON shape, card numbers.

Every failure is a 4xx problem that names the field; nothing reaches a handler (or the
database) that could make it fail with a 500: NUL characters and lone surrogates, which
PostgreSQL cannot store, are refused here, and so is anything that looks like a payment
card number — card data belongs in the processor's fields only (TARGETS security).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .problem import BadRequest, NotFound, UnsupportedMediaType, ValidationProblem

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 1024 * 1024
#: Deepest nesting of objects and arrays a body may have (deeper would exhaust the stack).
MAX_DEPTH = 32
_CARD_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){14,18}\d(?!\d)")
_CARD_PREFIXES = re.compile(r"^(4|5[1-5]|2[2-7]|3[47]|3[068]|35|6011|64[4-9]|65|62)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def looks_like_card_number(text: str) -> bool:
    """15–19 digits (spaces or dashes allowed) with a card-network prefix and a valid Luhn
    check digit. Shorter runs are left alone so that phone numbers (≤ 15 digits, E.164)
    are rarely mistaken for cards."""
    for match in _CARD_CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 15 <= len(digits) <= 19 and _CARD_PREFIXES.match(digits) and luhn_valid(digits):
            return True
    return False


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "body"


def scan_strings(value: Any, loc: tuple = ()) -> None:
    """Refuse text that PostgreSQL cannot store or that carries a card number, and
    nesting deeper than `MAX_DEPTH`."""
    errors: list[dict[str, str]] = []

    def walk(v: Any, path: tuple, depth: int = 0) -> None:
        if isinstance(v, dict | list) and depth >= MAX_DEPTH:
            errors.append({"field": field_path(path), "message": f"is nested more than {MAX_DEPTH} levels deep"})
        elif isinstance(v, str):
            if "\x00" in v:
                errors.append({"field": field_path(path), "message": "must not contain NUL characters"})
            else:
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    errors.append({"field": field_path(path), "message": "must be valid Unicode text"})
                    return
                if looks_like_card_number(v):
                    errors.append(
                        {
                            "field": field_path(path),
                            "message": "looks like a payment card number; card details are "
                            "entered only in the payment processor's fields",
                        }
                    )
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and "\x00" in k:
                    errors.append({"field": field_path(path), "message": "invalid key"})
                walk(item, (*path, k), depth + 1)
        elif isinstance(v, list):
            for i, item in enumerate(v):
                walk(item, (*path, i), depth + 1)

    walk(value, loc)
    if errors:
        raise ValidationProblem(errors)


@web.middleware
async def path_middleware(request: web.Request, handler) -> web.StreamResponse:
    """A path with NUL or a lone surrogate names nothing that can exist (PostgreSQL
    cannot store such text): 404 here, before an id reaches a query and fails with 500."""
    path = request.path
    if "\x00" in path or not _encodable(path):
        raise NotFound("No such resource.")
    return await handler(request)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def json_body(request: web.Request, *, allow_empty: bool = False, scan: bool = True) -> dict[str, Any]:
    """The body as a JSON object. ``scan=False`` leaves `scan_strings` to the caller (a
    batch endpoint that checks text row by row, so one bad row does not refuse the rest)."""
    raw = await request.read()  # aiohttp refuses bodies over client_max_size with 413
    if not raw.strip():
        if allow_empty:
            return {}
        raise ValidationProblem([{"field": "body", "message": "a JSON object is required"}])
    if request.content_type not in ("application/json", "application/merge-patch+json"):
        raise UnsupportedMediaType("Send the body as application/json.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(
            "The body is not valid UTF-8.", errors=[{"field": "body", "message": "invalid UTF-8"}]
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"The body is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).",
            errors=[{"field": "body", "message": "malformed JSON"}],
        ) from None
    except (ValueError, RecursionError):  # a number too long to convert; nesting too deep
        raise BadRequest(
            "The body is not acceptable JSON (a number is too long or the nesting too deep).",
            errors=[{"field": "body", "message": "malformed JSON"}],
        ) from None
    if not isinstance(data, dict):
        raise ValidationProblem([{"field": "body", "message": "must be a JSON object"}])
    if scan:
        scan_strings(data)
    return data


def validation_errors(exc: ValidationError, prefix: tuple = ()) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "is not a known field (or may not be set)"
        errors.append({"field": field_path(loc), "message": message})
    return errors


def validate(model: type[M], data: Any, *, prefix: tuple = ()) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationProblem(validation_errors(exc, prefix)) from None


async def parse_body(request: web.Request, model: type[M], *, allow_empty: bool = False, scan: bool = True) -> M:
    return validate(model, await json_body(request, allow_empty=allow_empty, scan=scan))


def parse_query(request: web.Request, model: type[M]) -> M:
    data: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        data[key] = values if len(values) > 1 else values[0]
    scan_strings(data)
    return validate(model, data)
