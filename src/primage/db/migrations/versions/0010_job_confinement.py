"""Job confinement: the space and folder the submitting token was restricted to

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 08:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confined_space", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("confined_path", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("confined_path")
        batch_op.drop_column("confined_space")
