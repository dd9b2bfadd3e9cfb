"""Tables: the mirrored registry of meta-learners, and adapted models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ANN001, ANN201
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use UTC-aware datetimes")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):  # noqa: ANN001, ANN201
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class MetaLearnerRow(Base):
    """A meta-learner served by this deployment (mirrored from ``models/`` at start-up; the
    columns describe its newest version)."""

    __tablename__ = "meta_learners"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(40))
    algorithm: Mapped[str] = mapped_column(String(40))
    family: Mapped[str] = mapped_column(String(40))
    task_type: Mapped[str] = mapped_column(String(20))
    input_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)
    adaptation_defaults: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StoreBindingRow(Base):
    """Which artifact store this database's adapted models live in (its ``STORE_ID``)."""

    __tablename__ = "store_bindings"

    role: Mapped[str] = mapped_column(String(40), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(64))
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MetaLearnerVersionRow(Base):
    """Every version of a meta-learner this database has seen served, with its weights."""

    __tablename__ = "meta_learner_versions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(40), primary_key=True)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(40))
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AdaptedModelRow(Base):
    """One adapted model; its state lives in the artifact store under ``artifact_sha256``."""

    __tablename__ = "adapted_models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), default="default")
    meta_learner: Mapped[str] = mapped_column(ForeignKey("meta_learners.name"))
    meta_learner_version: Mapped[str] = mapped_column(String(40))
    # the exact weights that adapted this model; predictions refuse (410) without them
    meta_learner_weights_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    task_type: Mapped[str] = mapped_column(String(20))
    labels: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # classification: predictions whose top probability is below this answer label null
    abstain_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    # queued -> running -> ready | failed; only a ready model has a stored state
    status: Mapped[str] = mapped_column(String(12), default="ready", server_default="ready")
    progress: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # problem body
    # adding examples replaces the state and increments this (compare-and-set: no lost update)
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    artifact_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    adaptation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    # keyset listing per tenant in order, and the quota's exact count of live models as an
    # index-only scan (migration 0009)
    __table_args__ = (Index("ix_adapted_models_tenant_created_expires", "tenant", "created_at", "id",
                            "expires_at"),)


class AdaptationJobRow(Base):
    """The durable job of an adapted model that is not ready yet: its request, and which
    worker holds it until when (a lease that runs out puts the job back in the queue)."""

    __tablename__ = "adaptation_jobs"

    adapted_model_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TenantUsageRow(Base):
    """How many adapted-model rows a tenant has, expired ones not yet swept included: an upper
    bound of its live models, kept with the rows (incremented by the insert's transaction,
    decremented by the delete's), so that the quota needs an exact count only near the quota.
    Its update also serialises one tenant's creates until they commit."""

    __tablename__ = "tenant_usage"

    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    models: Mapped[int] = mapped_column(Integer)


class InlineStateRow(Base):
    """A small adapted state stored in the database itself (content-addressed like files)."""

    __tablename__ = "inline_states"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKeyRow(Base):
    """An API key: only the sha256 of its secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # tenant: the /v1 resources of its tenant; admin: also the catalog's operations (/v1/admin)
    scope: Mapped[str] = mapped_column(String(12), default="tenant", server_default="tenant")


MAX_IDEMPOTENCY_KEY = 200  # characters of an Idempotency-Key header, and of its column


class IdempotencyRow(Base):
    """A client's ``Idempotency-Key`` bound to the request it came with and its result."""

    __tablename__ = "idempotency_keys"

    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_IDEMPOTENCY_KEY), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    adapted_model_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RegistryVersionRow(Base):
    """A meta-learner version of the catalog (``origin``: the models folder, or published into
    the registry's artifact store); ``state``: active, retired or purged; ``files``: each
    file's sha256."""

    __tablename__ = "registry_versions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(40), primary_key=True)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    origin: Mapped[str] = mapped_column(String(12))
    state: Mapped[str] = mapped_column(String(12))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_by: Mapped[str] = mapped_column(String(100))


class RegistryAliasRow(Base):
    """``name@alias`` -> a version of ``name``."""

    __tablename__ = "registry_aliases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    alias: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[str] = mapped_column(String(40))
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RegistryCanaryRow(Base):
    """``percent`` of the tenants adapting with the bare ``name`` get its ``canary`` alias."""

    __tablename__ = "registry_canaries"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    percent: Mapped[int] = mapped_column(Integer)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RegistryEventRow(Base):
    """Append-only audit of the catalog; the largest id is its revision."""

    __tablename__ = "registry_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
