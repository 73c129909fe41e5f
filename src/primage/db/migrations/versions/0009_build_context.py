"""Build context: the folder of the repository an image is built from

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 20:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("builds", "build_hooks"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("context", sa.Text(), nullable=False, server_default="."))


def downgrade() -> None:
    for table in ("builds", "build_hooks"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("context")
