"""egress: researchers' replies to reviewers' comments

Revision ID: 0010_egress_replies
Revises: 0009_catalog
Create Date: 2026-11-22 12:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_egress_replies"
down_revision = "0009_catalog"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "egress_replies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["egress_requests.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["file_id"], ["egress_files.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_egress_replies_request_id", "egress_replies", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_egress_replies_request_id", table_name="egress_replies")
    op.drop_table("egress_replies")
