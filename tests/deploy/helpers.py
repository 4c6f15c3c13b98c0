"""What the deploy tests share: paths, the settings classes and their environment names,
YAML loading, and small simulations of how nginx and ingress-nginx pick a location.

Everything here is offline and pure: no container engine, no cluster, no network.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "compose.yaml"
NGINX_CONF = DEPLOY / "compose" / "nginx.conf"
INGRESS_FILE = K8S / "ingress.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"

SERVICES = ("checkout", "billing", "notifications", "crm_sync")
#: Long-running process types every service has.
PROCESSES = ("serve", "worker", "relay")
#: Process types only some services have (their ``ServiceSpec`` names a module for them).
EXTRA_PROCESSES = {"billing": ("scheduler",)}
#: The settings field of the port each process type's /healthz, /readyz and /metrics are on.
PORT_FIELD = {
    "serve": "http_port",
    "worker": "worker_metrics_port",
    "relay": "relay_metrics_port",
    "scheduler": "scheduler_metrics_port",
}
SETTINGS_CLASSES = {
    "checkout": "services.checkout.settings:CheckoutSettings",
    "billing": "services.billing.settings:BillingSettings",
    "notifications": "services.notifications.settings:NotificationsSettings",
    "crm_sync": "services.crm_sync.settings:CrmSettings",
}
#: Variables read outside the settings classes (commerce_cli, devtools.stack, gateway.proxy,
#: shared.worker, shared.failpoints); .env.example documents them too.
STACK_VARIABLES = frozenset(
    {
        "COMMERCE_BOOTSTRAP_DATABASE_URL",
        "COMMERCE_DATABASE_NAME",
        "COMMERCE_DB_ROLE_PASSWORD",
        "COMMERCE_RUN_PORT_OFFSET",
        "COMMERCE_RUN_DIR",
        "COMMERCE_PRIVATE_PG_PORT",
        "COMMERCE_PRIVATE_REDIS_PORT",
        "GATEWAY_HOST",
        "GATEWAY_PORT",
        *(f"GATEWAY_{s.upper()}_URL" for s in SERVICES),
        "PROMETHEUS_MULTIPROC_DIR",
        "COMMERCE_FAILPOINTS",
    }
)
#: Read by KEDA (keda-scaledobjects.yaml, addressFromEnv) from the worker's environment.
KEDA_VARIABLES = frozenset({"KEDA_REDIS_ADDRESS"})


def slug(service: str) -> str:
    return service.replace("_", "-")


def processes(service: str) -> tuple[str, ...]:
    """Every long-running process type of a service (the deployments run each one)."""
    return PROCESSES + EXTRA_PROCESSES.get(service, ())


#: (service, process) of every long-running process of the system.
SERVICE_PROCESSES = tuple((s, p) for s in SERVICES for p in processes(s))


# --- settings ---------------------------------------------------------------------------------
def settings_class(service: str) -> type[BaseSettings]:
    module, _, name = SETTINGS_CLASSES[service].partition(":")
    return getattr(importlib.import_module(module), name)


def env_prefix(cls: type[BaseSettings]) -> str:
    return cls.model_config.get("env_prefix", "")


def render_default(value: Any) -> str:
    """A default as .env.example writes it (empty = unset)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def _is_nested_settings(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseSettings)


def settings_fields(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment name -> rendered default of every field of a settings class.

    Nested settings (ServiceSettings.common) read their own prefix and are skipped; a field
    without a default renders as empty (required).
    """
    from pydantic_core import PydanticUndefined

    prefix = env_prefix(cls)
    fields: dict[str, str] = {}
    for name, field in cls.model_fields.items():
        if _is_nested_settings(field.annotation):
            continue
        default = None if field.default is PydanticUndefined else field.default
        fields[f"{prefix}{name}".upper()] = render_default(default)
    return fields


def all_settings() -> dict[str, dict[str, str]]:
    """Prefix -> {environment name -> rendered default}, for CommonSettings and every service."""
    from shared.config import CommonSettings

    classes = [CommonSettings, *(settings_class(s) for s in SERVICES)]
    return {env_prefix(cls): settings_fields(cls) for cls in classes}


def known_variables() -> set[str]:
    names = {name for fields in all_settings().values() for name in fields}
    return names | STACK_VARIABLES


def service_default(service: str, field: str) -> Any:
    return settings_class(service).model_fields[field].default


def service_prefix(service: str) -> str:
    return env_prefix(settings_class(service))


# --- YAML ---------------------------------------------------------------------------------------
def load_yaml_documents(path: Path) -> list[dict]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


@dataclass(frozen=True)
class Manifest:
    path: Path
    doc: dict

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def name(self) -> str:
        return self.doc["metadata"]["name"]

    @property
    def label(self) -> str:
        return f"{self.path.relative_to(K8S)}:{self.kind}/{self.name}"


def k8s_manifests(folder: Path = K8S, recursive: bool = True) -> list[Manifest]:
    pattern = "**/*.yaml" if recursive else "*.yaml"
    return [
        Manifest(path, doc)
        for path in sorted(folder.glob(pattern))
        if path.name != "kustomization.yaml"
        for doc in load_yaml_documents(path)
    ]


# --- nginx ---------------------------------------------------------------------------------------
_LOCATION = re.compile(r'^\s*location\s+(?:(=|~\*|~|\^~)\s+)?("(?:[^"\\]|\\.)*"|\S+)\s*\{(.*)$')


@dataclass(frozen=True)
class NginxLocation:
    modifier: str  # "", "=", "~", "~*", "^~"; "@" for named locations
    path: str
    body: str

    @property
    def proxy_pass(self) -> str | None:
        match = re.search(r"proxy_pass\s+([^;]+);", self.body)
        return match.group(1).strip() if match else None

    @property
    def is_regex(self) -> bool:
        return self.modifier in ("~", "~*")


def parse_nginx_locations(text: str) -> tuple[list[NginxLocation], dict[str, str]]:
    """The locations of the (single) server block, in order, and its ``set $var value;`` lines."""
    locations: list[NginxLocation] = []
    variables = dict(re.findall(r"^\s*set\s+(\$\w+)\s+([^;]+);", text, re.MULTILINE))
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _LOCATION.match(lines[i])
        if not match:
            i += 1
            continue
        modifier, path, rest = match.group(1) or "", match.group(2), match.group(3)
        if path.startswith('"'):
            path = path[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        if path.startswith("@"):
            modifier = "@"
        body = [rest]
        depth = 1 + rest.count("{") - rest.count("}")
        while depth > 0:
            i += 1
            body.append(lines[i])
            depth += lines[i].count("{") - lines[i].count("}")
        locations.append(NginxLocation(modifier, path, "\n".join(body)))
        i += 1
    return locations, variables


def nginx_select(locations: list[NginxLocation], uri: str) -> NginxLocation | None:
    """nginx's choice: an exact match; else the longest prefix, unless it is ``^~`` a
    matching regex (first in file order) wins; else that longest prefix."""
    for loc in locations:
        if loc.modifier == "=" and loc.path == uri:
            return loc
    prefixes = [loc for loc in locations if loc.modifier in ("", "^~") and uri.startswith(loc.path)]
    longest = max(prefixes, key=lambda loc: len(loc.path), default=None)
    if longest is not None and longest.modifier == "^~":
        return longest
    for loc in locations:
        if loc.is_regex:
            flags = re.IGNORECASE if loc.modifier == "~*" else 0
            if re.search(loc.path, uri, flags):
                return loc
    return longest


# --- ingress-nginx ----------------------------------------------------------------------------
def ingress_nginx_order(paths: list[str]) -> list[str]:
    """ingress-nginx writes locations sorted by path (descending), then stably by length (descending)."""
    return sorted(sorted(paths, reverse=True), key=len, reverse=True)


def ingress_select(paths: list[str], uri: str) -> str | None:
    """With use-regex every path is ``location ~* "^<path>"``; the first match wins."""
    for path in ingress_nginx_order(paths):
        if re.match("^" + path, uri, re.IGNORECASE):
            return path
    return None


def sample_paths() -> list[str]:
    """Paths around every route: each prefix bare, with a trailing slash, deeper, and
    with a longer last segment (which must not match), plus the patterns' own examples."""
    from gateway.routes import PREFIXES

    samples = ["/", "/healthz", "/nope", "/v1", "/v1/", "/v1/accounts", "/api", "/assets", "/assets/other/x.js"]
    for prefixes in PREFIXES.values():
        for prefix in prefixes:
            samples += [
                prefix,
                prefix + "/",
                prefix + "/x",
                prefix + "/x/y",
                prefix + "s",
                prefix + "-x",
                prefix + "_x",
            ]
    return samples + PATTERN_SAMPLES


#: Concrete paths for gateway.routes.PATTERNS (a new pattern needs samples here: checked).
PATTERN_SAMPLES = [
    "/v1/contacts/contact_1/payment_links",
    "/v1/companies/company_1/payment_links",
    "/v1/deals/deal_1/payment_links",
    "/v1/contacts/contact_1/payment_links/x",
    "/v1/contacts/contact_1/payment_linksx",
    "/v1/contacts//payment_links",
    "/v1/contacts/a/b/payment_links",
    "/v1/pipelines/p_1/payment_links",
]


def interpolate_defaults(value: str) -> str:
    """Resolve compose ``${VAR:-default}`` / ``${VAR-default}`` to their defaults (``${VAR}`` to "")."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value).replace("$$", "$")
