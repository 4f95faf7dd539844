"""projects: what the public register and its HDR UK Data Use Register feed publish

Public benefit, the UK GDPR Article 6 basis and Article 9 condition, the basis under the
common law duty of confidentiality, the data controller, a contact and the funders.

Revision ID: 0015_register_fields
Revises: 0014_egress_canonical
Create Date: 2026-12-01 13:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_register_fields"
down_revision = "0014_egress_canonical"
branch_labels = None
depends_on = None

# Frozen copies of the enums' values at this revision (enclave.enums may grow later).
ARTICLE6 = ("consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests")
ARTICLE9 = ("explicit_consent", "employment", "vital_interests", "not_for_profit_body", "made_public",
            "legal_claims", "substantial_public_interest", "health_or_social_care", "public_health",
            "research_and_statistics")
CONFIDENTIALITY = ("consent", "section_251", "legal_requirement", "not_confidential", "public_interest")


def _enum(name: str, values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=32)


def upgrade() -> None:
    # Plain ADD COLUMN: existing projects get empty text and no stated basis (the register says "not stated").
    op.add_column("projects", sa.Column("public_benefit", sa.Text(), nullable=False, server_default=""))
    op.add_column("projects", sa.Column("gdpr_article6", _enum("gdprarticle6", ARTICLE6), nullable=True))
    op.add_column("projects", sa.Column("gdpr_article9", _enum("gdprarticle9", ARTICLE9), nullable=True))
    op.add_column("projects", sa.Column("confidentiality_basis", _enum("confidentialitybasis", CONFIDENTIALITY),
                                        nullable=True))
    op.add_column("projects", sa.Column("data_controller", sa.String(length=200), nullable=False, server_default=""))
    op.add_column("projects", sa.Column("contact_email", sa.String(length=254), nullable=False, server_default=""))
    op.add_column("projects", sa.Column("funders", sa.String(length=500), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        for column in ("funders", "contact_email", "data_controller", "confidentiality_basis", "gdpr_article9",
                       "gdpr_article6", "public_benefit"):
            batch.drop_column(column)
