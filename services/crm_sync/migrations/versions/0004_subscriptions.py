"""A projection of billing's subscriptions: who they belong to, for the associations.

Billing owns subscriptions and announces every change as a versioned snapshot
(``subscription.updated``); crm_sync keeps what the CRM lists — the contact (or, until
billing knows the contact, the e-mail), the company, the deals and the status — and
applies a snapshot only when its version is higher, so the outcome does not depend on
the order the snapshots arrive in (services/crm_sync/crm/subscription_events.py).

Revision ID: 0004
Revises: 0003
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
            f"""CREATE TABLE {s}.subscriptions (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                contact_id text,
                email text,
                company_id text,
                deal_ids text[] NOT NULL DEFAULT '{{}}',
                status text NOT NULL,
                version bigint NOT NULL CHECK (version > 0),
                updated_at timestamptz NOT NULL
            )""",
            f"CREATE INDEX subscriptions_contact ON {s}.subscriptions (account_id, contact_id)",
            f"""CREATE INDEX subscriptions_email ON {s}.subscriptions (account_id, lower(email))
                WHERE contact_id IS NULL""",
            f"""CREATE INDEX subscriptions_company ON {s}.subscriptions (account_id, company_id)
                WHERE company_id IS NOT NULL""",
            f"CREATE INDEX subscriptions_deals ON {s}.subscriptions USING gin (deal_ids)",
            *tenant_policy(s, "subscriptions"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
