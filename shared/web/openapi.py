"""What each HTTP handler declares for the OpenAPI document.

A handler records, next to its route, the request model it reads, the query model of a
list, what it answers and the API-key scope it needs::

    @routes.get("/v1/products")
    @operation("List products", scope="links:read", query=ProductList, response=ListOf(ProductOut))
    async def list_products(request): ...

The decorator only records (the handler still parses and authorises by itself);
``devtools/openapi.py`` walks every service's route table and builds ``/openapi.json``
from these records and the pydantic models' JSON schemas. The tests keep the records true:
``tests/integration/test_openapi.py`` (every route documented, the document current and
valid, scopes as the handlers require) and ``tests/e2e/test_schemathesis.py`` (the running
services against the document, TARGETS R10).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute of a handler function that holds its `Operation`.
ATTRIBUTE = "__openapi__"


@dataclass(frozen=True)
class ListOf:
    """A list page of ``item``: ``{"object": "list", "data": [...], "has_more": bool}``."""

    item: type[BaseModel]


@dataclass(frozen=True)
class Html:
    """A page (``text/html``)."""


@dataclass(frozen=True)
class Redirect:
    """A redirect (``Location`` header, no body)."""

    description: str


class Deleted(BaseModel):
    """The answer to a DELETE: ``{"id", "object", "deleted": true}``."""

    model_config = ConfigDict(extra="forbid")

    id: str
    object: str
    deleted: Literal[True]


#: What a response carries: a model, a list of a model, a raw JSON schema, a page, nothing.
Body = type[BaseModel] | ListOf | dict | Html | Redirect | None


@dataclass(frozen=True)
class Operation:
    summary: str
    #: Any one of these API-key scopes is enough; empty: no API key (buyer surface).
    scopes: tuple[str, ...] = ()
    #: The JSON request body's model (or, for a body read raw, its JSON schema);
    #: ``body_optional``: an empty body is accepted too.
    body: type[BaseModel] | dict | None = None
    body_optional: bool = False
    #: A valid request body (the document's example; the mass-assignment test builds on it).
    example: dict | None = None
    #: The model of the query string (list filters and paging).
    query: type[BaseModel] | None = None
    #: The success status and what it carries.
    status: int = 200
    response: Body = None
    #: Other answers that are not problems, e.g. ``{402: SomeModel}``.
    responses: dict[int, Body] = field(default_factory=dict)
    #: Problem statuses this operation answers besides the ones every operation of its
    #: kind may (see ``devtools/openapi.py``: 401/403 for admin calls, 404 for ids, …).
    errors: tuple[int, ...] = ()
    #: Problems are answered as HTML pages instead of problem+json (buyer pages).
    html_errors: bool = False
    #: Request headers the operation reads: name -> (required, description).
    headers: dict[str, tuple[bool, str]] = field(default_factory=dict)
    #: Optional query parameters read without a query model: name -> description.
    query_params: dict[str, str] = field(default_factory=dict)
    description: str | None = None


def not_null(*fields: str) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` of a PATCH model whose optional fields mean "unchanged" when
    absent but may not be set to null: the document leaves null out for ``fields``."""

    def strip(schema: dict[str, Any]) -> None:
        for name in fields:
            prop = schema.get("properties", {}).get(name)
            if prop and "anyOf" in prop:
                options = [o for o in prop["anyOf"] if o != {"type": "null"}]
                del prop["anyOf"]
                prop.pop("default", None)
                if len(options) == 1:
                    prop.update(options[0])
                else:
                    prop["anyOf"] = options

    return strip


def operation(
    summary: str,
    *,
    scope: str | tuple[str, ...] | None = None,
    **kw: Any,
) -> Callable[[F], F]:
    """Record an `Operation` on the handler (put it below the route decorator)."""
    scopes = () if scope is None else (scope,) if isinstance(scope, str) else tuple(scope)
    op = Operation(summary, scopes=scopes, **kw)

    def mark(handler: F) -> F:
        setattr(handler, ATTRIBUTE, op)
        return handler

    return mark


def operation_of(handler: Callable[..., Any]) -> Operation | None:
    return getattr(handler, ATTRIBUTE, None)
