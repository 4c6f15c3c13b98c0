"""A projection of checkout's quotes: the deal's quote card and the associations.

Checkout owns quotes and announces every change as a versioned snapshot
(``quote.updated``); crm_sync keeps what the CRM shows — title, status, the published
total, expiry, payment date, page address — and whose they are (deal, contact, company),
applying a snapshot only when its version is higher.

Revision ID: 0006
Revises: 0005
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"""CREATE TABLE {s}.quotes (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                version bigint NOT NULL CHECK (version > 0),
                status text NOT NULL,
                title text NOT NULL,
                deal_id text,
                contact_id text,
                company_id text,
                currency text NOT NULL,
                total_due_now bigint,
                url text,
                expires_on date,
                published_at timestamptz,
                paid_at timestamptz,
                payment_id text,
                updated_at timestamptz NOT NULL
            )""",
            f"CREATE INDEX quotes_deal ON {s}.quotes (account_id, deal_id) WHERE deal_id IS NOT NULL",
            f"CREATE INDEX quotes_contact ON {s}.quotes (account_id, contact_id) WHERE contact_id IS NOT NULL",
            f"CREATE INDEX quotes_company ON {s}.quotes (account_id, company_id) WHERE company_id IS NOT NULL",
            *tenant_policy(s, "quotes"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
