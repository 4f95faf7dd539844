"""job_runs.image_digest holds the pinned reference a run's image was pulled by

On Docker Swarm with a registry a run records ``<registry>/<name>@sha256:<digest>``, longer
than the 80 characters an image id needed.

Revision ID: 0016_job_image_reference
Revises: 0015_register_fields
Create Date: 2026-12-01 16:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_job_image_reference"
down_revision = "0015_register_fields"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite does not enforce a VARCHAR length (and rebuilding the table would drop its triggers).
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("job_runs", "image_digest", type_=sa.String(length=300), existing_type=sa.String(length=80),
                        existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("job_runs", "image_digest", type_=sa.String(length=80), existing_type=sa.String(length=300),
                        existing_nullable=True)
