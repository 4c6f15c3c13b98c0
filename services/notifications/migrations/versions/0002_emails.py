"""The e-mail send ledger: one row per (fact, kind, recipient), sent at most once.

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
            f"""CREATE TABLE {s}.emails (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                kind text NOT NULL,
                fact_key text NOT NULL,
                recipient text NOT NULL,
                subject text NOT NULL,
                html_body text NOT NULL,
                text_body text NOT NULL,
                locale text NOT NULL,
                message_id text NOT NULL UNIQUE,
                related jsonb NOT NULL DEFAULT '{{}}',
                status text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'bounced')),
                attempts int NOT NULL DEFAULT 0,
                last_error text,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now(),
                sent_at timestamptz,
                UNIQUE (account_id, fact_key, kind, recipient)
            )""",
            f"CREATE INDEX emails_account ON {s}.emails (account_id, id)",
            f"CREATE INDEX emails_unsent ON {s}.emails (updated_at) WHERE status IN ('queued', 'sending', 'failed')",
            *tenant_policy(s, "emails"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
