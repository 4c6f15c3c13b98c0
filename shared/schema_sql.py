"""DDL that every service schema has, used by each service's first migration.

Functions here are versioned (``_v1``) and frozen once released: a migration that used
them must produce the same schema forever. Later changes get a new function and a new
migration in each service.
"""

from __future__ import annotations


def tenant_policy(schema: str, table: str, column: str = "account_id") -> list[str]:
    """Row-level security: the runtime role sees only rows of ``app.account_id``."""
    return [
        f"ALTER TABLE {schema}.{table} ENABLE ROW LEVEL SECURITY",
        f"""CREATE POLICY tenant_isolation ON {schema}.{table}
            USING ({column} = current_setting('app.account_id', true))
            WITH CHECK ({column} = current_setting('app.account_id', true))""",
    ]


def core_tables_v1(schema: str) -> list[str]:
    s = schema
    statements = [
        # -- accounts and keys (owned by checkout; a projection everywhere else) --------
        f"""CREATE TABLE {s}.accounts (
            id text PRIMARY KEY,
            version bigint NOT NULL CHECK (version > 0),
            name text NOT NULL,
            test_mode boolean NOT NULL,
            settings jsonb NOT NULL DEFAULT '{{}}',
            clock_offset_us bigint NOT NULL DEFAULT 0,
            processor jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT live_accounts_have_no_test_clock CHECK (test_mode OR clock_offset_us = 0)
        )""",
        f"""CREATE TABLE {s}.api_keys (
            id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES {s}.accounts(id) ON DELETE CASCADE,
            prefix text NOT NULL,
            key_hash text NOT NULL UNIQUE,
            scopes text[] NOT NULL CHECK (cardinality(scopes) > 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )""",
        f"CREATE INDEX api_keys_account ON {s}.api_keys (account_id)",
        # The one cross-account read the runtime role may make: key hash -> its account.
        f"""CREATE FUNCTION {s}.authenticate_api_key(p_key_hash text)
            RETURNS TABLE (key_id text, account_id text, scopes text[], test_mode boolean)
            LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$
                SELECT k.id, k.account_id, k.scopes, a.test_mode
                FROM {s}.api_keys k JOIN {s}.accounts a ON a.id = k.account_id
                WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
            $$""",
        f"REVOKE ALL ON FUNCTION {s}.authenticate_api_key(text) FROM PUBLIC",
        # -- transactional outbox ------------------------------------------------------
        f"""CREATE TABLE {s}.outbox (
            seq bigserial PRIMARY KEY,
            event_id text NOT NULL UNIQUE,
            account_id text NOT NULL,
            type text NOT NULL,
            version int NOT NULL,
            envelope jsonb NOT NULL,
            pending text[] NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz,
            last_published_at timestamptz,
            publish_count int NOT NULL DEFAULT 0,
            broker_epoch text,
            delivered_at timestamptz
        )""",
        f"CREATE INDEX outbox_unpublished ON {s}.outbox (seq) WHERE published_at IS NULL",
        f"""CREATE INDEX outbox_unacknowledged ON {s}.outbox (last_published_at)
            WHERE published_at IS NOT NULL AND delivered_at IS NULL""",
        f"CREATE INDEX outbox_account_seq ON {s}.outbox (account_id, seq)",
        f"""CREATE FUNCTION {s}.outbox_notify() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{s}_outbox', '');
                RETURN NULL;
            END $$""",
        f"""CREATE TRIGGER outbox_notify AFTER INSERT ON {s}.outbox
            FOR EACH STATEMENT EXECUTE FUNCTION {s}.outbox_notify()""",
        # -- inbox: one row per (event, handler) that has been applied -----------------
        f"""CREATE TABLE {s}.inbox (
            event_id text NOT NULL,
            handler text NOT NULL,
            account_id text NOT NULL,
            processed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (event_id, handler)
        )""",
        # -- jobs whose retries ran out (or that can never succeed) --------------------
        f"""CREATE TABLE {s}.failed_jobs (
            id bigserial PRIMARY KEY,
            account_id text,
            actor_name text NOT NULL,
            message_id text,
            event_id text,
            args jsonb NOT NULL,
            error text NOT NULL,
            failed_at timestamptz NOT NULL DEFAULT now(),
            retried_at timestamptz
        )""",
        f"CREATE INDEX failed_jobs_open ON {s}.failed_jobs (failed_at) WHERE retried_at IS NULL",
        # -- Idempotency-Key of admin POSTs ---------------------------------------------
        f"""CREATE TABLE {s}.idempotency_keys (
            account_id text NOT NULL,
            key text NOT NULL,
            request_hash text NOT NULL,
            response_status int,
            response_body jsonb,
            response_type text,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (account_id, key)
        )""",
        f"CREATE INDEX idempotency_keys_created ON {s}.idempotency_keys (created_at)",
    ]
    statements += tenant_policy(s, "accounts", "id")
    for table in ("api_keys", "outbox", "inbox", "failed_jobs", "idempotency_keys"):
        statements += tenant_policy(s, table)
    return statements
