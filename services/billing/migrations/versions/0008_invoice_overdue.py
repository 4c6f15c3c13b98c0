"""Invoices: the overdue fact, and the terms an invoice bills.

Revision ID: 0008
Revises: 0007

``overdue`` stays computed on read (decision 39); ``overdue_at`` records the account-clock
instant the invoice pass found an open invoice past its due date, once, so that
``invoice.updated`` carries the fact the ``invoice_overdue`` e-mail is sent for
(decision 83). The partial index holds only the invoices the pass still has to look at:
open, not marked, no bank debit processing for them.

``terms`` (interval, payments_total, start_date, end_date) are the subscription's terms
as at issue — the invoice's e-mails name them (PRODUCT §11) like its document does —
copied at issue like the invoice settings (decision 41); existing invoices get their
subscription's current terms.
"""

from shared.migrations import execute_all

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: The index's predicate; invoices/repository.py ``_OVERDUE`` repeats it.
NOT_YET_OVERDUE = "status = 'open' AND overdue_at IS NULL AND payment_id IS NULL"


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"ALTER TABLE {s}.invoices ADD COLUMN overdue_at timestamptz, ADD COLUMN terms jsonb",
            f"""UPDATE {s}.invoices i SET terms = jsonb_build_object(
                    'interval', s.interval, 'payments_total', s.payments_total,
                    'start_date', s.start_date, 'end_date', s.end_date)
                FROM {s}.subscriptions s WHERE s.id = i.subscription_id""",
            f"""CREATE INDEX invoices_not_yet_overdue ON {s}.invoices (account_id, due_date, id)
                WHERE {NOT_YET_OVERDUE}""",
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
