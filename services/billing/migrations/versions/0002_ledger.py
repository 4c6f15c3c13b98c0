"""The ledger: every payment billing knows of.

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
    execute_all(
        [
            f"""CREATE TABLE {s}.ledger_entries (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                kind text NOT NULL CHECK (kind IN ('payment', 'refund')),
                payment_id text NOT NULL,
                amount bigint NOT NULL,
                currency text NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
                source jsonb NOT NULL,
                event_id text NOT NULL,
                occurred_at timestamptz NOT NULL,
                recorded_at timestamptz NOT NULL DEFAULT now(),
                UNIQUE (account_id, kind, payment_id)
            )""",
            f"CREATE INDEX ledger_entries_account ON {s}.ledger_entries (account_id, id)",
            *tenant_policy(s, "ledger_entries"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
