"""Contacts (unique per account by case-insensitive e-mail) and associations.

Revision ID: 0002
Revises: 0001
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CONTACT_TEXT = (
    "firstname",
    "lastname",
    "phone",
    "company",
    "jobtitle",
    "website",
    "address",
    "city",
    "state",
    "zip",
    "country",
)


def upgrade(schema: str) -> None:
    s = schema
    columns = ",\n".join(f"                {c} text" for c in CONTACT_TEXT)
    execute_all(
        [
            f"""CREATE TABLE {s}.contacts (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                email text NOT NULL CHECK (email <> ''),
{columns},
                company_id text,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL
            )""",
            f"CREATE UNIQUE INDEX contacts_email ON {s}.contacts (account_id, lower(email))",
            f"CREATE INDEX contacts_account ON {s}.contacts (account_id, id)",
            f"""CREATE TABLE {s}.associations (
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                object_type text NOT NULL,
                object_id text NOT NULL,
                related_type text NOT NULL,
                related_id text NOT NULL,
                source text NOT NULL DEFAULT 'automatic',
                created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (account_id, object_type, object_id, related_type, related_id)
            )""",
            f"CREATE INDEX associations_related ON {s}.associations (account_id, related_type, related_id)",
            *tenant_policy(s, "contacts"),
            *tenant_policy(s, "associations"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
