"""bind adapted models to the meta-learner weights that made them; versions side by side

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Rows from before this revision get the weights sha256 of the version the registry mirror last
recorded, when that is the version they were made with; otherwise it stays NULL and their
predictions answer 410 (meta-learner-version-retired) instead of running on other weights.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta_learner_versions",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.String(40), primary_key=True),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("algorithm", sa.String(40), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("adapted_models") as batch:
        batch.add_column(sa.Column("meta_learner_weights_sha256", sa.String(64), nullable=True))
    op.execute(
        "UPDATE adapted_models SET meta_learner_weights_sha256 = ("
        " SELECT m.weights_sha256 FROM meta_learners m"
        " WHERE m.name = adapted_models.meta_learner AND m.version = adapted_models.meta_learner_version)"
    )


def downgrade() -> None:
    with op.batch_alter_table("adapted_models") as batch:
        batch.drop_column("meta_learner_weights_sha256")
    op.drop_table("meta_learner_versions")
