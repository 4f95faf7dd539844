"""egress: the canonical form of each submitted file (what is shown to reviewers and released)

Revision ID: 0014_egress_canonical
Revises: 0013_totp_step_break_glass
Create Date: 2026-12-01 10:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_egress_canonical"
down_revision = "0013_totp_step_break_glass"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild), so the immutability triggers on the table stay.
    op.add_column("egress_files", sa.Column("canonical_sha256", sa.String(length=64), nullable=True))
    op.add_column("egress_files", sa.Column("canonical_size", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("egress_files", "canonical_size")
    op.drop_column("egress_files", "canonical_sha256")
