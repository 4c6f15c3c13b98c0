"""The dunning policy core (PRODUCT §6.4, §11; TARGETS "Mission defaults") — pure, no I/O.

The billing engine calls these functions and stores what they return; nothing here reads
a clock, a database or a queue. Every instant comes from the caller (the account's clock,
so test clocks drive dunning like everything else).

Model (docs/decisions.md 25):
- A **run** starts with the automatic charge of one payment date (the *failed due date*,
  an account-local calendar date). Retries happen ``d`` days after it: at the start of
  the local day ``due_date + d`` in the account's time zone (`day_start`). A retry whose
  moment has already passed when the previous failure becomes known (catch-up after
  downtime, a test-clock jump, a bank debit reported late) is due at once, never skipped,
  so a run always makes exactly the attempts its policy allows (TARGETS R12).
- The schedule is chosen by the payment-method type of the latest attempt (a buyer may
  switch from a card to a bank debit); retries already made count against it.
- The policy is fixed for a run when its due charge fails: the engine stores
  `RetryPolicy.to_settings()` with the run, so replaying a run, the timeline and a dry
  run all agree; a settings change applies to failures after it.
- A hard decline (`HARD_DECLINE_CODES`) ends the run at once with the final outcome;
  a soft one waits for the next retry; the last retry's failure ends it too.
- A success at any point returns the subscription to ``active``. After ``unpaid`` only
  the buyer's new payment method is tried (at once), and a success recovers; after
  ``canceled`` nothing is tried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import pairwise
from typing import Any, Literal, get_args

from shared.accounts import MAX_RETRIES, MAX_RETRY_DAY, RETRY_METHOD_TYPES
from shared.clock import day_start, rfc3339

Status = Literal["active", "past_due", "canceled", "unpaid"]
FinalOutcome = Literal["canceled", "unpaid"]
Trigger = Literal["due", "retry", "new_payment_method"]
Reason = Literal[
    "paid",  # the due charge succeeded: no dunning at all
    "recovered",  # a retry or the buyer's new method succeeded
    "retry_scheduled",  # failed; the next retry is planned
    "hard_decline",  # failed with a hard decline: final outcome at once
    "retries_exhausted",  # failed with no retry left: final outcome
    "still_unpaid",  # the buyer's new method failed on an unpaid subscription
]

FINAL_OUTCOMES: tuple[str, ...] = get_args(FinalOutcome)
TRIGGERS: tuple[str, ...] = get_args(Trigger)
#: Payment-method types a schedule may be set for (the link's ``payment_methods``, API.md).
METHOD_TYPES = RETRY_METHOD_TYPES
#: TARGETS "Mission defaults": 1, 3, 7 and 14 days after the failed due date.
DEFAULT_RETRY_DAYS: tuple[int, ...] = (1, 3, 7, 14)
#: At most MAX_RETRIES retries, the last at most MAX_RETRY_DAY days after the due date
#: (shared.accounts: the account settings take the same limits): the most lenient anchor
#: (Stripe's Smart Retries: up to 8 tries within up to 2 months).
#: Upper bound of one dry run (each failure is at most 1 + MAX_RETRIES steps).
MAX_DRY_RUN_FAILURES = 10_000

#: Decline / failure codes after which the same payment method is never retried (the
#: card networks forbid re-attempting most of them). Stripe's decline codes
#: (docs.stripe.com/declines/codes) — stolen or lost card, fraud, invalid number or
#: account, expired, the issuer's "do not honour / do not try again" class, revoked
#: authorisations, card or currency not supported — and its bank-debit failure codes
#: (ACH, SEPA, Bacs) that mean the account cannot be debited. Every other code
#: (insufficient_funds, generic_decline, card_declined, processing_error,
#: try_again_later, authentication_required, unknown or missing codes) is soft.
HARD_DECLINE_CODES: frozenset[str] = frozenset(
    {
        # cards: lost, stolen, fraud
        "stolen_card",
        "lost_card",
        "pickup_card",
        "fraudulent",
        "merchant_blacklist",
        # cards: the number or account is not (or no longer) valid
        "incorrect_number",
        "invalid_number",
        "invalid_account",
        "expired_card",
        "new_account_information_available",
        "card_not_supported",
        "currency_not_supported",
        # cards: do-not-honour class (the issuer refuses this merchant or this card)
        "do_not_honor",
        "do_not_try_again",
        "restricted_card",
        "security_violation",
        "transaction_not_allowed",
        "not_permitted",
        "service_not_allowed",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "stop_payment_order",
        # bank debits: the account is gone, blocked or the mandate is not valid
        "account_closed",
        "account_frozen",
        "no_account",
        "invalid_account_number",
        "bank_account_restricted",
        "bank_ownership_changed",
        "branch_does_not_exist",
        "incorrect_account_holder_name",
        "debit_not_authorized",
        "debit_authorization_not_match",
        "debit_disputed",
        "invalid_currency",
    }
)


def is_hard_decline(code: str | None) -> bool:
    """Whether a decline code ends dunning at once. Pass Stripe's ``decline_code`` when
    there is one, else the error's or charge's ``code`` / ``failure_code``."""
    return code is not None and code.strip().lower() in HARD_DECLINE_CODES


# -- errors ---------------------------------------------------------------------------------
class DunningError(ValueError):
    pass


class InvalidRetryPolicy(DunningError):
    """A retry policy that breaks the rules; ``errors`` is ``[{field, message}]`` as
    problem+json wants it (``shared.web.problem.ValidationProblem``)."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors
        self.field = errors[0]["field"]
        self.message = errors[0]["message"]


class InvalidAttempt(DunningError):
    """An attempt that cannot follow the run so far (order, trigger, too early)."""


class DunningClosed(InvalidAttempt):
    """An attempt on a run that has ended (paid, recovered or canceled)."""


class InvalidDryRun(DunningError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.errors = [{"field": field, "message": message}]


# -- time -----------------------------------------------------------------------------------
def retry_instant(due_date: date, offset_days: int, tz: tzinfo) -> datetime:
    return day_start(due_date + timedelta(days=offset_days), tz)


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must carry a time zone")
    return value.astimezone(UTC)


# -- the policy -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """An account's retry policy: days after the failed due date, per method type if set."""

    retry_days: tuple[int, ...] = DEFAULT_RETRY_DAYS
    #: (method type, days) pairs, sorted by type; `days_for` falls back to ``retry_days``.
    by_method: tuple[tuple[str, tuple[int, ...]], ...] = ()
    after_final_failure: FinalOutcome = "canceled"

    def __post_init__(self) -> None:
        pairs = self.by_method.items() if isinstance(self.by_method, Mapping) else self.by_method
        object.__setattr__(self, "retry_days", tuple(self.retry_days))
        object.__setattr__(self, "by_method", tuple((m, tuple(d)) for m, d in pairs))
        errors = _policy_errors(self.retry_days, self.by_method, self.after_final_failure)
        if errors:
            raise InvalidRetryPolicy(errors)
        object.__setattr__(self, "by_method", tuple(sorted(self.by_method)))

    def days_for(self, method_type: str) -> tuple[int, ...]:
        for method, days in self.by_method:
            if method == method_type:
                return days
        return self.retry_days

    def schedule(self, method_type: str, due_date: date, tz: tzinfo) -> tuple[datetime, ...]:
        """Every retry instant for a failure of ``method_type`` on ``due_date``."""
        return tuple(retry_instant(due_date, d, tz) for d in self.days_for(method_type))

    # JSON: the account's ``subscription_settings`` keys (API.md; shared/accounts.py).
    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, field_prefix: str = "") -> RetryPolicy:
        """From ``subscription_settings``: other keys (reminders) are left alone."""
        return _parse_policy(settings, field_prefix, strict=False)

    @classmethod
    def from_json(cls, body: Any, *, field_prefix: str = "") -> RetryPolicy:
        """From a request body (a dry run's ``retry_policy``): unknown keys are refused."""
        return _parse_policy(body, field_prefix, strict=True)

    def to_settings(self) -> dict[str, Any]:
        return {
            "retry_schedule_days": list(self.retry_days),
            "retry_schedule_by_method": {m: list(d) for m, d in self.by_method},
            "after_final_failure": self.after_final_failure,
        }


_POLICY_KEYS = ("retry_schedule_days", "retry_schedule_by_method", "after_final_failure")


def _policy_errors(
    retry_days: tuple[int, ...], by_method: tuple[tuple[str, tuple[int, ...]], ...], after: str
) -> list[dict[str, str]]:
    errors = _schedule_errors("retry_schedule_days", retry_days)
    seen: set[str] = set()
    for method, days in by_method:
        name = f"retry_schedule_by_method.{method}"
        if method not in METHOD_TYPES:
            errors.append({"field": name, "message": f"must be one of {', '.join(METHOD_TYPES)}"})
        elif method in seen:
            errors.append({"field": name, "message": "is given twice"})
        seen.add(method)
        errors += _schedule_errors(name, days)
    if after not in FINAL_OUTCOMES:
        errors.append({"field": "after_final_failure", "message": "must be canceled or unpaid"})
    return errors


def _schedule_errors(name: str, days: Sequence[int]) -> list[dict[str, str]]:
    if len(days) > MAX_RETRIES:
        return [{"field": name, "message": f"allows at most {MAX_RETRIES} retries"}]
    if any(not 1 <= d <= MAX_RETRY_DAY for d in days):
        return [{"field": name, "message": f"day counts must be between 1 and {MAX_RETRY_DAY}"}]
    if any(b <= a for a, b in pairwise(days)):
        return [{"field": name, "message": "must be strictly increasing"}]
    return []


def _day_list(value: Any, name: str, errors: list[dict[str, str]]) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or any(type(d) is not int for d in value):
        errors.append({"field": name, "message": "must be a list of whole day counts"})
        return ()
    return tuple(value)


def _parse_policy(body: Any, prefix: str, *, strict: bool) -> RetryPolicy:
    def err(key: str, message: str) -> None:
        errors.append({"field": prefix + key, "message": message})

    errors: list[dict[str, str]] = []
    if not isinstance(body, Mapping):
        raise InvalidRetryPolicy([{"field": prefix.rstrip(".") or "body", "message": "must be an object"}])
    if strict:
        for key in sorted(set(body) - set(_POLICY_KEYS)):
            err(str(key), "is not a retry policy field")
    days = DEFAULT_RETRY_DAYS
    if "retry_schedule_days" in body:
        days = _day_list(body["retry_schedule_days"], prefix + "retry_schedule_days", errors)
    by_method: list[tuple[str, tuple[int, ...]]] = []
    raw = body.get("retry_schedule_by_method", {})
    if not isinstance(raw, Mapping):
        err("retry_schedule_by_method", "must be an object of method type → day list")
    else:
        for method, value in raw.items():
            name = f"{prefix}retry_schedule_by_method.{method}"
            by_method.append((str(method), _day_list(value, name, errors)))
    outcome = body.get("after_final_failure", "canceled")
    rules = _policy_errors(days, tuple(by_method), outcome if isinstance(outcome, str) else "")
    errors += [{**e, "field": prefix + e["field"]} for e in rules]
    if errors:
        raise InvalidRetryPolicy(sorted(errors, key=lambda e: e["field"]))
    return RetryPolicy(retry_days=days, by_method=tuple(by_method), after_final_failure=outcome)


# -- the state machine ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Attempt:
    """One charge attempt for the run's due date and its outcome.

    ``at`` is when the outcome became known, on the account's clock (the charge for a
    card; the settlement report for a bank debit). ``decline_code`` as `is_hard_decline`
    describes; ignored on success."""

    at: datetime
    trigger: Trigger
    method_type: str
    succeeded: bool
    decline_code: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _aware(self.at, "an attempt's instant"))
        if self.trigger not in TRIGGERS:
            raise ValueError(f"unknown attempt trigger {self.trigger!r}")
        if not self.method_type:
            raise ValueError("an attempt names its payment-method type")
        if self.succeeded:
            object.__setattr__(self, "decline_code", None)

    @property
    def hard_decline(self) -> bool:
        return not self.succeeded and is_hard_decline(self.decline_code)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine does after an attempt. E-mail flags: ``email_buyer_update_link`` is
    the failed-payment e-mail with the update link; ``notify_recipients`` the failed-payment
    notice to the account's recipients. Receipts after a success and the cancellation
    notice follow from the status as for any subscription and are not flagged here."""

    status: Status
    reason: Reason
    next_retry_at: datetime | None = None
    next_retry_number: int | None = None
    final_outcome: FinalOutcome | None = None
    email_buyer_update_link: bool = False
    notify_recipients: bool = False

    @property
    def recovered(self) -> bool:
        return self.reason == "recovered"

    @property
    def retrying(self) -> bool:
        return self.status == "past_due"


@dataclass(frozen=True, slots=True)
class DunningRun:
    """A run's state: the fold of its attempts (`apply`). ``status`` is ``active`` both
    before the due charge and after a success (then ``closed``)."""

    policy: RetryPolicy
    due_date: date
    tz: tzinfo
    attempts: tuple[Attempt, ...] = ()
    status: Status = "active"
    retries_made: int = 0
    next_retry_at: datetime | None = None
    final_outcome: FinalOutcome | None = None
    final_at: datetime | None = None
    recovered_at: datetime | None = None
    #: The day start of the due date (the earliest an attempt can happen).
    due_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "due_at", day_start(self.due_date, self.tz))

    @property
    def method_type(self) -> str | None:
        return self.attempts[-1].method_type if self.attempts else None

    @property
    def closed(self) -> bool:
        """Nothing can be attempted any more (paid, recovered or canceled)."""
        return bool(self.attempts) and self.status in ("active", "canceled")

    @property
    def next_retry_number(self) -> int | None:
        return self.retries_made + 1 if self.next_retry_at is not None else None

    def planned_retries(self) -> tuple[datetime, ...]:
        """The retries still to come if every one fails (the first is `next_retry_at`)."""
        if self.next_retry_at is None or self.method_type is None:
            return ()
        rest = self.policy.schedule(self.method_type, self.due_date, self.tz)[self.retries_made :]
        return tuple(max(at, self.next_retry_at) for at in rest)


def begin(policy: RetryPolicy, due_date: date, tz: tzinfo) -> DunningRun:
    """The run of one due date, before its charge."""
    return DunningRun(policy=policy, due_date=due_date, tz=tz)


def apply(run: DunningRun, attempt: Attempt) -> tuple[DunningRun, Decision]:
    """Step the run with one attempt's outcome: the new state and the decision."""
    _check(run, attempt)
    retries_made = run.retries_made + (attempt.trigger == "retry")
    state = replace(run, attempts=(*run.attempts, attempt), retries_made=retries_made)
    automatic = attempt.trigger != "new_payment_method"
    if attempt.succeeded:
        reason: Reason = "paid" if attempt.trigger == "due" else "recovered"
        recovered_at = attempt.at if reason == "recovered" else None
        state = replace(
            state, status="active", next_retry_at=None, final_outcome=None, final_at=None, recovered_at=recovered_at
        )
        return state, Decision(status="active", reason=reason)
    if run.status == "unpaid":  # only the buyer's new method is tried after the final outcome
        return state, Decision(status="unpaid", reason="still_unpaid", final_outcome="unpaid")
    days = run.policy.days_for(attempt.method_type)
    if not attempt.hard_decline and retries_made < len(days):
        next_at = max(retry_instant(run.due_date, days[retries_made], run.tz), attempt.at)
        state = replace(state, status="past_due", next_retry_at=next_at)
        return state, Decision(
            status="past_due",
            reason="retry_scheduled",
            next_retry_at=next_at,
            next_retry_number=retries_made + 1,
            email_buyer_update_link=automatic,
            notify_recipients=automatic,
        )
    outcome = run.policy.after_final_failure
    state = replace(state, status=outcome, next_retry_at=None, final_outcome=outcome, final_at=attempt.at)
    return state, Decision(
        status=outcome,
        reason="hard_decline" if attempt.hard_decline else "retries_exhausted",
        final_outcome=outcome,
        # An unpaid subscription can still be saved by the buyer; a canceled one cannot.
        email_buyer_update_link=automatic and outcome == "unpaid",
        notify_recipients=True,
    )


def _check(run: DunningRun, attempt: Attempt) -> None:
    if not run.attempts:
        if attempt.trigger != "due":
            raise InvalidAttempt("a run starts with the due charge")
        if attempt.at < run.due_at:
            raise InvalidAttempt("the due charge cannot precede the start of its due date")
        return
    if run.closed:
        raise DunningClosed(f"the run of {run.due_date} has ended ({run.status})")
    if attempt.at < run.attempts[-1].at:
        raise InvalidAttempt("attempts must be given in time order")
    if attempt.trigger == "due":
        raise InvalidAttempt("a due date is charged once; later attempts are retries")
    if attempt.trigger == "retry":
        if run.next_retry_at is None:
            raise InvalidAttempt(f"no retry is due after the final outcome ({run.status})")
        if attempt.at < run.next_retry_at:
            raise InvalidAttempt(f"retry {run.retries_made + 1} is not due before {rfc3339(run.next_retry_at)}")


def replay(policy: RetryPolicy, due_date: date, tz: tzinfo, attempts: Iterable[Attempt]) -> DunningRun:
    run = begin(policy, due_date, tz)
    for attempt in attempts:
        run, _ = apply(run, attempt)
    return run


def decide(policy: RetryPolicy, *, due_date: date, tz: tzinfo, attempts: Sequence[Attempt], new: Attempt) -> Decision:
    """The decision after ``new``, given the run's attempts so far (oldest first)."""
    return apply(replay(policy, due_date, tz, attempts), new)[1]


@dataclass(frozen=True, slots=True)
class NewMethodDecision:
    retry_now: bool
    reason: Literal["past_due", "unpaid", "nothing_due", "canceled"]


def on_new_payment_method(run: DunningRun | None) -> NewMethodDecision:
    """The buyer saved a new method through the update link: charge it at once (as a
    ``new_payment_method`` attempt) while something is owed; otherwise only keep it."""
    if run is None or run.status == "active":
        return NewMethodDecision(False, "nothing_due")
    if run.status == "canceled":
        return NewMethodDecision(False, "canceled")
    return NewMethodDecision(True, run.status)


# -- the timeline (subscription API, buyer's update page) -----------------------------------
@dataclass(frozen=True, slots=True)
class Timeline:
    status: Status
    due_date: date
    attempts: tuple[Attempt, ...]
    next_retry_at: datetime | None
    next_retry_number: int | None
    planned_retries: tuple[datetime, ...]
    #: Reached, or what happens when every planned retry fails (None once recovered/paid).
    final_outcome: FinalOutcome | None
    final_at: datetime | None
    final_reached: bool

    def to_json(self) -> dict[str, Any]:
        first = self.next_retry_number or 0
        return {
            "status": self.status,
            "failed_due_date": self.due_date.isoformat(),
            "attempts": [
                {
                    "number": i,
                    "at": rfc3339(a.at),
                    "trigger": a.trigger,
                    "method_type": a.method_type,
                    "outcome": "succeeded" if a.succeeded else "failed",
                    "decline_code": a.decline_code,
                    "hard_decline": a.hard_decline,
                }
                for i, a in enumerate(self.attempts)
            ],
            "next_retry_at": rfc3339(self.next_retry_at) if self.next_retry_at else None,
            "planned_retries": [{"number": first + i, "at": rfc3339(at)} for i, at in enumerate(self.planned_retries)],
            "final_outcome": self.final_outcome,
            "final_outcome_at": rfc3339(self.final_at) if self.final_at else None,
            "final_outcome_reached": self.final_reached,
        }


def timeline(run: DunningRun) -> Timeline:
    planned = run.planned_retries()
    if run.final_outcome is not None:
        final, final_at, reached = run.final_outcome, run.final_at, True
    elif run.status == "past_due":
        final, final_at, reached = run.policy.after_final_failure, planned[-1], False
    else:
        final, final_at, reached = None, None, False
    return Timeline(
        status=run.status,
        due_date=run.due_date,
        attempts=run.attempts,
        next_retry_at=run.next_retry_at,
        next_retry_number=run.next_retry_number,
        planned_retries=planned,
        final_outcome=final,
        final_at=final_at,
        final_reached=reached,
    )


# -- dry run --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PastFailure:
    """A failed due charge from the account's history. ``succeeded_at``: when a charge for
    that due date finally succeeded (retry, new method, by hand), or None."""

    key: str
    due_date: date
    method_type: str
    decline_code: str | None = None
    succeeded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DryRunResult:
    key: str
    due_date: date
    method_type: str
    decline_code: str | None
    hard_decline: bool
    #: The retries the policy would have made (by ``as_of``).
    retries: tuple[datetime, ...]
    #: ``active`` (recovered), ``past_due`` (still retrying at ``as_of``), or the final outcome.
    status: Status
    recovered_at: datetime | None
    final_outcome: FinalOutcome | None
    final_at: datetime | None
    actually_succeeded_at: datetime | None

    @property
    def gave_up_before_success(self) -> bool:
        """The policy would have ended the run although the payment succeeded later."""
        return self.final_outcome is not None and self.actually_succeeded_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "due_date": self.due_date.isoformat(),
            "method_type": self.method_type,
            "decline_code": self.decline_code,
            "hard_decline": self.hard_decline,
            "retries": [rfc3339(at) for at in self.retries],
            "status": self.status,
            "recovered": self.recovered_at is not None,
            "recovered_at": rfc3339(self.recovered_at) if self.recovered_at else None,
            "final_outcome": self.final_outcome,
            "final_outcome_at": rfc3339(self.final_at) if self.final_at else None,
            "actually_succeeded_at": rfc3339(self.actually_succeeded_at) if self.actually_succeeded_at else None,
            "gave_up_before_success": self.gave_up_before_success,
        }


@dataclass(frozen=True, slots=True)
class DryRunReport:
    policy: RetryPolicy
    results: tuple[DryRunResult, ...]

    def summary(self) -> dict[str, int]:
        r = self.results
        return {
            "failures": len(r),
            "recovered": sum(x.status == "active" for x in r),
            "canceled": sum(x.status == "canceled" for x in r),
            "unpaid": sum(x.status == "unpaid" for x in r),
            "still_retrying": sum(x.status == "past_due" for x in r),
            "hard_declines": sum(x.hard_decline for x in r),
            "retries": sum(len(x.retries) for x in r),
            "gave_up_before_success": sum(x.gave_up_before_success for x in r),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "retry_policy": self.policy.to_settings(),
            "summary": self.summary(),
            "results": [x.to_json() for x in self.results],
        }


def dry_run(
    policy: RetryPolicy, failures: Sequence[PastFailure], tz: tzinfo, *, as_of: datetime | None = None
) -> DryRunReport:
    """What ``policy`` would have done with past failures, by stepping the state machine.

    Assumption: the due charge failed at the start of its due date with the recorded
    code, and any attempt at or after ``succeeded_at`` would have succeeded while every
    earlier one would have failed the same way. Retries after ``as_of`` (the account's
    now) are not made: such a run is reported ``past_due``."""
    if len(failures) > MAX_DRY_RUN_FAILURES:
        raise InvalidDryRun("failures", f"at most {MAX_DRY_RUN_FAILURES} failures per dry run")
    horizon = _aware(as_of, "as_of") if as_of is not None else None
    return DryRunReport(policy, tuple(_simulate(policy, f, i, tz, horizon) for i, f in enumerate(failures)))


def _simulate(policy: RetryPolicy, f: PastFailure, i: int, tz: tzinfo, as_of: datetime | None) -> DryRunResult:
    run = begin(policy, f.due_date, tz)
    success = _aware(f.succeeded_at, "succeeded_at") if f.succeeded_at is not None else None
    if success is not None and success <= run.due_at:
        raise InvalidDryRun(f"failures[{i}].succeeded_at", "must be after the start of the failed due date")
    run, _ = apply(run, Attempt(run.due_at, "due", f.method_type, False, f.decline_code))
    while run.next_retry_at is not None and (as_of is None or run.next_retry_at <= as_of):
        ok = success is not None and run.next_retry_at >= success
        run, _ = apply(run, Attempt(run.next_retry_at, "retry", f.method_type, ok, f.decline_code))
    return DryRunResult(
        key=f.key,
        due_date=f.due_date,
        method_type=f.method_type,
        decline_code=f.decline_code,
        hard_decline=is_hard_decline(f.decline_code),
        retries=tuple(a.at for a in run.attempts if a.trigger == "retry"),
        status=run.status,
        recovered_at=run.recovered_at,
        final_outcome=run.final_outcome,
        final_at=run.final_at,
        actually_succeeded_at=success,
    )
