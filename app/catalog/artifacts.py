"""Where published versions' files live: a content-addressed store apart from the adapted
states' (local ``<data_dir>/registry`` by default, the ``registry/`` prefix of the bucket with
``METASERVE_ARTIFACT_STORE=s3``), and their copy on each machine (``<data_dir>/registry-cache``)
from which they are loaded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from app.atomic_io import atomic_write_bytes
from app.core.config import Settings
from app.meta.checkpoint import file_sha256
from app.storage.artifacts import ArtifactStore, LocalArtifactStore


def registry_store(settings: Settings) -> ArtifactStore:
    if settings.artifact_store == "s3":
        from app.storage.s3 import S3ArtifactStore  # noqa: PLC0415 - boto3 only when chosen

        return S3ArtifactStore(bucket=settings.s3_bucket, prefix=f"{settings.s3_prefix}registry/",
                               endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
    return LocalArtifactStore(settings.data_dir / "registry")


def materialise(store: ArtifactStore, files: dict[str, str], folder: Path) -> Path:
    """``folder`` holding ``files`` (name -> sha256) from the store, each checked; a folder that
    already holds them all is used as is, otherwise it is rebuilt beside and swapped in."""
    if _holds(folder, files):
        return folder
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, sha in files.items():
        atomic_write_bytes(tmp / name, store.get(sha))  # get() checks the sha256
    try:
        if folder.is_dir() and not _holds(folder, files):
            shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    except OSError:
        # another process sharing this data directory materialised it first: use theirs if whole
        shutil.rmtree(tmp, ignore_errors=True)
        if not _holds(folder, files):
            raise
    return folder


def _holds(folder: Path, files: dict[str, str]) -> bool:
    return folder.is_dir() and all(_sha(folder / name) == sha for name, sha in files.items())


def _sha(path: Path) -> str | None:
    return file_sha256(path) if path.is_file() else None
