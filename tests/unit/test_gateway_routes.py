"""gateway.routes: every path family of API.md reaches the service that owns it."""

from __future__ import annotations

import pytest

from gateway.routes import PATTERNS, PREFIXES, SERVICES, service_for

#: One or more concrete paths of every family in API.md, and the service that owns it.
API_PATHS: dict[str, list[str]] = {
    "checkout": [
        # accounts and keys
        "/v1/account",
        "/v1/account/processor",
        "/v1/api_keys",
        "/v1/api_keys/key_1/revoke",
        "/v1/test_clock",
        "/v1/test_clock/advance",
        # catalogue
        "/v1/products",
        "/v1/products/prod_1",
        "/v1/tax_rates",
        "/v1/tax_rates/txr_1",
        "/v1/discount_codes",
        # payment links
        "/v1/payment_links",
        "/v1/payment_links/plink_1",
        "/v1/payment_links/plink_1/clone",
        "/v1/payment_links/plink_1/embed",
        "/v1/payment_links/plink_1/preview",
        "/v1/contacts/contact_1/payment_links",
        "/v1/companies/company_1/payment_links",
        "/v1/deals/deal_1/payment_links",
        # buyer surface
        "/pay/abc",
        "/checkout/tok",
        "/api/checkout/tok",
        "/api/checkout/tok/complete",
        "/quotes/tok",
        "/api/quotes/tok/checkout",
        "/api/invoices/tok/checkout",  # an invoice paid online opens a checkout session
        "/webhooks/stripe/acct_1",
        "/assets/checkout/checkout.js",
        # quotes
        "/v1/quotes",
        "/v1/quotes/quote_1",
        "/v1/quotes/quote_1/publish",
        "/v1/quotes/quote_1/recall",
        "/v1/quotes/quote_1/convert_to_subscription",
        # payments
        "/v1/payments",
        "/v1/payments/pay_1",
        "/v1/payments/pay_1/refunds",
        "/v1/payments/pay_1/associations",
        "/openapi.json",
    ],
    "billing": [
        "/v1/subscriptions",
        "/v1/subscriptions/sub_1",
        "/v1/subscriptions/sub_1/cancel",
        "/v1/subscriptions/sub_1/pause",
        "/v1/subscriptions/sub_1/resume",
        "/v1/subscriptions/sub_1/payment_method_link",
        "/v1/invoices",
        "/v1/invoices/inv_1",
        "/v1/invoices/inv_1/void",
        "/v1/invoices/inv_1/mark_paid",
        "/v1/invoices/inv_1/document",
        "/v1/analytics/subscriptions",
        "/v1/ledger_entries",
        "/invoices/tok",
        "/billing/payment-method/tok",
        "/api/payment-method/tok",
        "/api/payment-method/tok/complete",
        "/assets/billing/app.js",
    ],
    "notifications": [
        "/v1/emails",
        "/v1/webhook_endpoints",
        "/v1/webhook_endpoints/we_1",
        "/v1/webhook_endpoints/we_1/deliveries",
        "/v1/events",
    ],
    "crm_sync": [
        "/v1/contacts",
        "/v1/contacts/contact_1",
        "/v1/contacts/contact_1/associations",
        "/v1/companies",
        "/v1/companies/company_1",
        "/v1/deals",
        "/v1/deals/deal_1",
        "/v1/pipelines",
        "/v1/pipelines/pipe_1",
    ],
}


@pytest.mark.parametrize(
    ("path", "service"), [(p, s) for s, paths in API_PATHS.items() for p in paths], ids=lambda v: str(v)
)
def test_api_paths_reach_their_service(path, service):
    assert service_for(path) == service


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "",
        "/v1",
        "/v1/",
        "/v2/payments",
        "/v1/accounts",
        "/v1/account_settings",
        "/v1/paymentsx",
        "/v1/payment",
        "/payx",
        "/checkoutx/1",
        "/api",
        "/api/checkoutx/1",
        "/V1/payments",
        "/v1/unknown",
        "/admin",
        "/healthz",
        "/metrics",
        "/readyz",
        "/v1/contactsx",
        "/webhook/stripe/a",
        "/v1/contacts_export",
    ],
)
def test_unknown_paths_resolve_to_none(path):
    assert service_for(path) is None, path


def test_prefixes_match_whole_segments():
    for service, prefixes in PREFIXES.items():
        for prefix in prefixes:
            assert service_for(prefix) == service
            assert service_for(prefix + "/anything/else") == service
            assert service_for(prefix + "x") is None, prefix + "x"


def test_every_prefix_belongs_to_exactly_one_known_service():
    assert set(PREFIXES) == set(SERVICES)
    seen: dict[str, str] = {}
    for service, prefixes in PREFIXES.items():
        for prefix in prefixes:
            assert prefix.startswith("/") and not prefix.endswith("/")
            assert prefix not in seen, f"{prefix} claimed by {seen.get(prefix)} and {service}"
            seen[prefix] = service
    assert all(p.service in SERVICES for p in PATTERNS)


def test_links_made_from_crm_records_go_to_checkout_but_the_records_to_crm():
    assert service_for("/v1/contacts/contact_1/payment_links") == "checkout"
    assert service_for("/v1/contacts/contact_1/payment_links/x") == "crm_sync"
    assert service_for("/v1/contacts/contact_1") == "crm_sync"
    assert service_for("/v1/contacts//payment_links") == "crm_sync"
