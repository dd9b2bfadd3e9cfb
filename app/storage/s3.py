"""The artifact store on any S3-compatible object store (AWS S3, SeaweedFS, MinIO, Ceph).

Keys: ``<prefix>states/<sha[:2]>/<sha>.safetensors``, content-addressed as on the local
store, so a retried or duplicated PUT writes the same bytes under the same key. A PUT is
atomic (a reader sees the whole object or none), so there are no temporary objects to clean
up. The object's ``LastModified`` is its age for garbage collection: putting content that is
already there copies the object onto itself, which makes it young again (the grace period
protects a state whose row is about to be committed). ``<prefix>STORE_ID`` is this store's
identity, created once with a conditional PUT (``If-None-Match: *``) so that replicas
starting together agree on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from app.storage.artifacts import (
    ArtifactCorrupted,
    ArtifactMissing,
    ArtifactStoreUnavailable,
    sha256_hex,
)

IDENTITY_KEY = "STORE_ID"


def _missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def _precondition_failed(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("412", "PreconditionFailed", "ConditionalRequestConflict")


class S3ArtifactStore:
    """Adapted states as objects in one bucket (created when missing)."""

    def __init__(self, *, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, client: object | None = None) -> None:
        import boto3  # noqa: PLC0415 - only deployments that choose S3 need it
        from botocore.config import Config  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        self._client_error = ClientError
        self._transport_errors = (BotoCoreError,)
        self.bucket, self.prefix = bucket, prefix
        self.s3 = client or boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or "us-east-1",
            config=Config(retries={"max_attempts": 5, "mode": "standard"},
                          connect_timeout=5, read_timeout=30, max_pool_connections=32))
        self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except self._client_error as exc:
            if not _missing(exc):
                raise
            try:
                self.s3.create_bucket(Bucket=self.bucket)
            except self._client_error as again:
                code = again.response.get("Error", {}).get("Code", "")
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def key(self, sha256: str) -> str:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("artifact keys are lowercase sha256 hex digests")
        return f"{self.prefix}states/{sha256[:2]}/{sha256}.safetensors"

    def put(self, data: bytes) -> str:
        try:
            return self._put(data)
        except (self._client_error, *self._transport_errors) as exc:
            raise ArtifactStoreUnavailable(f"S3 PUT failed: {exc}") from exc

    def _put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        key = self.key(sha)
        if self.exists(sha):  # young again, so that garbage collection spares it
            self.s3.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                                Metadata={"touched": datetime.now(UTC).isoformat()},
                                MetadataDirective="REPLACE")
            return sha
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")
        return sha

    def get(self, sha256: str) -> bytes:
        try:
            data = self.s3.get_object(Bucket=self.bucket, Key=self.key(sha256))["Body"].read()
        except self._client_error as exc:
            if _missing(exc):
                raise ArtifactMissing(sha256) from exc
            raise ArtifactStoreUnavailable(f"S3 GET failed: {exc}") from exc
        except self._transport_errors as exc:
            raise ArtifactStoreUnavailable(f"S3 GET failed: {exc}") from exc
        if sha256_hex(data) != sha256:
            raise ArtifactCorrupted(sha256)
        return data

    def delete(self, sha256: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    def _head(self, sha256: str) -> dict | None:
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except self._client_error as exc:
            if _missing(exc):
                return None
            raise

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def age_seconds(self, sha256: str) -> float:
        head = self._head(sha256)
        if head is None:
            raise FileNotFoundError(sha256)
        return (datetime.now(UTC) - head["LastModified"]).total_seconds()

    def keys(self) -> Iterator[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}states/")
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if name.endswith(".safetensors"):
                    yield name[: -len(".safetensors")]

    def identity(self) -> str:
        key = f"{self.prefix}{IDENTITY_KEY}"
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=uuid.uuid4().hex.encode(),
                               IfNoneMatch="*")
        except self._client_error as exc:
            if not _precondition_failed(exc):
                raise
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode().strip()

    def remove_stale_temporaries(self, older_than_seconds: float) -> int:
        return 0  # a PUT is atomic: an object is there whole or not at all
