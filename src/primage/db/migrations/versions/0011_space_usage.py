"""Space usage: bytes used and bytes reserved by uploads in flight, kept by the platform

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 09:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spaces", schema=None) as batch_op:
        # Counted from the disk when the server starts (storage.quota.Quotas.reconcile).
        batch_op.add_column(
            sa.Column("used_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("reserved_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("spaces", schema=None) as batch_op:
        batch_op.drop_column("reserved_bytes")
        batch_op.drop_column("used_bytes")
