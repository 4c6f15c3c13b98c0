"""Payment links, checkout sessions, processor operations and payments.

Revision ID: 0002
Revises: 0001
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    statements = [
        # A Stripe account may be connected to one of our accounts only.
        f"""CREATE UNIQUE INDEX accounts_stripe_account ON {s}.accounts ((processor->>'stripe_account_id'))
            WHERE processor->>'stripe_account_id' IS NOT NULL""",
        f"""CREATE TABLE {s}.payment_links (
            id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES {s}.accounts(id),
            slug text NOT NULL UNIQUE,
            name text NOT NULL,
            active boolean NOT NULL DEFAULT true,
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
            line_items jsonb NOT NULL CHECK (jsonb_typeof(line_items) = 'array'),
            settings jsonb NOT NULL DEFAULT '{{}}',
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            deleted_at timestamptz
        )""",
        f"CREATE INDEX payment_links_account ON {s}.payment_links (account_id, id) WHERE deleted_at IS NULL",
        f"""CREATE TABLE {s}.checkout_sessions (
            id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES {s}.accounts(id),
            token_hash bytea NOT NULL UNIQUE,
            csrf_token text NOT NULL,
            source_type text NOT NULL,
            source_id text NOT NULL,
            test_mode boolean NOT NULL,
            status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'complete', 'expired')),
            currency text NOT NULL,
            line_items jsonb NOT NULL,
            settings jsonb NOT NULL DEFAULT '{{}}',
            selection jsonb,
            contact jsonb,
            billing_address jsonb,
            shipping_address jsonb,
            summary jsonb,
            processor_customer_id text,
            setup_intent_id text,
            setup_client_secret text,
            setup_attempt int NOT NULL DEFAULT 0,
            charge_attempt int NOT NULL DEFAULT 0,
            payment_id text,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            completed_at timestamptz,
            CONSTRAINT complete_has_payment CHECK ((status = 'complete') = (payment_id IS NOT NULL))
        )""",
        f"CREATE INDEX checkout_sessions_source ON {s}.checkout_sessions (account_id, source_id)",
        # Every processor call that creates something: written before the call, its
        # idempotency key derived from this row, so a retry reaches the same object.
        f"""CREATE TABLE {s}.processor_operations (
            id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES {s}.accounts(id),
            kind text NOT NULL,
            subject_id text NOT NULL,
            idempotency_key text NOT NULL UNIQUE,
            request jsonb NOT NULL,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'succeeded', 'requires_action', 'declined', 'failed', 'unknown')),
            result jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )""",
        f"CREATE INDEX processor_operations_subject ON {s}.processor_operations (account_id, subject_id)",
        f"""CREATE TABLE {s}.payments (
            id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES {s}.accounts(id),
            session_id text UNIQUE REFERENCES {s}.checkout_sessions(id),
            source_type text NOT NULL,
            source_id text NOT NULL,
            status text NOT NULL CHECK (status IN
                ('processing', 'succeeded', 'failed', 'refunded', 'partially_refunded')),
            amount bigint NOT NULL CHECK (amount > 0),
            currency text NOT NULL,
            fee bigint,
            net bigint,
            amount_refunded bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
            method_type text NOT NULL,
            email text NOT NULL,
            contact jsonb NOT NULL,
            contact_id text,
            company_id text,
            deal_ids text[] NOT NULL DEFAULT '{{}}',
            billing_address jsonb,
            shipping_address jsonb,
            processor_payment_intent_id text UNIQUE,
            processor_charge_id text,
            processor_customer_id text,
            test_mode boolean NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        )""",
        f"CREATE INDEX payments_account ON {s}.payments (account_id, id)",
        f"CREATE INDEX payments_source ON {s}.payments (account_id, source_id)",
        # Public tokens resolve to their account before the tenant is known.
        f"""CREATE FUNCTION {s}.resolve_link_slug(p_slug text)
            RETURNS TABLE (account_id text, link_id text)
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
            AS $$ SELECT account_id, id FROM {s}.payment_links
                  WHERE slug = p_slug AND deleted_at IS NULL $$""",
        f"REVOKE ALL ON FUNCTION {s}.resolve_link_slug(text) FROM PUBLIC",
        f"""CREATE FUNCTION {s}.resolve_session_token(p_token_hash bytea)
            RETURNS TABLE (account_id text, session_id text)
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
            AS $$ SELECT account_id, id FROM {s}.checkout_sessions WHERE token_hash = p_token_hash $$""",
        f"REVOKE ALL ON FUNCTION {s}.resolve_session_token(bytea) FROM PUBLIC",
    ]
    for table in ("payment_links", "checkout_sessions", "processor_operations", "payments"):
        statements += tenant_policy(s, table)
    execute_all(statements)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
