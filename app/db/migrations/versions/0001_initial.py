"""initial schema: meta_learners and adapted_models

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta_learners",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("algorithm", sa.String(40), nullable=False),
        sa.Column("family", sa.String(40), nullable=False),
        sa.Column("task_type", sa.String(20), nullable=False),
        sa.Column("input_spec", sa.JSON(), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("adaptation_defaults", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "adapted_models",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("meta_learner", sa.String(100), sa.ForeignKey("meta_learners.name"),
                  nullable=False),
        sa.Column("meta_learner_version", sa.String(40), nullable=False),
        sa.Column("task_type", sa.String(20), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_bytes", sa.Integer(), nullable=False),
        sa.Column("adaptation", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_adapted_models_artifact_sha256", "adapted_models", ["artifact_sha256"])
    op.create_index("ix_adapted_models_expires_at", "adapted_models", ["expires_at"])
    op.create_index("ix_adapted_models_tenant_created", "adapted_models",
                    ["tenant", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("adapted_models")
    op.drop_table("meta_learners")
