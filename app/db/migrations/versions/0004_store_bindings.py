"""record which artifact store the database's adapted models live in

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

A server whose data directory holds another store (or a fresh, empty one) than the database
was bound to refuses to serve instead of treating the rows as garbage.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_bindings",
        sa.Column("role", sa.String(40), primary_key=True),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("store_bindings")
