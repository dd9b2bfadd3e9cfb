"""Small states in the database, large ones in the artifact store, one interface."""

from __future__ import annotations

import time

import pytest

from app.db.migrate import upgrade
from app.db.models import InlineStateRow
from app.db.session import make_engine, make_session_factory
from app.storage.artifacts import ArtifactCorrupted, ArtifactMissing, LocalArtifactStore, sha256_hex
from app.storage.tiered import DatabaseArtifactStore, TieredArtifactStore


@pytest.fixture
def store(database_url, tmp_path):
    upgrade(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    yield TieredArtifactStore(DatabaseArtifactStore(factory), LocalArtifactStore(tmp_path / "a"), 1024)
    engine.dispose()


def test_small_states_go_to_the_database_large_ones_to_files(store):
    small, large = b"s" * 1000, b"L" * 5000
    s, big = store.put(small), store.put(large)
    assert store.inline.exists(s) and not store.large.exists(s)
    assert store.large.exists(big) and not store.inline.exists(big)
    assert store.get(s) == small and store.get(big) == large
    assert sorted(store.keys()) == sorted([s, big])
    assert store.put(small) == s  # duplicates are the same row
    store.delete(s)
    store.delete(big)
    assert not store.exists(s) and not store.exists(big) and list(store.keys()) == []
    with pytest.raises(ArtifactMissing):
        store.get(s)


def test_inline_states_are_checked_and_age_like_files(store):
    sha = store.put(b"state bytes")
    assert sha == sha256_hex(b"state bytes")
    time.sleep(1.1)
    old = store.age_seconds(sha)
    assert old >= 1.0
    store.put(b"state bytes")  # young again: garbage collection spares it
    assert store.age_seconds(sha) < old
    with store.inline.factory() as session:
        session.get(InlineStateRow, sha).data = b"tampered"
        session.commit()
    with pytest.raises(ArtifactCorrupted):
        store.get(sha)


def test_staged_states_are_durable_only_with_the_callers_commit(store):
    """A small state written by the caller's transaction: there after the commit, gone with a
    rollback; a large one is refused (the caller stores it with ``put``)."""
    small = b"s" * 1000
    sha = sha256_hex(small)
    with store.inline.factory() as session:
        staging = store.staging(session)
        assert staging.stage(sha, small)
        assert not staging.stage(sha256_hex(b"L" * 5000), b"L" * 5000)
        session.rollback()
    assert not store.exists(sha)
    with store.inline.factory() as session:
        assert store.staging(session).stage(sha, small)
        session.commit()
    assert store.get(sha) == small and not store.large.exists(sha)


def test_staging_a_stored_state_refreshes_it(store):
    """The same content staged again (a second model with the same state, or a concurrent one)
    is one row whose age restarts, never a duplicate-key error at commit."""
    small = b"s" * 1000
    sha = store.put(small)
    time.sleep(0.05)
    with store.inline.factory() as session:
        assert store.staging(session).stage(sha, small)
        session.commit()
    assert store.age_seconds(sha) < 0.05
    with store.inline.factory() as session:
        assert session.query(InlineStateRow).count() == 1
