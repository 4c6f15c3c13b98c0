"""Discount-code redemptions are reserved before the charge.

A redemption row is written (and the code's count taken) in the transaction that claims
the charge operation, so a code with one redemption left cannot be used by two buyers
paying at once; ``payment_id`` is filled in when the payment is recorded and is NULL
while the charge is in flight. A declined charge releases its reservation; one left by a
session that expired unpaid is released the next time the code runs out
(services/checkout/catalogue/service.py).

Revision ID: 0009
Revises: 0008
"""

from shared.migrations import execute_all

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"ALTER TABLE {s}.discount_redemptions ALTER COLUMN payment_id DROP NOT NULL",
            f"""CREATE INDEX discount_redemptions_reserved ON {s}.discount_redemptions (account_id, discount_code_id)
                WHERE payment_id IS NULL""",
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
