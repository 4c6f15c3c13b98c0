"""The OpenAPI document (``GET /openapi.json``) stays true to the code.

- the committed file is exactly what ``devtools/openapi.py`` generates now (``make
  openapi``), so a changed handler or model cannot leave it stale;
- every route of every service app is in it, and nothing else: walked here from the apps
  themselves, not through the generator's own walk;
- it is a valid OpenAPI 3.1 document;
- each admin operation's security scopes are exactly the scopes its handler requires;
- each request example is accepted by the model the handler parses it with.

The running services are checked against it in tests/e2e/test_schemathesis.py (R10).
"""

from __future__ import annotations

import inspect
import json
import re

import pytest
from aiohttp import web
from openapi_spec_validator import validate
from pydantic import BaseModel

from devtools import openapi as generator
from gateway.routes import service_for
from shared.web.auth import SCOPES
from shared.web.openapi import operation_of

DOCUMENT = generator.OUTPUT
#: Routes every process has that are not part of the one base URL's contract.
NOT_DOCUMENTED = {"/healthz", "/readyz", "/metrics"}
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(DOCUMENT.read_text())


@pytest.fixture(scope="module")
def apps() -> dict[str, web.Application]:
    return generator.service_apps()


def app_routes(apps) -> dict[tuple[str, str], tuple[str, object]]:
    """(METHOD, path) -> (service, handler) of every route the service apps serve."""
    found = {}
    for service, app in apps.items():
        for route in app.router.routes():
            resource = route.resource
            if route.method == "HEAD" or isinstance(resource, web.StaticResource):
                continue
            if resource.canonical in NOT_DOCUMENTED:
                continue
            key = (route.method, resource.canonical)
            assert key not in found, f"{key} is served by {found[key][0]} and {service}"
            found[key] = (service, route.handler)
    return found


def documented(document) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def test_committed_document_is_current():
    assert DOCUMENT.read_text() == generator.render(), f"{DOCUMENT} is stale: run `make openapi`"
    assert generator.main(["--check"]) == 0


def test_every_route_is_documented_and_nothing_else(apps, document):
    served = app_routes(apps)
    ops = documented(document)
    assert ("GET", "/v1/payments/{payment_id}") in served  # the walk works
    assert not sorted(set(served) - set(ops)), "served but not documented"
    assert not sorted(set(ops) - set(served)), "documented but not served"
    for key, op in ops.items():
        service = served[key][0]
        assert op["x-service"] == service, key
        sample = re.sub(r"\{[^}]+\}", "x", key[1])
        assert service_for(sample) == service, f"gateway/routes.py sends {key[1]} elsewhere than {service}"


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_paths_answer_the_contract_of_api_md(document):
    """A few fixed points of the contract, so a refactor cannot drop them silently."""
    ops = documented(document)
    for key in [
        ("GET", "/openapi.json"),
        ("GET", "/v1/account"),
        ("PATCH", "/v1/account"),
        ("POST", "/v1/payment_links"),
        ("GET", "/v1/payment_links"),
        ("POST", "/v1/payment_links/{link_id}/clone"),
        ("GET", "/pay/{slug}"),
        ("GET", "/checkout/{token}"),
        ("GET", "/api/checkout/{token}"),
        ("POST", "/api/checkout/{token}"),
        ("POST", "/api/checkout/{token}/complete"),
        ("POST", "/webhooks/stripe/{account_id}"),
        ("POST", "/v1/payments/{payment_id}/refunds"),
        ("GET", "/v1/contacts"),
    ]:
        assert key in ops, key
    listing = ops[("GET", "/v1/payment_links")]
    assert {p["name"] for p in listing["parameters"]} >= {"limit", "starting_after", "query", "active"}
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(page["required"]) == {"object", "data", "has_more"}
    link = document["components"]["schemas"]["LinkOut"]["properties"]
    for field in ("id", "name", "active", "url", "currency", "line_items", "after_completion", "embeddable"):
        assert field in link, field
    problem = ops[("POST", "/v1/products")]["responses"]["422"]["content"]
    assert list(problem) == ["application/problem+json"]


def _required_scopes(handler) -> set[str]:
    """The scopes a handler's source asks for: ``require(request, "…")`` or
    ``ctx.allows("…")`` (any one of several)."""
    source = inspect.getsource(handler)
    for name in re.findall(r"await (_\w+)\(request", source):  # a shared helper of the module
        source += inspect.getsource(handler.__globals__[name])
    return set(re.findall(r"""(?:require\(request,\s*|\.allows\()["']([^"']+)["']""", source))


def test_declared_scopes_are_the_ones_handlers_require(apps, document):
    served = app_routes(apps)
    for key, op in documented(document).items():
        _service, handler = served[key]
        required = _required_scopes(handler)
        if key[1].startswith("/v1/"):
            declared = {scope for entry in op["security"] for scopes in entry.values() for scope in scopes}
            assert declared, f"{key} has no scope"
            assert declared <= set(SCOPES), key
            assert declared == required, f"{key}: documented {declared}, the handler requires {required}"
        else:
            assert op["security"] == [], key
            assert not required, f"{key} is public but its handler requires {required}"


def test_examples_are_accepted_by_the_request_models(apps):
    checked = 0
    for (method, path), (_service, handler) in app_routes(apps).items():
        op = operation_of(handler)
        if op.example is None:
            continue
        assert isinstance(op.body, type) and issubclass(op.body, BaseModel), (method, path)
        op.body.model_validate(op.example)  # raises if the documented example is invalid
        checked += 1
    assert checked >= 20


def test_admin_writes_with_a_body_have_an_example(apps):
    """The mass-assignment test (tests/e2e/test_schemathesis.py) builds on the examples."""
    missing = [
        (method, path)
        for (method, path), (_service, handler) in app_routes(apps).items()
        if path.startswith("/v1/")
        and isinstance(operation_of(handler).body, type)
        and operation_of(handler).example is None
    ]
    assert not missing, missing
