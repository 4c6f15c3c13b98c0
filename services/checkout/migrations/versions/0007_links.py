"""Link search, and the discount code and checkout day of a session.

Revision ID: 0007
Revises: 0006
"""

from shared.migrations import execute_all

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"CREATE INDEX payment_links_name ON {s}.payment_links (account_id, lower(name)) WHERE deleted_at IS NULL",
            # The discount code a buyer entered, as priced (id, code, percent_off | amount_off).
            f"ALTER TABLE {s}.checkout_sessions ADD COLUMN discount_code jsonb",
            # The account-local date the buyer's summary was computed for (billing anchor).
            f"ALTER TABLE {s}.checkout_sessions ADD COLUMN checkout_day date",
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
