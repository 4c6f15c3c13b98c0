"""Companies, pipelines with stages, deals.

- companies: unique per account by lower(domain) when a domain is set, else by
  lower(name) (two companies may share a name when their domains differ);
- pipelines: one default per account; stages ordered, each open, closed-won or
  closed-lost, names unique within their pipeline;
- deals: a deal's stage belongs to its pipeline (composite foreign key), its company
  and every reference stay inside the account (keys carry account_id);
- contacts get a version (crm_record.updated) and their company_id a foreign key;
- associations (0002) keep the links among contacts, companies, deals, payments and
  payment links; CRM-to-CRM pairs are stored in both directions.

Revision ID: 0003
Revises: 0002
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COMPANY_TEXT = ("phone", "website", "industry", "address", "city", "state", "zip", "country", "description")


def upgrade(schema: str) -> None:
    s = schema
    company_columns = ",\n".join(f"                {c} text" for c in COMPANY_TEXT)
    execute_all(
        [
            f"""CREATE TABLE {s}.companies (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                name text NOT NULL CHECK (btrim(name) <> ''),
                domain text CHECK (domain IS NULL OR (domain <> '' AND domain = lower(domain))),
{company_columns},
                version bigint NOT NULL DEFAULT 1 CHECK (version > 0),
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                UNIQUE (account_id, id)
            )""",
            f"CREATE UNIQUE INDEX companies_domain ON {s}.companies (account_id, domain) WHERE domain IS NOT NULL",
            f"""CREATE UNIQUE INDEX companies_name_without_domain ON {s}.companies (account_id, lower(name))
                WHERE domain IS NULL""",
            f"CREATE INDEX companies_name ON {s}.companies (account_id, lower(name))",
            f"CREATE INDEX companies_account ON {s}.companies (account_id, id)",
            # -- contacts: version for crm_record.updated; the company is the account's ----------
            f"ALTER TABLE {s}.contacts ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version > 0)",
            f"""ALTER TABLE {s}.contacts ADD CONSTRAINT contacts_company
                FOREIGN KEY (account_id, company_id) REFERENCES {s}.companies (account_id, id)""",
            f"CREATE INDEX contacts_company ON {s}.contacts (account_id, company_id) WHERE company_id IS NOT NULL",
            # -- pipelines and their stages ---------------------------------------------------------
            f"""CREATE TABLE {s}.pipelines (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                name text NOT NULL CHECK (btrim(name) <> ''),
                is_default boolean NOT NULL DEFAULT false,
                version bigint NOT NULL DEFAULT 1 CHECK (version > 0),
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                UNIQUE (account_id, id)
            )""",
            f"CREATE UNIQUE INDEX pipelines_one_default ON {s}.pipelines (account_id) WHERE is_default",
            f"CREATE UNIQUE INDEX pipelines_name ON {s}.pipelines (account_id, lower(name))",
            f"""CREATE TABLE {s}.pipeline_stages (
                id text PRIMARY KEY,
                account_id text NOT NULL,
                pipeline_id text NOT NULL,
                name text NOT NULL CHECK (btrim(name) <> ''),
                kind text NOT NULL CHECK (kind IN ('open', 'closed_won', 'closed_lost')),
                display_order int NOT NULL CHECK (display_order >= 0),
                UNIQUE (account_id, pipeline_id, id),
                UNIQUE (pipeline_id, display_order) DEFERRABLE INITIALLY IMMEDIATE,
                FOREIGN KEY (account_id, pipeline_id) REFERENCES {s}.pipelines (account_id, id) ON DELETE CASCADE
            )""",
            f"CREATE UNIQUE INDEX pipeline_stages_name ON {s}.pipeline_stages (pipeline_id, lower(name))",
            # -- deals ---------------------------------------------------------------------------------
            f"""CREATE TABLE {s}.deals (
                id text PRIMARY KEY,
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                name text NOT NULL CHECK (btrim(name) <> ''),
                amount bigint CHECK (amount >= 0),
                currency text CHECK (currency ~ '^[A-Z]{{3}}$'),
                pipeline_id text NOT NULL,
                stage_id text NOT NULL,
                company_id text,
                -- the payment link whose deal rule (PRODUCT §3.2) created the deal
                created_by_link_id text,
                version bigint NOT NULL DEFAULT 1 CHECK (version > 0),
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                CONSTRAINT deal_amount_has_currency CHECK (amount IS NULL OR currency IS NOT NULL),
                CONSTRAINT deal_stage_in_pipeline FOREIGN KEY (account_id, pipeline_id, stage_id)
                    REFERENCES {s}.pipeline_stages (account_id, pipeline_id, id),
                CONSTRAINT deal_company FOREIGN KEY (account_id, company_id)
                    REFERENCES {s}.companies (account_id, id)
            )""",
            f"CREATE INDEX deals_account ON {s}.deals (account_id, id)",
            f"CREATE INDEX deals_stage ON {s}.deals (account_id, pipeline_id, stage_id)",
            f"CREATE INDEX deals_company ON {s}.deals (account_id, company_id) WHERE company_id IS NOT NULL",
            f"""CREATE INDEX deals_created_by_link ON {s}.deals (account_id, created_by_link_id)
                WHERE created_by_link_id IS NOT NULL""",
            *tenant_policy(s, "companies"),
            *tenant_policy(s, "pipelines"),
            *tenant_policy(s, "pipeline_stages"),
            *tenant_policy(s, "deals"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
