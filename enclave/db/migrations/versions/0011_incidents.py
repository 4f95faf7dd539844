"""incidents: what the egress meter reports, and accounts disabled by repeated incidents

Revision ID: 0011_incidents
Revises: 0010_egress_replies
Create Date: 2026-12-01 10:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_incidents"
down_revision = "0010_egress_replies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Enum("egress_volume", "revoked_view_copy", name="incidentkind",
                                  native_enum=False, length=32), nullable=False),
        sa.Column("status", sa.Enum("open", "cleared", name="incidentstatus", native_enum=False, length=32),
                  nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("server", sa.String(length=64), nullable=False),
        sa.Column("suspends", sa.Boolean(), nullable=False),
        sa.Column("details_json", sa.JSON(), nullable=False),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by_id", sa.Integer(), nullable=True),
        sa.Column("clear_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.ForeignKeyConstraint(["cleared_by_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_index("ix_incidents_user_id", "incidents", ["user_id"])
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("disabled_reason")
        batch_op.drop_column("disabled_at")
    op.drop_index("ix_incidents_user_id", table_name="incidents")
    op.drop_index("ix_incidents_status", table_name="incidents")
    op.drop_table("incidents")
