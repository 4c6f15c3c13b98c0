"""Subscriptions, their charges and charge attempts, reminders.

Revision ID: 0004
Revises: 0003

Business rules held by constraints rather than code:
- a purchase gives birth to one subscription per group (``UNIQUE (account_id,
  origin_payment_id, subscription_group)``), however often its event is delivered;
- one charge per payment date of a subscription (``UNIQUE (subscription_id,
  period_index)``): the scheduler's ``INSERT … ON CONFLICT DO NOTHING`` can run on any
  number of replicas, after any downtime, and never charges a period twice;
- one idempotency key per attempt, written before the processor is called, and one
  payment id per attempt;
- one reminder per payment date.
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATUSES = "'scheduled', 'active', 'past_due', 'paused', 'canceled', 'unpaid', 'completed'"


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"""CREATE TABLE {s}.subscriptions (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                status text NOT NULL CHECK (status IN ({STATUSES})),
                currency text NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
                interval text NOT NULL,
                start_date date NOT NULL,
                payments_total integer CHECK (payments_total > 0),
                payments_made integer NOT NULL DEFAULT 0 CHECK (payments_made >= 0),
                end_date date,
                -- Index (from the anchor) and date of the next automatic payment; the date
                -- is NULL once nothing more will be charged.
                next_index integer NOT NULL DEFAULT 0 CHECK (next_index >= 0),
                next_payment_date date,
                amount bigint NOT NULL CHECK (amount >= 0),
                subtotal bigint NOT NULL CHECK (subtotal >= 0),
                tax bigint NOT NULL DEFAULT 0 CHECK (tax >= 0),
                line_items jsonb NOT NULL,
                -- Replaced line items applying from ``pending_from_index`` on.
                pending_line_items jsonb,
                pending_from_index integer,
                email text,
                contact jsonb NOT NULL DEFAULT '{{}}',
                contact_id text,
                company_id text,
                deal_ids text[] NOT NULL DEFAULT '{{}}',
                billing_address jsonb,
                collection_method text NOT NULL DEFAULT 'charge_automatically'
                    CHECK (collection_method IN ('charge_automatically', 'send_invoice', 'none')),
                payment_terms_days integer CHECK (payment_terms_days IN (0, 7, 15, 30, 45, 60, 90)),
                collect_method_on_first_invoice boolean NOT NULL DEFAULT false,
                invoice_settings jsonb NOT NULL DEFAULT '{{}}',
                source_type text NOT NULL,
                source_id text NOT NULL,
                origin_payment_id text,
                subscription_group text,
                processor_customer_id text,
                payment_method_id text,
                method_type text,
                cancel_at_period_end boolean NOT NULL DEFAULT false,
                canceled_at timestamptz,
                ended_at timestamptz,
                paused_at timestamptz,
                pm_token_version integer NOT NULL DEFAULT 1,
                pm_token_hash bytea UNIQUE,
                -- The update page's current SetupIntent (attempt, id, customer_id).
                pm_setup jsonb NOT NULL DEFAULT '{{}}',
                metadata jsonb NOT NULL DEFAULT '{{}}',
                test_mode boolean NOT NULL,
                version integer NOT NULL DEFAULT 1,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                UNIQUE (account_id, origin_payment_id, subscription_group),
                CONSTRAINT subscriptions_made_within_terms
                    CHECK (payments_total IS NULL OR payments_made <= payments_total)
            )""",
            f"CREATE INDEX subscriptions_account ON {s}.subscriptions (account_id, id)",
            f"CREATE INDEX subscriptions_contact ON {s}.subscriptions (account_id, contact_id)",
            f"CREATE INDEX subscriptions_origin ON {s}.subscriptions (account_id, origin_payment_id)",
            # The scheduler's scan: only subscriptions that may be charged.
            f"""CREATE INDEX subscriptions_due ON {s}.subscriptions (next_payment_date)
                WHERE status IN ('scheduled', 'active') AND next_payment_date IS NOT NULL""",
            f"""CREATE TABLE {s}.charges (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                subscription_id text NOT NULL REFERENCES {s}.subscriptions(id),
                period_index integer NOT NULL CHECK (period_index >= 0),
                due_date date NOT NULL,
                amount bigint NOT NULL CHECK (amount > 0),
                currency text NOT NULL,
                -- scheduled: waiting for its job; processing: an attempt is in flight or its
                -- outcome is unknown; retrying: failed, next attempt at run_at;
                -- succeeded / failed (final) / canceled (the subscription ended first).
                status text NOT NULL CHECK (status IN
                    ('scheduled', 'processing', 'retrying', 'succeeded', 'failed', 'canceled')),
                -- Earliest instant of the next attempt, on the account's clock.
                run_at timestamptz NOT NULL,
                -- Real time the job was last put on the queue (NULL: not yet).
                enqueued_at timestamptz,
                attempts integer NOT NULL DEFAULT 0,
                -- The retry policy fixed when the due charge failed (dunning/policy.py).
                policy jsonb,
                final_outcome text,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                UNIQUE (subscription_id, period_index)
            )""",
            f"""CREATE INDEX charges_runnable ON {s}.charges (run_at)
                WHERE status IN ('scheduled', 'processing', 'retrying')""",
            f"CREATE INDEX charges_subscription ON {s}.charges (account_id, subscription_id, period_index)",
            f"""CREATE TABLE {s}.charge_attempts (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                charge_id text NOT NULL REFERENCES {s}.charges(id),
                subscription_id text NOT NULL,
                number integer NOT NULL CHECK (number >= 0),
                trigger text NOT NULL CHECK (trigger IN ('due', 'retry', 'new_payment_method')),
                idempotency_key text NOT NULL UNIQUE,
                payment_id text NOT NULL UNIQUE,
                amount bigint NOT NULL CHECK (amount > 0),
                currency text NOT NULL,
                processor_customer_id text,
                payment_method_id text,
                method_type text,
                -- pending: written before the processor call, outcome not known yet.
                status text NOT NULL CHECK (status IN ('pending', 'processing', 'succeeded', 'failed')),
                processor_payment_intent_id text,
                decline_code text,
                message text,
                fee bigint,
                created_at timestamptz NOT NULL,
                resolved_at timestamptz,
                -- Real time the row was written (the reconciler's age; created_at is on
                -- the account's clock).
                written_at timestamptz NOT NULL DEFAULT now(),
                UNIQUE (charge_id, number)
            )""",
            f"CREATE INDEX charge_attempts_charge ON {s}.charge_attempts (account_id, charge_id, number)",
            f"""CREATE INDEX charge_attempts_unresolved ON {s}.charge_attempts (written_at)
                WHERE status IN ('pending', 'processing')""",
            f"""CREATE TABLE {s}.reminders (
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                subscription_id text NOT NULL REFERENCES {s}.subscriptions(id),
                period_index integer NOT NULL,
                charge_date date NOT NULL,
                event_id text NOT NULL,
                created_at timestamptz NOT NULL,
                PRIMARY KEY (subscription_id, period_index)
            )""",
            # The CRM contact of each purchase (``contact.upserted``), kept because it may
            # arrive before the purchase itself: a subscription born later still learns it.
            f"""CREATE TABLE {s}.purchase_contacts (
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                payment_id text NOT NULL,
                contact_id text NOT NULL,
                company_id text,
                deal_ids text[] NOT NULL DEFAULT '{{}}',
                PRIMARY KEY (account_id, payment_id)
            )""",
            # The buyer's update page resolves its token before the tenant is known.
            f"""CREATE FUNCTION {s}.resolve_payment_method_token(p_token_hash bytea)
                RETURNS TABLE (account_id text, subscription_id text)
                LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
                AS $$ SELECT account_id, id FROM {s}.subscriptions WHERE pm_token_hash = p_token_hash $$""",
            f"REVOKE ALL ON FUNCTION {s}.resolve_payment_method_token(bytea) FROM PUBLIC",
            *tenant_policy(s, "subscriptions"),
            *tenant_policy(s, "charges"),
            *tenant_policy(s, "charge_attempts"),
            *tenant_policy(s, "reminders"),
            *tenant_policy(s, "purchase_contacts"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
