"""Projection of CRM records (contacts, companies, deals, pipelines) other services refer to.

crm_sync owns the records; ``crm_record.updated`` events carry each change with a
version that grows per record, and ``services/checkout/crm_refs.py`` keeps the newest
here (a deletion is a row with ``deleted``, so an older event arriving late cannot bring
the record back).

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
            f"""CREATE TABLE {s}.crm_records (
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                kind text NOT NULL CHECK (kind IN ('contact', 'company', 'deal', 'pipeline')),
                record_id text NOT NULL CHECK (record_id <> ''),
                version bigint NOT NULL CHECK (version > 0),
                deleted boolean NOT NULL DEFAULT false,
                data jsonb NOT NULL DEFAULT '{{}}',
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (account_id, kind, record_id)
            )""",
            *tenant_policy(s, "crm_records"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
