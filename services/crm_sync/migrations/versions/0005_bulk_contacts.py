"""Contacts shaped for set-based upserts (bulk imports, the batch API; decision 73).

- The primary key becomes ``(account_id, id)``: every lookup of a contact names its
  account, and listing (``account_id``, newest id first) reads the same index, so the
  separate ``contacts_account (account_id, id)`` index goes — one index fewer to write per
  contact. Ids stay unique in practice (80 random bits each).
- The foreign key ``account_id → accounts`` goes: PostgreSQL checks it row by row (a
  trigger per inserted contact), which cost a million-contact import as much as the
  indexes did. Row-level security already pins every row to the writer's account, and
  every writer works for an account it has just read (the API key's, the event's, the
  one ``commerce crm import`` checks). The company's foreign key stays.
- The outbox's envelopes are compressed with LZ4 where the server has it (a batch's
  ``crm_records.updated`` is about 100 KB; pglz compresses it several times slower).

Revision ID: 0005
Revises: 0004
"""

from shared.migrations import execute_all

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    s = schema
    execute_all(
        [
            f"ALTER TABLE {s}.contacts DROP CONSTRAINT contacts_pkey, ADD PRIMARY KEY (account_id, id)",
            f"DROP INDEX {s}.contacts_account",
            f"ALTER TABLE {s}.contacts DROP CONSTRAINT contacts_account_id_fkey",
            f"""DO $$ BEGIN
                IF (SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression') THEN
                    ALTER TABLE {s}.outbox ALTER COLUMN envelope SET COMPRESSION lz4;
                END IF;
            END $$""",
        ]
    )


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
