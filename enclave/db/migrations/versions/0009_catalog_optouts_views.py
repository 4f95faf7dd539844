"""catalogue: opt-out registry and materialised grant views

Revision ID: 0009_catalog
Revises: 0008_jobs
Create Date: 2026-11-22 12:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_catalog"
down_revision = "0008_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "opt_outs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identifier", sa.String(length=128), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["added_by_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("identifier"),
    )
    op.create_table(
        "grant_views",
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rows_json", sa.JSON(), nullable=False),
        sa.Column("excluded_rows", sa.BigInteger(), nullable=False),
        sa.Column("materialised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["grant_id"], ["grants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("grant_id"),
    )


def downgrade() -> None:
    op.drop_table("grant_views")
    op.drop_table("opt_outs")
