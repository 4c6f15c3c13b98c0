"""E-mails held until a payment settles.

Revision ID: 0003
Revises: 0002

No message before the outcome (PRODUCT §11): the receipt of a purchase whose payment is
still processing (a bank debit) is rendered and stored ``held``; ``payment.succeeded``
releases it (``queued``, then sent), ``payment.failed`` drops it (``dropped``: never
sent). ``payment_outcomes`` remembers a settlement that arrives before the purchase
(events are delivered in any order), so the late receipt is queued or dropped at once.
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"ALTER TABLE {s}.emails DROP CONSTRAINT emails_status_check",
            f"""ALTER TABLE {s}.emails ADD CONSTRAINT emails_status_check
                CHECK (status IN ('held', 'queued', 'sending', 'sent', 'failed', 'bounced', 'dropped'))""",
            f"""CREATE TABLE {s}.payment_outcomes (
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                payment_id text NOT NULL,
                succeeded boolean NOT NULL,
                decided_at timestamptz NOT NULL,
                PRIMARY KEY (account_id, payment_id)
            )""",
            *tenant_policy(s, "payment_outcomes"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
