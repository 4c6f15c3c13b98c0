"""Ledger entries for settled, failed and refunded payments.

Revision ID: 0003
Revises: 0002

Kinds and signs (the sum of ``amount`` is what the account was paid, net of refunds):
- ``payment``: a purchase paid at checkout (``purchase.completed``, succeeded) — +amount;
- ``settlement``: a payment whose success became final later (``payment.succeeded``:
  a settled bank debit, a renewal) — +amount;
- ``failure``: a payment that failed (``payment.failed``) — 0, it moves no money; its
  ``details`` say what was attempted and why it failed;
- ``refund``: one refund (``payment.refunded``) — −amount.

Exact under duplicates and overlaps, by unique indexes rather than by code:
- a payment is credited once, whichever of ``payment`` / ``settlement`` comes first;
- one ``failure`` entry per payment; one ``refund`` entry per refund.
"""

from shared.migrations import execute_all

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"ALTER TABLE {s}.ledger_entries DROP CONSTRAINT ledger_entries_kind_check",
            f"ALTER TABLE {s}.ledger_entries DROP CONSTRAINT ledger_entries_account_id_kind_payment_id_key",
            f"""ALTER TABLE {s}.ledger_entries
                ADD COLUMN refund_id text,
                ADD COLUMN details jsonb NOT NULL DEFAULT '{{}}',
                ADD CONSTRAINT ledger_entries_kind_check
                    CHECK (kind IN ('payment', 'settlement', 'failure', 'refund')),
                ADD CONSTRAINT ledger_entries_refund_has_refund_id CHECK ((kind = 'refund') = (refund_id IS NOT NULL)),
                ADD CONSTRAINT ledger_entries_sign CHECK (
                    CASE kind
                        WHEN 'refund' THEN amount < 0
                        WHEN 'failure' THEN amount = 0
                        ELSE amount > 0
                    END)""",
            f"""CREATE UNIQUE INDEX ledger_entries_credited_once ON {s}.ledger_entries (account_id, payment_id)
                WHERE kind IN ('payment', 'settlement')""",
            f"""CREATE UNIQUE INDEX ledger_entries_failure_once ON {s}.ledger_entries (account_id, payment_id)
                WHERE kind = 'failure'""",
            f"""CREATE UNIQUE INDEX ledger_entries_refund_once ON {s}.ledger_entries (account_id, refund_id)
                WHERE kind = 'refund'""",
            f"CREATE INDEX ledger_entries_payment ON {s}.ledger_entries (account_id, payment_id)",
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
