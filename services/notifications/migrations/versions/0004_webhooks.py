"""The account's event feed, webhook endpoints and their deliveries.

Revision ID: 0004
Revises: 0003

- ``event_feed``: every public event of an account once (``GET /v1/events``), in the
  order notifications recorded it: ``seq`` is taken under a per-account lock held to the
  commit, so within an account a higher ``seq`` never becomes visible before a lower one
  and a cursor never skips a row (docs/decisions.md 61).
- ``webhook_endpoints``: the merchant's URLs. ``next_attempt_at`` is when the endpoint's
  oldest pending delivery (its head) may be sent — NULL when nothing is pending; the
  sweep finds due endpoints by it. ``drain_token`` / ``drain_until`` are the lease of the
  one drain that sends for the endpoint (no transaction is open while it sends). After a
  secret rotation the previous secret signs too until ``previous_secret_expires_at``.
- ``webhook_deliveries``: one row per (endpoint, event), written with the feed row; sent
  in ``seq`` order per endpoint, never dropped (``pending`` until a 2xx answer).
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"""CREATE TABLE {s}.event_feed (
                seq bigserial PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                event_id text NOT NULL,
                type text NOT NULL,
                version int NOT NULL,
                data jsonb NOT NULL,
                occurred_at timestamptz NOT NULL,
                recorded_at timestamptz NOT NULL DEFAULT now(),
                UNIQUE (account_id, event_id)
            )""",
            f"CREATE INDEX event_feed_account_seq ON {s}.event_feed (account_id, seq)",
            *tenant_policy(s, "event_feed"),
            f"""CREATE TABLE {s}.webhook_endpoints (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                url text NOT NULL,
                events text[] NOT NULL CHECK (cardinality(events) > 0),
                description text,
                secret_encrypted text NOT NULL,
                previous_secret_encrypted text,
                previous_secret_expires_at timestamptz,
                status text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
                consecutive_failures int NOT NULL DEFAULT 0,
                failing_since timestamptz,
                next_attempt_at timestamptz,
                kicked_at timestamptz,
                drain_token text,
                drain_until timestamptz,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now()
            )""",
            f"CREATE INDEX webhook_endpoints_account ON {s}.webhook_endpoints (account_id, id)",
            f"""CREATE INDEX webhook_endpoints_due ON {s}.webhook_endpoints (next_attempt_at)
                WHERE next_attempt_at IS NOT NULL AND status = 'enabled'""",
            *tenant_policy(s, "webhook_endpoints"),
            f"""CREATE TABLE {s}.webhook_deliveries (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                endpoint_id text NOT NULL REFERENCES {s}.webhook_endpoints(id) ON DELETE CASCADE,
                event_id text NOT NULL,
                event_type text NOT NULL,
                seq bigint NOT NULL,
                status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered')),
                attempts int NOT NULL DEFAULT 0,
                next_attempt_at timestamptz,
                last_attempt_at timestamptz,
                last_response_status int,
                last_response_body text,
                last_error text,
                delivered_at timestamptz,
                created_at timestamptz NOT NULL DEFAULT now(),
                UNIQUE (endpoint_id, event_id)
            )""",
            f"CREATE INDEX webhook_deliveries_log ON {s}.webhook_deliveries (endpoint_id, seq)",
            f"""CREATE INDEX webhook_deliveries_pending ON {s}.webhook_deliveries (endpoint_id, seq)
                WHERE status = 'pending'""",
            f"CREATE INDEX webhook_deliveries_event ON {s}.webhook_deliveries (account_id, event_id)",
            *tenant_policy(s, "webhook_deliveries"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
