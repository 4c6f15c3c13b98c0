"""What the analytics endpoints read and answer."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationInfo, field_validator

from ..subscriptions.schemas import Day, PaymentMethodType

#: Dates outside this range are refused (they name no billing period and would overflow
#: the time-zone arithmetic at the calendar's ends).
EARLIEST = date(1970, 1, 1)
LATEST = date(2999, 12, 31)


def _bounded(value: date) -> date:
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"must lie between {EARLIEST.isoformat()} and {LATEST.isoformat()}")
    return value


def _not_before(end: date | None, info: ValidationInfo) -> date | None:
    start = info.data.get("from_")
    if end is not None and start is not None and end < start:
        raise ValueError("must not be before from")
    return end


#: A period's bound: an account-local date.
Bound = Annotated[Day, AfterValidator(_bounded)]


class AnalyticsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Default: the account's default currency.
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    #: The period (account-local dates, inclusive); default: the current month.
    from_: Bound | None = Field(default=None, alias="from")
    to: Bound | None = None

    _to = field_validator("to")(_not_before)


class AnalyticsOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["subscription_analytics"]
    currency: str
    #: The period of ``new``, ``churned``, the payment counts and revenue (inclusive).
    from_: date = Field(alias="from")
    to: date
    #: ``mrr``, ``arr`` and ``active`` are as of this instant (the account's now).
    as_of: datetime
    #: Monthly recurring revenue of active and past-due subscriptions (before tax).
    mrr: int
    arr: int
    active: int
    #: Subscriptions created in the period, and their MRR at their current price.
    new: int
    new_mrr: int
    #: Subscriptions canceled in the period (completed fixed terms are not churn).
    churned: int
    churned_mrr: int
    #: Charges whose first failure fell in the period, and how many of them were paid in the end.
    failed_payments: int
    recovered_payments: int
    #: recovered / failed as a percentage with two decimals, null without failures.
    recovery_rate: str | None
    #: Automatic subscription charges that succeeded in the period (tax included); the
    #: payments taken at checkout are in /v1/payments.
    renewal_revenue: int


class RetryPolicyIn(BaseModel):
    """A retry policy to try (``subscription_settings`` keys); keys left out are the
    account's current settings."""

    model_config = ConfigDict(extra="forbid")

    retry_schedule_days: list[StrictInt] | None = Field(default=None, max_length=8)
    retry_schedule_by_method: dict[PaymentMethodType, Annotated[list[StrictInt], Field(max_length=8)]] | None = None
    after_final_failure: Literal["canceled", "unpaid"] | None = None


class DryRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retry_policy: RetryPolicyIn = Field(default_factory=RetryPolicyIn)
    #: Only the failures of this currency (default: all).
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    #: Only failed due dates in this range (inclusive; default: all, newest 10,000).
    from_: Bound | None = Field(default=None, alias="from")
    to: Bound | None = None

    _to = field_validator("to")(_not_before)


class RetryPolicyOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retry_schedule_days: list[int]
    retry_schedule_by_method: dict[str, list[int]]
    after_final_failure: Literal["canceled", "unpaid"]


class DryRunSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failures: int
    recovered: int
    canceled: int
    unpaid: int
    still_retrying: int
    hard_declines: int
    retries: int
    gave_up_before_success: int


class DryRunResultOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    charge_id: str
    subscription_id: str
    currency: str
    due_date: date
    method_type: str
    decline_code: str | None
    hard_decline: bool
    retries: list[datetime]
    status: Literal["active", "past_due", "canceled", "unpaid"]
    recovered: bool
    recovered_at: datetime | None
    final_outcome: Literal["canceled", "unpaid"] | None
    final_outcome_at: datetime | None
    actually_succeeded_at: datetime | None
    gave_up_before_success: bool


class DryRunOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["dunning_dry_run"]
    retry_policy: RetryPolicyOut
    as_of: datetime
    #: More failures matched than one run takes (10,000): the newest were simulated.
    truncated: bool
    summary: DryRunSummary
    results: list[DryRunResultOut]
