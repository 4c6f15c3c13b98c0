"""Retries with backoff in the send ledger's rows; the newest invoice snapshot seen.

Revision ID: 0005
Revises: 0004

A message waits in its row, not in a queue: ``next_attempt_at`` is when it may be tried
(again). A transient SMTP failure puts it back to ``queued`` with a later
``next_attempt_at`` (exponential backoff; ``first_failed_at`` starts the give-up clock),
a claim for sending sets it to the end of the sender's lease, so "due" is one index
range for both: ``status IN ('queued', 'sending') AND next_attempt_at <= now()``. The
sweep of every worker reads that range (decision 84). ``failed`` becomes final (the
server refused the message for good, or it kept failing past the give-up time); rows
that were ``failed`` (= waiting for the event's retry) are queued again.

``invoice_versions``: the newest ``invoice.updated`` version acted on per invoice, so a
snapshot older than one already seen sends nothing (decision 82).
"""

from shared.migrations import execute_all
from shared.schema_sql import tenant_policy

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"""ALTER TABLE {s}.emails ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
                ADD COLUMN first_failed_at timestamptz""",
            f"UPDATE {s}.emails SET status = 'queued' WHERE status = 'failed'",
            f"UPDATE {s}.emails SET next_attempt_at = updated_at + interval '120 seconds' WHERE status = 'sending'",
            f"DROP INDEX {s}.emails_unsent",
            f"CREATE INDEX emails_due ON {s}.emails (next_attempt_at) WHERE status IN ('queued', 'sending')",
            f"""CREATE TABLE {s}.invoice_versions (
                account_id text NOT NULL REFERENCES {s}.accounts(id),
                invoice_id text NOT NULL,
                version integer NOT NULL,
                PRIMARY KEY (account_id, invoice_id)
            )""",
            *tenant_policy(s, "invoice_versions"),
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
