"""Which service answers which public path — the single source of the routing.

The local proxy (`gateway.proxy`) routes with this table; the compose router's nginx
configuration and the Kubernetes Ingress in ``deploy/`` are checked against it by
``tests/deploy``. Prefixes match whole path segments (``/v1/account`` matches
``/v1/account`` and ``/v1/account/processor``, not ``/v1/accounts``), as Ingress
``Prefix`` paths do; the few patterns are matched first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVICES = ("checkout", "billing", "notifications", "crm_sync")


@dataclass(frozen=True)
class Pattern:
    regex: str
    service: str


#: Matched before the prefixes: links created from a CRM record belong to checkout.
PATTERNS: tuple[Pattern, ...] = (Pattern(r"^/v1/(contacts|companies|deals)/[^/]+/payment_links$", "checkout"),)

PREFIXES: dict[str, tuple[str, ...]] = {
    "checkout": (
        "/v1/account",
        "/v1/api_keys",
        "/v1/test_clock",
        "/v1/products",
        "/v1/tax_rates",
        "/v1/discount_codes",
        "/v1/payment_links",
        "/v1/payments",
        "/v1/quotes",
        "/pay",
        "/checkout",
        "/api/checkout",
        "/quotes",
        "/api/quotes",
        "/api/invoices",
        "/webhooks",
        "/assets/checkout",
        "/openapi.json",
    ),
    "billing": (
        "/v1/subscriptions",
        "/v1/invoices",
        "/v1/analytics",
        "/v1/ledger_entries",
        "/invoices",
        "/billing",
        "/api/payment-method",
        "/assets/billing",
    ),
    "notifications": ("/v1/emails", "/v1/webhook_endpoints", "/v1/events"),
    "crm_sync": ("/v1/contacts", "/v1/companies", "/v1/deals", "/v1/pipelines"),
}

_COMPILED = tuple((re.compile(p.regex), p.service) for p in PATTERNS)
_BY_LENGTH = sorted(
    ((prefix, service) for service, prefixes in PREFIXES.items() for prefix in prefixes),
    key=lambda item: -len(item[0]),
)


def service_for(path: str) -> str | None:
    for regex, service in _COMPILED:
        if regex.match(path):
            return service
    for prefix, service in _BY_LENGTH:
        if path == prefix or path.startswith(prefix + "/"):
            return service
    return None
