"""The scheduler walks due subscriptions in (next payment date, id) order.

Revision ID: 0006
Revises: 0005

A pass takes the due subscriptions in batches with a keyset cursor, skipping those whose
date already has its charge; before, every batch took the first ``batch`` due rows by
date, which stay due until their charges succeed, so a pass with more due subscriptions
than one batch created charges for the first batch only (found by bench/p3_billing_run.py).
"""

from shared.migrations import execute_all

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"DROP INDEX {s}.subscriptions_due",
            f"""CREATE INDEX subscriptions_due ON {s}.subscriptions (next_payment_date, id)
                WHERE status IN ('scheduled', 'active') AND next_payment_date IS NOT NULL""",
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
