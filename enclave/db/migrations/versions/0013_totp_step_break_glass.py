"""sign-in and server access: the last accepted one-time code step per person (replays
are refused), and break-glass windows into a researcher's server

Revision ID: 0013_totp_step_break_glass
Revises: 0012_retention_immutability
Create Date: 2026-12-01 10:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_totp_step_break_glass"
down_revision = "0012_retention_immutability"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    op.create_table(
        "break_glass",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_break_glass_actor_id", "break_glass", ["actor_id"])
    op.create_index("ix_break_glass_project_id", "break_glass", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_break_glass_project_id", table_name="break_glass")
    op.drop_index("ix_break_glass_actor_id", table_name="break_glass")
    op.drop_table("break_glass")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("totp_last_step")
