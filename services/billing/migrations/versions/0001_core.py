"""Core tables every service schema has: accounts, API keys, outbox, inbox, failed jobs,
idempotency keys, with row-level security.

Revision ID: 0001
Revises:
"""

from shared.migrations import execute_all
from shared.schema_sql import core_tables_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    execute_all(core_tables_v1(schema))


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
