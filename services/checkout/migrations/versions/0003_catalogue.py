"""Catalogue: products, tax rates, discount codes and their redemptions.

The business rules that a row must always satisfy live here as constraints, so that no
code path (API, worker, a hand-written query) can store a product without a price, a
tax rate over 100 %, a discount code that is both a percentage and an amount, or more
redemptions than a code allows.

Revision ID: 0003
Revises: 0002
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: The billing frequencies of PRODUCT §2 (shared.schedule.INTERVALS at the time of this
#: migration; written out because a released migration never changes).
INTERVALS = (
    "weekly",
    "biweekly",
    "monthly",
    "quarterly",
    "semiannually",
    "annually",
    "every_2_years",
    "every_3_years",
    "every_4_years",
    "every_5_years",
)


def upgrade(schema: str) -> None:
    s = schema
    intervals = ", ".join(f"'{i}'" for i in INTERVALS)
    statements = [
        # -- the product library (PRODUCT §2) ----------------------------------------------
        f"""CREATE TABLE {s}.products (
            id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES {s}.accounts(id),
            name text NOT NULL CHECK (name <> '' AND length(name) <= 250),
            description text CHECK (length(description) <= 2000),
            sku text CHECK (sku <> '' AND length(sku) <= 100),
            unit_amount bigint NOT NULL CHECK (unit_amount > 0),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
            recurring_interval text CHECK (recurring_interval IN ({intervals})),
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            deleted_at timestamptz,
            CONSTRAINT deleted_products_are_inactive CHECK (deleted_at IS NULL OR NOT active)
        )""",
        f"CREATE INDEX products_account ON {s}.products (account_id, id) WHERE deleted_at IS NULL",
        # -- tax rates: exclusive (added on top), up to 4 decimals -------------------------
        f"""CREATE TABLE {s}.tax_rates (
            id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES {s}.accounts(id),
            name text NOT NULL CHECK (name <> '' AND length(name) <= 100),
            percentage numeric(7, 4) NOT NULL CHECK (percentage >= 0 AND percentage <= 100),
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL
        )""",
        f"CREATE INDEX tax_rates_account ON {s}.tax_rates (account_id, id)",
        # -- discount codes (PRODUCT §3.1): a percentage or an amount in one currency ------
        f"""CREATE TABLE {s}.discount_codes (
            id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES {s}.accounts(id),
            code text NOT NULL CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_-]{{0,49}}$'),
            percent_off numeric(6, 2) CHECK (percent_off > 0 AND percent_off <= 100),
            amount_off bigint CHECK (amount_off > 0),
            currency text CHECK (currency ~ '^[A-Z]{{3}}$'),
            expires_at timestamptz,
            max_redemptions integer CHECK (max_redemptions > 0),
            times_redeemed integer NOT NULL DEFAULT 0 CHECK (times_redeemed >= 0),
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL,
            CONSTRAINT percent_off_or_amount_off CHECK ((percent_off IS NULL) <> (amount_off IS NULL)),
            CONSTRAINT amount_off_has_a_currency CHECK ((amount_off IS NULL) = (currency IS NULL)),
            CONSTRAINT redeemed_within_the_limit
                CHECK (max_redemptions IS NULL OR times_redeemed <= max_redemptions),
            CONSTRAINT discount_codes_account_id UNIQUE (account_id, id)
        )""",
        # One code per account whatever its case: "SPRING" and "spring" are the same code.
        f"CREATE UNIQUE INDEX discount_codes_code ON {s}.discount_codes (account_id, lower(code))",
        f"CREATE INDEX discount_codes_account ON {s}.discount_codes (account_id, id)",
        # -- one row per checkout session that used a code ----------------------------------
        f"""CREATE TABLE {s}.discount_redemptions (
            session_id text PRIMARY KEY,
            account_id text NOT NULL REFERENCES {s}.accounts(id),
            discount_code_id text NOT NULL,
            payment_id text NOT NULL,
            created_at timestamptz NOT NULL,
            -- the code is the same account's (a foreign key alone would accept any account's)
            CONSTRAINT discount_redemptions_code FOREIGN KEY (account_id, discount_code_id)
                REFERENCES {s}.discount_codes (account_id, id)
        )""",
        f"CREATE INDEX discount_redemptions_by_code ON {s}.discount_redemptions (account_id, discount_code_id)",
    ]
    for table in ("products", "tax_rates", "discount_codes", "discount_redemptions"):
        statements += tenant_policy(s, table)
    execute_all(statements)


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
