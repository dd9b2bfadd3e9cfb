"""Artifact stores for adapted states: one interface (:class:`ArtifactStore`), one class per
kind of store, chosen by ``METASERVE_ARTIFACT_STORE``."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.storage.artifacts import ArtifactStore, LocalArtifactStore


def _local(settings: Settings) -> ArtifactStore:
    return LocalArtifactStore(settings.artifacts_dir)


def _s3(settings: Settings) -> ArtifactStore:
    from app.storage.s3 import S3ArtifactStore  # noqa: PLC0415 - boto3 only when chosen

    return S3ArtifactStore(bucket=settings.s3_bucket, prefix=settings.s3_prefix,
                           endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)


STORES: dict[str, Callable[[Settings], ArtifactStore]] = {"local": _local, "s3": _s3}


def make_store(settings: Settings, factory: sessionmaker[Session] | None = None) -> ArtifactStore:
    """The configured store; with ``METASERVE_INLINE_STATE_BYTES`` > 0 (and a database),
    states up to that size live in the database instead."""
    large = STORES[settings.artifact_store](settings)
    if settings.inline_state_bytes > 0 and factory is not None:
        from app.storage.tiered import DatabaseArtifactStore, TieredArtifactStore  # noqa: PLC0415

        return TieredArtifactStore(DatabaseArtifactStore(factory), large, settings.inline_state_bytes)
    return large
