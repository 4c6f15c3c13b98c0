"""Billing's subscription payments are recorded in ``payments`` too.

Billing charges a subscription's saved payment method off-session and announces each
outcome (``payment.succeeded`` / ``payment.failed`` with a ``subscription`` part);
checkout records it as a payment with ``source_type = 'subscription'`` and no session
(services/checkout/payments/events.py). A subscription made through the API may have no
e-mail address (only a CRM contact), so a payment's ``email`` becomes optional; the API
already answers it as ``string | null``.

Revision ID: 0010
Revises: 0009
"""

from shared.migrations import execute_all

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"ALTER TABLE {s}.payments ALTER COLUMN email DROP NOT NULL",
            # A checkout payment always knows its buyer's e-mail; only billing's may lack one.
            f"""ALTER TABLE {s}.payments ADD CONSTRAINT payments_email_unless_subscription
                CHECK (email IS NOT NULL OR source_type = 'subscription')""",
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
