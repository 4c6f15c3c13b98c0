"""The account as every service sees it: settings model, clock, processor, projection.

Checkout owns accounts and API keys; the other services keep a projection of them,
written only by `apply_account_snapshot` from ``account.updated`` events. All four
schemas use the same ``accounts`` / ``api_keys`` table shapes (``shared.schema_sql``),
so reading an account is the same code everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from .clock import AccountClock
from .events.models import AccountSnapshot
from .link_settings import PaymentLinkDefaults
from .money import normalize_currency

LANGUAGES = ("en", "sv")
NOTIFICATION_KINDS = (
    "receipt",
    "payment_notification",
    "payment_failed",
    "payment_failed_recipients",
    "upcoming_payment",
    "invoice_issued",
    "invoice_overdue",
    "invoice_paid",
    "quote_paid",
    "subscription_canceled",
    "subscription_completed",
)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{2,63}$")


def valid_email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value) or len(value) > 320:
        raise ValueError("is not a valid e-mail address")
    return value


#: Dunning limits, shared by the account settings (checkout) and billing's retry policy
#: (services/billing/dunning/policy.py), so a schedule the account accepts is one billing runs.
RETRY_METHOD_TYPES = ("card", "us_bank_account", "sepa_debit", "bacs_debit")
MAX_RETRIES = 8
MAX_RETRY_DAY = 60


def _retry_days(value: list[int]) -> list[int]:
    if len(value) > MAX_RETRIES:
        raise ValueError(f"allows at most {MAX_RETRIES} retries")
    if any(d < 1 or d > MAX_RETRY_DAY for d in value) or value != sorted(set(value)):
        raise ValueError(f"must be strictly increasing day counts between 1 and {MAX_RETRY_DAY}")
    return value


class SubscriptionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reminders_enabled: StrictBool = False
    reminder_days: int = Field(default=14, ge=1, le=365)
    retry_schedule_days: list[int] = Field(default_factory=lambda: [1, 3, 7, 14])
    #: Optional per payment-method type schedules ("card", "sepa_debit", ...).
    retry_schedule_by_method: dict[str, list[int]] = Field(default_factory=dict)
    after_final_failure: Literal["canceled", "unpaid"] = "canceled"

    @field_validator("retry_schedule_days")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        return _retry_days(value)

    @field_validator("retry_schedule_by_method")
    @classmethod
    def _by_method(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        for method, days in value.items():
            if method not in RETRY_METHOD_TYPES:
                raise ValueError(f"keys must be payment-method types: {', '.join(RETRY_METHOD_TYPES)}")
            try:
                _retry_days(days)
            except ValueError as exc:
                raise ValueError(f"{method}: {exc}") from None
        return value


class AccountSettings(BaseModel):
    """Everything ``PATCH /v1/account`` may change besides the name."""

    model_config = ConfigDict(extra="forbid")

    logo_url: str | None = Field(default=None, max_length=2000)
    time_zone: str = "UTC"
    default_currency: str = "USD"
    currencies: list[str] = Field(default_factory=lambda: ["USD"], min_length=1, max_length=50)
    language: Literal["en", "sv"] = "en"
    notification_recipients: list[str] = Field(default_factory=list, max_length=50)
    payment_link_defaults: PaymentLinkDefaults = Field(default_factory=PaymentLinkDefaults)
    subscription_settings: SubscriptionSettings = Field(default_factory=SubscriptionSettings)
    shipping_enabled: StrictBool = False
    notifications: dict[str, StrictBool] = Field(default_factory=lambda: dict.fromkeys(NOTIFICATION_KINDS, True))

    @field_validator("logo_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s<>\"']+$", value):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value not in _zones():
            raise ValueError("is not an IANA time zone name")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not an IANA time zone name") from None
        return value

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalize_currency(value)

    @field_validator("currencies")
    @classmethod
    def _currencies(cls, value: list[str]) -> list[str]:
        normalized = [normalize_currency(c) for c in value]
        if len(set(normalized)) != len(normalized):
            raise ValueError("must not repeat a currency")
        return normalized

    @field_validator("notification_recipients")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        return [valid_email(v) for v in value]

    @field_validator("notifications")
    @classmethod
    def _kinds(cls, value: dict[str, bool]) -> dict[str, bool]:
        unknown = set(value) - set(NOTIFICATION_KINDS)
        if unknown:
            raise ValueError(f"unknown notification kinds: {', '.join(sorted(unknown))}")
        return {**dict.fromkeys(NOTIFICATION_KINDS, True), **value}


_ZONES: frozenset[str] | None = None


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


@dataclass(frozen=True)
class Account:
    id: str
    version: int
    name: str
    test_mode: bool
    settings: AccountSettings
    clock: AccountClock
    processor: dict[str, Any] | None

    @property
    def locale(self) -> str:
        return self.settings.language


def account_from_row(row: asyncpg.Record) -> Account:
    return Account(
        id=row["id"],
        version=row["version"],
        name=row["name"],
        test_mode=row["test_mode"],
        settings=AccountSettings.model_validate(row["settings"] or {}),
        clock=AccountClock(offset_us=row["clock_offset_us"]),
        processor=row["processor"],
    )


async def load_account(conn: asyncpg.Connection, schema: str, account_id: str) -> Account | None:
    row = await conn.fetchrow(f"SELECT * FROM {schema}.accounts WHERE id = $1", account_id)
    return account_from_row(row) if row else None


async def apply_account_snapshot(conn: asyncpg.Connection, schema: str, snap: AccountSnapshot) -> bool:
    """Store a newer snapshot (older or equal versions are ignored); True if applied."""
    applied = await conn.fetchval(
        f"""
        INSERT INTO {schema}.accounts AS a
            (id, version, name, test_mode, settings, clock_offset_us, processor, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, now())
        ON CONFLICT (id) DO UPDATE SET
            version = EXCLUDED.version, name = EXCLUDED.name, test_mode = EXCLUDED.test_mode,
            settings = EXCLUDED.settings, clock_offset_us = EXCLUDED.clock_offset_us,
            processor = EXCLUDED.processor, updated_at = now()
        WHERE a.version < EXCLUDED.version
        RETURNING true
        """,
        snap.id,
        snap.version,
        snap.name,
        snap.test_mode,
        snap.settings,
        snap.clock_offset_us,
        snap.processor.model_dump() if snap.processor else None,
    )
    if not applied:
        return False
    keys = snap.api_keys
    await conn.execute(
        f"DELETE FROM {schema}.api_keys WHERE account_id = $1 AND NOT (id = ANY($2::text[]))",
        snap.id,
        [k.id for k in keys],
    )
    await conn.execute(
        f"""
        INSERT INTO {schema}.api_keys AS k (id, account_id, prefix, key_hash, scopes, revoked_at)
        SELECT t.id, $1, t.prefix, t.key_hash, string_to_array(t.scopes, ' '), t.revoked_at
        FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
             AS t(id, prefix, key_hash, scopes, revoked_at)
        ON CONFLICT (id) DO UPDATE SET scopes = EXCLUDED.scopes, revoked_at = EXCLUDED.revoked_at
        """,
        snap.id,
        [k.id for k in keys],
        [k.prefix for k in keys],
        [k.key_hash for k in keys],
        [" ".join(k.scopes) for k in keys],
        [k.revoked_at for k in keys],
    )
    return True
