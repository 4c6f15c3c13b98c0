"""The public page of an invoice (``/invoices/{token}``): an HMAC-derived token, stored
hashed (the same scheme as the update link, `subscriptions.tokens`)."""

from __future__ import annotations

from shared.config import CommonSettings
from shared.ids import token_hash
from shared.secrets import derive_token

PURPOSE = "invoice"


def invoice_token(settings: CommonSettings, invoice_id: str, version: int = 1) -> str:
    return derive_token(settings, PURPOSE, f"{invoice_id}:{version}")


def invoice_token_hash(settings: CommonSettings, invoice_id: str, version: int = 1) -> bytes:
    return token_hash(invoice_token(settings, invoice_id, version))


def invoice_url(settings: CommonSettings, invoice_id: str, version: int = 1) -> str:
    return f"{settings.public_base_url.rstrip('/')}/invoices/{invoice_token(settings, invoice_id, version)}"
