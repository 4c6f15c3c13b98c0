"""Build the OpenAPI 3.1 document of the one base URL from the services' route tables.

``python -m devtools.openapi --write`` (``make openapi``) regenerates the committed file
that checkout serves at ``GET /openapi.json``; ``--check`` exits 1 when it is stale.

How: each service's ``create_app(settings)`` (no I/O) gives its route table; every route
handler carries an `Operation` (``shared/web/openapi.py``) naming its request, query and
response models and its scopes; the models' JSON schemas (pydantic) become the
document's components. A route without an `Operation`, or one the router
(``gateway/routes.py``) would send to another service, is an error here.

Problems every operation of a kind may answer are added here, not declared per handler:
503 (a dependency is down); admin calls (``/v1/``) 401 and 403; with a path id 404; with a JSON body 400, 413,
415 and 422; with a query model or an ``Idempotency-Key`` (every admin POST) 422.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.routes import SERVICES, service_for
from shared.web.openapi import Html, ListOf, Operation, Redirect, operation_of
from shared.web.problem import PROBLEM_JSON

ROOT = Path(__file__).resolve().parent.parent
#: The committed document (served by checkout, ``services/checkout/apidoc``).
OUTPUT = ROOT / "services" / "checkout" / "apidoc" / "openapi.json"
#: Each process's own operations endpoints: not behind the one base URL.
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")
REF = "#/components/schemas/{model}"
SECURITY_SCHEME = "apiKey"

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    303: "See Other",
    400: "Malformed request (body not JSON or not UTF-8)",
    401: "Missing, malformed, unknown or revoked API key",
    402: "Payment not completed",
    403: "The API key lacks the scope (or the request is cross-site)",
    404: "No such object (or another account's)",
    409: "Conflict with the object's state",
    410: "Gone (expired or already used)",
    413: "Request body too large",
    415: "Body is not application/json",
    422: "Validation failed: `errors` names each field",
    429: "Rate limited (see Retry-After)",
    503: "A dependency is unavailable; retry shortly",
    504: "Saved, but not every service confirmed in time",
}

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details; validation problems list `errors`.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


# -- the services' routes -------------------------------------------------------------------------
def service_apps() -> dict[str, web.Application]:
    """``create_app(settings)`` of every service, with default settings (no I/O)."""
    apps = {}
    for service in SERVICES:
        create_app = importlib.import_module(f"services.{service}.app").create_app
        settings_type = typing.get_type_hints(create_app)["settings"]
        apps[service] = create_app(settings_type())
    return apps


def documented_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path, handler) of the app's routes that belong in the document: all but
    HEAD, static files and the process's own ops endpoints."""
    found = []
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None or isinstance(resource, web.StaticResource):
            continue
        path = resource.canonical
        if path in OPS_PATHS:
            continue
        found.append((route.method, path, route.handler))
    return found


def _sample(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


# -- schemas ---------------------------------------------------------------------------------------
def _clean(node: Any, in_properties: bool = False) -> Any:
    """Drop pydantic's generated titles (noise in a document); keep everything else."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "title" and not in_properties and isinstance(value, str):
                continue
            out[key] = _clean(value, in_properties=(key in ("properties", "$defs") and not in_properties))
        return out
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def _short_names(defs: dict[str, Any]) -> dict[str, str]:
    """pydantic names clashing models by module (``services__checkout__links__schemas__X``);
    the document says ``links.X``."""
    renames = {}
    for name in defs:
        if "__" in name:
            parts = name.split("__")
            owner = parts[-3] if parts[-2] == "schemas" else parts[-2]
            renames[name] = f"{owner}.{parts[-1]}"
    if len(set(renames.values()) | (set(defs) - set(renames))) != len(defs):
        raise SystemExit(f"openapi: schema names clash after shortening: {sorted(renames.values())}")
    return renames


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                name = value.rsplit("/", 1)[1]
                value = REF.format(model=renames.get(name, name))
            out[key] = _rename_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


class Schemas:
    """The components: every model the operations name, in one pydantic pass (so that
    shared sub-models are one component and clashing names are told apart)."""

    def __init__(self, models: list[type[BaseModel]]) -> None:
        unique = list(dict.fromkeys(models))
        refs, top = models_json_schema([(m, "validation") for m in unique], ref_template=REF)
        defs = top.get("$defs", {})
        renames = _short_names(defs)
        self.refs = {
            model: _rename_refs(refs[(model, "validation")], renames) for model in unique
        }  # model -> {"$ref": …}
        self.components = {
            renames.get(name, name): _clean(_rename_refs(schema, renames)) for name, schema in sorted(defs.items())
        }
        self.components = dict(sorted(self.components.items()))

    def ref(self, model: type[BaseModel]) -> dict:
        return self.refs[model]

    def component(self, model: type[BaseModel]) -> dict:
        return self.components[self.ref(model)["$ref"].rsplit("/", 1)[1]]


def _models_of(op: Operation) -> list[type[BaseModel]]:
    models = [m for m in (op.body, op.query) if isinstance(m, type)]
    for body in (op.response, *op.responses.values()):
        if isinstance(body, ListOf):
            models.append(body.item)
        elif isinstance(body, type) and issubclass(body, BaseModel):
            models.append(body)
    return models


def _without_null(schema: dict) -> dict:
    """A query value is never JSON null: ``anyOf: [X, null]`` -> X."""
    schema = {k: v for k, v in schema.items() if not (k == "default" and v is None)}
    options = schema.get("anyOf")
    if options:
        rest = [o for o in options if o != {"type": "null"}]
        others = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**rest[0], **others} if len(rest) == 1 else {"anyOf": rest, **others}
    return schema


def _query_parameters(model: type[BaseModel], schemas: Schemas) -> list[dict]:
    component = schemas.component(model)
    required = set(component.get("required", ()))
    params = []
    for name, schema in component.get("properties", {}).items():
        schema = _without_null(schema)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": schema}
        if "description" in schema:
            param["description"] = schema.pop("description")
        params.append(param)
    return params


def _content(body: Any, schemas: Schemas, media_type: str = "application/json") -> dict | None:
    if body is None or isinstance(body, Redirect):
        return None
    if isinstance(body, Html):
        return {"text/html": {"schema": {"type": "string"}}}
    if isinstance(body, ListOf):
        schema = {
            "type": "object",
            "additionalProperties": False,
            "required": ["object", "data", "has_more"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": schemas.ref(body.item)},
                "has_more": {"type": "boolean"},
            },
        }
    elif isinstance(body, dict):
        schema = body
    else:
        schema = schemas.ref(body)
    return {media_type: {"schema": schema}}


def _response(status: int, body: Any, schemas: Schemas) -> dict:
    out: dict[str, Any] = {"description": STATUS_TEXT.get(status, "Answer")}
    if isinstance(body, Redirect):
        out["description"] = body.description
        out["headers"] = {"Location": {"required": True, "schema": {"type": "string"}}}
    content = _content(body, schemas)
    if content:
        out["content"] = content
    return out


def _error_statuses(method: str, path: str, op: Operation) -> set[int]:
    statuses = set(op.errors)
    if path != "/openapi.json":  # everything else reads PostgreSQL or Redis
        statuses.add(503)
    admin = path.startswith("/v1/")
    if admin:
        statuses |= {401, 403}
        if method == "POST":
            statuses.add(422)  # a malformed or reused Idempotency-Key
    if "{" in path:
        statuses.add(404)
    if isinstance(op.body, type):  # parsed by shared/web/request.py
        statuses |= {400, 413, 415, 422}
    if op.query is not None:
        statuses.add(422)
    return statuses


def _operation(service: str, method: str, path: str, handler: Any, op: Operation, schemas: Schemas) -> dict:
    admin = path.startswith("/v1/")
    doc: dict[str, Any] = {
        "operationId": f"{service}.{handler.__name__}",
        "summary": op.summary,
        "tags": [_tag(path)],
    }
    description = op.description or (handler.__doc__ or "").strip()
    if description:
        doc["description"] = re.sub(r"\s*\n\s*", " ", description)
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in re.findall(r"\{([^}]+)\}", path)
    ]
    if op.query is not None:
        params += _query_parameters(op.query, schemas)
    for name, text in op.query_params.items():
        params.append(
            {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
        )
    for name, (required, text) in op.headers.items():
        params.append(
            {"name": name, "in": "header", "required": required, "description": text, "schema": {"type": "string"}}
        )
    if admin and method == "POST":
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Retries with the same key and body get the first answer.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
            }
        )
    if params:
        doc["parameters"] = params
    if op.body is not None:
        media = {"schema": op.body if isinstance(op.body, dict) else schemas.ref(op.body)}
        if op.example is not None:
            media["example"] = op.example
        doc["requestBody"] = {"required": not op.body_optional, "content": {"application/json": media}}
    responses = {str(op.status): _response(op.status, op.response, schemas)}
    for status, body in op.responses.items():
        responses[str(status)] = _response(status, body, schemas)
    for status in sorted(_error_statuses(method, path, op)):
        page = op.html_errors and status < 500  # a page's own errors are pages too
        media = "text/html" if page else PROBLEM_JSON
        schema = {"type": "string"} if page else {"$ref": "#/components/schemas/Problem"}
        responses.setdefault(
            str(status), {"description": STATUS_TEXT.get(status, "Problem"), "content": {media: {"schema": schema}}}
        )
    doc["responses"] = dict(sorted(responses.items()))
    if admin:
        doc["security"] = [{SECURITY_SCHEME: [scope]} for scope in op.scopes]
    else:
        doc["security"] = []
    doc["x-service"] = service
    return doc


def _tag(path: str) -> str:
    parts = path.strip("/").split("/")
    if parts[0] == "v1":
        return parts[1]
    return "buyer" if parts[0] in ("pay", "checkout", "api") else parts[0].replace(".json", "")


# -- the document ------------------------------------------------------------------------------------
def collect() -> list[tuple[str, str, str, Any, Operation]]:
    """(service, method, path, handler, operation) of every documented route; raises
    SystemExit naming every route that has no operation or is routed elsewhere."""
    found, problems = [], []
    for service, app in service_apps().items():
        for method, path, handler in documented_routes(app):
            op = operation_of(handler)
            if op is None:
                problems.append(f"{service}: {method} {path} has no @operation (shared/web/openapi.py)")
                continue
            routed = service_for(_sample(path))
            if routed != service:
                problems.append(f"{service}: {method} {path} is routed to {routed} by gateway/routes.py")
            if path.startswith("/v1/") and not op.scopes:
                problems.append(f"{service}: {method} {path} is an admin route without a scope")
            found.append((service, method, path, handler, op))
    if problems:
        raise SystemExit("openapi:\n  " + "\n  ".join(problems))
    return found


def build() -> dict[str, Any]:
    routes = collect()
    schemas = Schemas([m for *_, op in routes for m in _models_of(op)])
    paths: dict[str, dict[str, Any]] = {}
    seen_ids: set[str] = set()
    for service, method, path, handler, op in sorted(
        routes, key=lambda r: (r[2], METHOD_ORDER.index(r[1]) if r[1] in METHOD_ORDER else 99)
    ):
        doc = _operation(service, method, path, handler, op, schemas)
        if doc["operationId"] in seen_ids:
            raise SystemExit(f"openapi: two handlers named {doc['operationId']}")
        seen_ids.add(doc["operationId"])
        paths.setdefault(path, {})[method.lower()] = doc
    components = _referenced({"Problem": PROBLEM_SCHEMA, **schemas.components}, paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "commerce",
            "version": "v1",
            "description": (
                "The public HTTP contract of the one base URL: the admin API (`/v1/…`, "
                "`Authorization: Bearer <API key>`) and the buyer surface. Money is integer "
                "minor units with an ISO 4217 `currency`; instants are RFC 3339; lists are "
                "`?limit=&starting_after=` pages, newest first; errors are "
                "`application/problem+json`. Generated from the services' route tables "
                "(`make openapi`)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`ck_test_…` / `ck_live_…`). Each operation lists the "
                    "scope it needs; a write scope implies its read scope and `*` allows everything.",
                }
            },
        },
    }


def _refs_in(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs_in(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs_in(v) for v in node)) if node else set()
    return set()


def _referenced(components: dict[str, Any], paths: dict[str, Any]) -> dict[str, Any]:
    """The components the paths use, directly or through others (query models are
    inlined as parameters, so theirs are dropped)."""
    wanted, todo = set(), _refs_in(paths)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo |= _refs_in(components[name])
    return {name: schema for name, schema in components.items() if name in wanted}


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write {OUTPUT.relative_to(ROOT)}")
    group.add_argument("--check", action="store_true", help="exit 1 if the committed document is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT.relative_to(ROOT)}")
    elif args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: make openapi", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
