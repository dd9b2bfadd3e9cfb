"""The S3 artifact store against a real S3 server (SeaweedFS): content-addressed puts,
checksums on every read, ages for garbage collection, one identity per bucket prefix."""

from __future__ import annotations

import time

import pytest

from app.storage.artifacts import ArtifactCorrupted, ArtifactMissing, sha256_hex
from app.storage.s3 import S3ArtifactStore


@pytest.fixture
def store(s3_store_settings) -> S3ArtifactStore:
    return S3ArtifactStore(bucket=s3_store_settings["s3_bucket"], prefix=s3_store_settings["s3_prefix"],
                           endpoint_url=s3_store_settings["s3_endpoint_url"])


def test_put_get_delete_and_list(store):
    data = b"state" * 100
    sha = store.put(data)
    assert sha == sha256_hex(data) and store.exists(sha) and store.get(sha) == data
    assert store.put(data) == sha  # a duplicate is the same object
    assert list(store.keys()) == [sha]
    store.delete(sha)
    assert not store.exists(sha) and list(store.keys()) == []
    with pytest.raises(ArtifactMissing):
        store.get(sha)


def test_every_read_checks_the_checksum(store):
    sha = store.put(b"original bytes")
    store.s3.put_object(Bucket=store.bucket, Key=store.key(sha), Body=b"tampered bytes")
    with pytest.raises(ArtifactCorrupted):
        store.get(sha)


def test_putting_existing_content_makes_it_young_again(store):
    sha = store.put(b"shared state")
    time.sleep(1.2)
    old = store.age_seconds(sha)
    assert old >= 1.0
    store.put(b"shared state")
    assert store.age_seconds(sha) < old


def test_identity_is_created_once_and_shared(store, s3_store_settings):
    other = S3ArtifactStore(bucket=store.bucket, prefix=store.prefix,
                            endpoint_url=s3_store_settings["s3_endpoint_url"])
    assert store.identity() == other.identity() == store.identity()
    elsewhere = S3ArtifactStore(bucket=store.bucket, prefix=store.prefix + "other/",
                                endpoint_url=s3_store_settings["s3_endpoint_url"])
    assert elsewhere.identity() != store.identity()


def test_keys_must_be_digests(store):
    with pytest.raises(ValueError):
        store.key("../../etc/passwd")
