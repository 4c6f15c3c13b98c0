"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from shared.migrations import execute_all

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade(schema: str) -> None:
    execute_all([])


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
