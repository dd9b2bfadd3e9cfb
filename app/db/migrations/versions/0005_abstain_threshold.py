"""classification models may abstain (label null) below a confidence threshold

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("adapted_models") as batch:
        batch.add_column(sa.Column("abstain_threshold", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("adapted_models") as batch:
        batch.drop_column("abstain_threshold")
