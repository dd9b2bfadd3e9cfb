"""asynchronous adaptations: a status on adapted models and a durable job per pending one

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

An adapted model is ``queued``, ``running``, ``ready`` or ``failed``; until it is ready it has
no stored state (``artifact_sha256`` is null). ``adaptation_jobs`` keeps the request of every
model not yet ready, so that a job survives the process that accepted it: a worker claims it
under a lease, and a lease that runs out (the worker died) puts it back in the queue.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("adapted_models") as batch:
        batch.add_column(sa.Column("status", sa.String(12), nullable=False, server_default="ready"))
        batch.add_column(sa.Column("progress", sa.Float(), nullable=True))
        batch.add_column(sa.Column("error", sa.JSON(), nullable=True))
        batch.alter_column("artifact_sha256", existing_type=sa.String(64), nullable=True)
        batch.alter_column("artifact_bytes", existing_type=sa.Integer(), nullable=True)
        batch.alter_column("adaptation", existing_type=sa.JSON(), nullable=True)
    op.create_table(
        "adaptation_jobs",
        sa.Column("adapted_model_id", sa.String(32), primary_key=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("worker", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("adaptation_jobs")
    # models that never became ready have no state to keep
    op.execute("DELETE FROM adapted_models WHERE status <> 'ready'")
    with op.batch_alter_table("adapted_models") as batch:
        batch.alter_column("adaptation", existing_type=sa.JSON(), nullable=False)
        batch.alter_column("artifact_bytes", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("artifact_sha256", existing_type=sa.String(64), nullable=False)
        batch.drop_column("error")
        batch.drop_column("progress")
        batch.drop_column("status")
