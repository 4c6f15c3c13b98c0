"""Time-driven passes read only what is due: per account, and per queue state.

Revision ID: 0007
Revises: 0006

"Due" is measured on each account's own clock (test clocks, time zones), so one index
range over every account cannot say where due ends: the walk by ``(next_payment_date,
id)`` of 0006 filtered row by row and, with a million subscriptions, read the whole
backlog per batch (found by bench/p3_billing_run.py at 1,000,000: a 50,000 batch ran into
the statement timeout). The passes now walk accounts and, for each, read the index range
``(account_id, next_payment_date)`` up to that account's today — nothing that is not due
is read.

A subscription whose payment date already has its charge (in flight, retrying) stays due
until that charge moves it on; an anti-join against ``charges`` kept such rows out of a
batch but still read them all on every pass (a million in-flight charges: a million
probes per pass). ``due_dates`` — one narrow row per subscription that has a payment date
(kept by a trigger on ``subscriptions``, in the same transaction as every change of the
date, index or status) — carries ``charged_index``, the period index of the latest charge
created, written by the statement that creates it: ``charged_index < next_index`` is part
of its index's predicate, so a charged date leaves the index until the charge moves the
subscription on. Marking a narrow row (two indexes) instead of the wide subscription row
(seven) is most of a billing run's write cost. ``UNIQUE (subscription_id, period_index)``
on charges stays the guard against a second charge.

Charges waiting for the queue are split the same way: those not on the queue
(``enqueued_at IS NULL``: new from a test-clock move, or retrying) by when they may run,
and those on the queue by when they were put there (a lease running out means the job was
lost). Each pass reads the two short ranges, not every open charge.

Reminders the same way: ``reminded_index`` (the period index of the latest payment date
looked at) takes a subscription out of ``subscriptions_remind`` once its date has been
dealt with — a reminder row is written for every date looked at, also when no reminder
is sent (the interval is too short, the subscription was born inside the lead time):
``event_id`` is then NULL and ``skipped`` says why. Before, every subscription inside the
lead time (half of all monthly plans, with 14 days) was read on every pass, and those
never reminded stayed candidates and, past the pass's limit, starved the rest.

Plain CREATE INDEX (not CONCURRENTLY: migrations run in a transaction, and the tables are
young); the lock and statement timeouts of shared/migrations.py still apply.
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OPEN = "('scheduled', 'processing', 'retrying')"
#: due_dates_due's predicate; the queries that read it repeat it (charging/scheduler.py ``DUE_RANGE``).
DUE = "charged_index IS NULL OR charged_index < next_index"
#: Charged automatically at its payment date (the scheduler's ``_CHARGEABLE``).
CHARGEABLE = (
    "(NEW.collection_method = 'charge_automatically' AND NEW.payment_method_id IS NOT NULL"
    " AND NEW.amount > 0 AND NOT NEW.cancel_at_period_end)"
)
#: ... and of subscriptions_remind (reminders/scheduler.py ``REMIND_RANGE``).
REMIND = (
    "status IN ('scheduled', 'active') AND next_payment_date IS NOT NULL"
    " AND collection_method = 'charge_automatically' AND payment_method_id IS NOT NULL"
    " AND NOT cancel_at_period_end AND (reminded_index IS NULL OR reminded_index < next_index)"
)


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"DROP INDEX {s}.subscriptions_due",
            f"""CREATE TABLE {s}.due_dates (
                subscription_id text PRIMARY KEY REFERENCES {s}.subscriptions(id),
                account_id text NOT NULL,
                next_payment_date date NOT NULL,
                next_index integer NOT NULL,
                -- what a charge of that date takes, and whether one is taken automatically
                amount bigint NOT NULL,
                currency text NOT NULL,
                chargeable boolean NOT NULL,
                charged_index integer
            )""",
            f"""CREATE INDEX due_dates_due ON {s}.due_dates (account_id, next_payment_date, subscription_id)
                WHERE {DUE}""",
            *tenant_policy(s, "due_dates"),
            # One row while the subscription may fall due (scheduled or active with a date);
            # its charged_index survives the date moving on.
            f"""CREATE FUNCTION {s}.keep_due_date() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.status IN ('scheduled', 'active') AND NEW.next_payment_date IS NOT NULL THEN
                        INSERT INTO {s}.due_dates AS d (subscription_id, account_id, next_payment_date, next_index,
                                                        amount, currency, chargeable)
                        VALUES (NEW.id, NEW.account_id, NEW.next_payment_date, NEW.next_index, NEW.amount,
                                NEW.currency, {CHARGEABLE})
                        ON CONFLICT (subscription_id) DO UPDATE
                            SET next_payment_date = EXCLUDED.next_payment_date, next_index = EXCLUDED.next_index,
                                amount = EXCLUDED.amount, currency = EXCLUDED.currency,
                                chargeable = EXCLUDED.chargeable
                            WHERE (d.next_payment_date, d.next_index, d.amount, d.currency, d.chargeable)
                                IS DISTINCT FROM (EXCLUDED.next_payment_date, EXCLUDED.next_index, EXCLUDED.amount,
                                                  EXCLUDED.currency, EXCLUDED.chargeable);
                    ELSIF TG_OP = 'UPDATE' AND OLD.status IN ('scheduled', 'active')
                          AND OLD.next_payment_date IS NOT NULL THEN
                        DELETE FROM {s}.due_dates WHERE subscription_id = NEW.id;
                    END IF;
                    RETURN NULL;
                END
                $$""",
            f"""CREATE TRIGGER subscriptions_keep_due_date
                AFTER INSERT OR UPDATE OF status, next_payment_date, next_index, amount, currency,
                    collection_method, payment_method_id, cancel_at_period_end ON {s}.subscriptions
                FOR EACH ROW EXECUTE FUNCTION {s}.keep_due_date()""",
            f"""INSERT INTO {s}.due_dates (subscription_id, account_id, next_payment_date, next_index, amount,
                                           currency, chargeable, charged_index)
                SELECT s.id, s.account_id, s.next_payment_date, s.next_index, s.amount, s.currency,
                       {CHARGEABLE.replace("NEW.", "s.")},
                       (SELECT max(c.period_index) FROM {s}.charges c WHERE c.subscription_id = s.id)
                FROM {s}.subscriptions s
                WHERE s.status IN ('scheduled', 'active') AND s.next_payment_date IS NOT NULL""",
            f"""CREATE INDEX subscriptions_cancel_at_period_end ON {s}.subscriptions (account_id)
                WHERE cancel_at_period_end AND status IN ('scheduled', 'active', 'past_due', 'unpaid')""",
            f"DROP INDEX {s}.charges_runnable",
            # Write cost of a billing run (a million charges in one pass): the charge's
            # account is its subscription's (the FK to subscriptions stays); the lookups by
            # subscription use UNIQUE (subscription_id, period_index); the purchase-group
            # unique index (account_id, origin_payment_id, subscription_group) serves the
            # lookups by origin.
            f"ALTER TABLE {s}.charges DROP CONSTRAINT charges_account_id_fkey",
            # ... and the FK to subscriptions: its check locks each subscription row (FOR KEY
            # SHARE: a write to every wide row of the run). Charges are created only from
            # their subscription's due_dates row, which references it, and nothing deletes
            # subscriptions.
            f"ALTER TABLE {s}.charges DROP CONSTRAINT charges_subscription_id_fkey",
            f"DROP INDEX {s}.charges_subscription",
            f"DROP INDEX {s}.subscriptions_origin",
            f"""CREATE INDEX charges_awaiting_queue ON {s}.charges (run_at)
                WHERE status IN {OPEN} AND enqueued_at IS NULL""",
            f"""CREATE INDEX charges_on_queue ON {s}.charges (enqueued_at)
                WHERE status IN {OPEN} AND enqueued_at IS NOT NULL""",
            f"ALTER TABLE {s}.subscriptions ADD COLUMN reminded_index integer",
            f"""UPDATE {s}.subscriptions s SET reminded_index = r.last
                FROM (SELECT subscription_id, max(period_index) AS last FROM {s}.reminders GROUP BY 1) r
                WHERE r.subscription_id = s.id""",
            f"""CREATE INDEX subscriptions_remind ON {s}.subscriptions (account_id, next_payment_date, id)
                WHERE {REMIND}""",
            f"ALTER TABLE {s}.reminders ALTER COLUMN event_id DROP NOT NULL",
            f"""ALTER TABLE {s}.reminders ADD COLUMN skipped text,
                ADD CONSTRAINT reminders_sent_or_skipped CHECK ((event_id IS NULL) <> (skipped IS NULL))""",
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
