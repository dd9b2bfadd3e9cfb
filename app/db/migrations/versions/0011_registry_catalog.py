"""the catalog of meta-learner versions every replica follows: versions, aliases, audit events;
API keys get a scope (tenant, or admin: the catalog's HTTP operations)

``registry_versions`` holds every version ever installed (from the models folder or published),
with its state (active, retired, purged) and the sha256 of each of its files;
``registry_aliases`` points names' aliases (stable, canary...) at versions;
``registry_canaries`` sends a share of each tenant's new adaptations on a bare name to its
``canary`` alias (sticky per tenant); ``registry_events`` is append-only: who did what to which
version, when. Its largest id is the catalog's revision, which replicas poll to converge.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("scope", sa.String(12), nullable=False, server_default="tenant"))
    op.create_table(
        "registry_versions",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.String(40), primary_key=True),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("origin", sa.String(12), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.String(100), nullable=False),
    )
    op.create_table(
        "registry_aliases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("alias", sa.String(40), primary_key=True),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "registry_canaries",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "registry_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("name", sa.String(100), nullable=False, index=True),
        sa.Column("version", sa.String(40), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_events")
    op.drop_table("registry_canaries")
    op.drop_table("registry_aliases")
    op.drop_table("registry_versions")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scope")
