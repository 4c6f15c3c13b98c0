"""Request and response shapes of the account endpoints."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, StrictBool, field_validator

from shared.accounts import Account, SubscriptionSettings
from shared.clock import SYSTEM_CLOCK, rfc3339
from shared.link_settings import PaymentLinkDefaults
from shared.web.auth import SCOPES
from shared.web.openapi import not_null

#: Fields of `AccountPatch` that may be left out but not set to null.
ACCOUNT_NOT_NULL = (
    "name",
    "time_zone",
    "default_currency",
    "currencies",
    "language",
    "notification_recipients",
    "payment_link_defaults",
    "subscription_settings",
    "shipping_enabled",
    "notifications",
)


class AccountPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=not_null(*ACCOUNT_NOT_NULL))

    name: str | None = Field(default=None, min_length=1, max_length=200)
    logo_url: str | None = None
    time_zone: str | None = None
    default_currency: str | None = None
    currencies: list[str] | None = None
    language: str | None = None
    notification_recipients: list[str] | None = None
    payment_link_defaults: PaymentLinkDefaults | None = None
    subscription_settings: SubscriptionSettings | None = None
    shipping_enabled: StrictBool | None = None
    notifications: dict[str, StrictBool] | None = None


class StripeConnect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["stripe"] = "stripe"
    secret_key: str = Field(min_length=10, max_length=255)
    publishable_key: str = Field(min_length=10, max_length=255)
    webhook_secret: str = Field(min_length=10, max_length=255)
    #: Test-mode accounts only: another Stripe-compatible API (e.g. the test processor).
    api_base: str | None = Field(default=None, max_length=500)

    @field_validator("api_base")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018  (raises ValueError for a malformed port)
        except ValueError:
            raise ValueError("must be an http(s) URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in v):
            raise ValueError("must be an http(s) URL")
        return v

    @field_validator("secret_key")
    @classmethod
    def _sk(cls, v: str) -> str:
        if not v.startswith(("sk_live_", "sk_test_", "rk_live_", "rk_test_")):
            raise ValueError("must be a Stripe secret or restricted key (sk_… or rk_…)")
        return v

    @field_validator("publishable_key")
    @classmethod
    def _pk(cls, v: str) -> str:
        if not v.startswith(("pk_live_", "pk_test_")):
            raise ValueError("must be a Stripe publishable key (pk_…)")
        return v

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, v: str) -> str:
        if not v.startswith("whsec_"):
            raise ValueError("must be a Stripe webhook signing secret (whsec_…)")
        return v


class TestConnect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["test"]


def rfc3339_text(value: Any) -> Any:
    """An instant is JSON text: a number is not read as Unix seconds."""
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 instant (a string)")
    return value


#: How far ahead of real time a test clock may go: every date computed from it (expiries,
#: renewals years ahead) must stay representable (Python dates end in year 9999).
MAX_CLOCK_AHEAD = timedelta(days=100 * 366)


class ClockAdvance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Annotated[datetime, BeforeValidator(rfc3339_text)]

    @field_validator("to")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must be an RFC 3339 instant with a time zone offset")
        if v > SYSTEM_CLOCK.now() + MAX_CLOCK_AHEAD:
            raise ValueError("must be at most 100 years after the current real time")
        return v


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=len(SCOPES))
    name: str | None = Field(default=None, max_length=200)

    @field_validator("scopes")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}")
        return sorted(set(v))


def account_out(account: Account, created_at: datetime) -> dict[str, Any]:
    s = account.settings
    return {
        "id": account.id,
        "object": "account",
        "name": account.name,
        "test_mode": account.test_mode,
        "logo_url": s.logo_url,
        "time_zone": s.time_zone,
        "default_currency": s.default_currency,
        "currencies": s.currencies,
        "language": s.language,
        "notification_recipients": s.notification_recipients,
        "payment_link_defaults": s.payment_link_defaults.model_dump(mode="json"),
        "subscription_settings": s.subscription_settings.model_dump(),
        "shipping_enabled": s.shipping_enabled,
        "notifications": s.notifications,
        "created_at": rfc3339(created_at),
    }


def key_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "api_key",
        "prefix": row["prefix"],
        "scopes": list(row["scopes"]),
        "created_at": rfc3339(row["created_at"]),
        "revoked_at": rfc3339(row["revoked_at"]) if row["revoked_at"] else None,
    }


# -- response shapes (the OpenAPI document; `account_out` / `key_out` build them) --------------
class AccountOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["account"]
    name: str
    test_mode: bool
    logo_url: str | None
    time_zone: str
    default_currency: str
    currencies: list[str]
    language: Literal["en", "sv"]
    notification_recipients: list[str]
    payment_link_defaults: PaymentLinkDefaults
    subscription_settings: SubscriptionSettings
    shipping_enabled: bool
    notifications: dict[str, bool]
    created_at: datetime


class ProcessorOut(BaseModel):
    """``object`` and ``api_base`` are absent while no processor is connected;
    ``webhook_secret`` is shown to test-mode accounts only."""

    model_config = ConfigDict(extra="forbid")

    object: Literal["processor"] = "processor"
    type: Literal["stripe", "test"] | None
    publishable_key: str | None
    webhook_url: str
    api_base: str | None = None
    webhook_secret: str | None = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["api_key"]
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    #: The key itself, shown this once (only its hash is stored).
    key: str


class TestClockOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["test_clock"]
    now: datetime


class ProcessorConnect(RootModel[StripeConnect | TestConnect]):
    """``POST /v1/account/processor``: Stripe keys, or ``{"type": "test"}`` (documentation
    only: the handler picks the model by ``type``)."""
