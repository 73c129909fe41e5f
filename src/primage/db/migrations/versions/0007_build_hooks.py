"""Build hooks

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 10:59:34.873653
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "build_hooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("tag", sa.String(length=512), nullable=False),
        sa.Column("dockerfile", sa.Text(), nullable=False),
        sa.Column("test_command", sa.Text(), nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_build_hooks_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_build_hooks")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("build_hooks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_build_hooks_owner_id"), ["owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("build_hooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_build_hooks_owner_id"))

    op.drop_table("build_hooks")
