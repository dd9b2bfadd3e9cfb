"""The adapted states a deployment stores: content-addressed artifacts (checksummed on every read)
behind a bytes-bounded in-process cache. The engine puts and loads through it; lifecycle (release,
expiry, orphan collection, store binding) uses it directly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app.core.errors import ArtifactCorrupt, StateMissing, StoreUnavailable
from app.core.metrics import Metrics
from app.engine.cache import StateCache
from app.engine.types import State
from app.storage.artifacts import (
    ArtifactCorrupted,
    ArtifactMissing,
    ArtifactStore,
    ArtifactStoreUnavailable,
    decode_state,
    encode_state,
    sha256_hex,
)
from app.storage.tiered import InlineStaging, TieredArtifactStore


class StoredStates:
    def __init__(self, store: ArtifactStore, cache: StateCache, metrics: Metrics, grace_seconds: float) -> None:
        self._store, self._cache, self.metrics = store, cache, metrics
        self._grace = grace_seconds

    def load(self, sha256: str) -> State:
        """The state for an artifact: from the cache, else from the store (checksum verified)."""

        def load() -> State:
            try:
                return decode_state(self._store.get(sha256))
            except ArtifactCorrupted as exc:
                self.metrics.corrupt_artifacts.inc()
                raise ArtifactCorrupt(f"the stored state {sha256} does not match its checksum; "
                                      "it will not be served") from exc
            except ArtifactStoreUnavailable as exc:
                raise StoreUnavailable(f"the artifact store did not answer ({exc}); retry shortly",
                                       retry_after=2) from exc
            except ArtifactMissing as exc:
                raise StateMissing(f"the stored state {sha256} is missing from this store; check "
                                   "METASERVE_DATA_DIR") from exc

        state, hit = self._cache.get_or_load(sha256, load)
        self.metrics.cache_lookups.labels("hit" if hit else "miss").inc()
        self._gauge_cache()
        return state

    def staging(self, session: Any) -> InlineStaging | None:
        """Where the store keeps small states in the database: their writes joined to
        ``session``'s transaction (see :meth:`keep`); None otherwise."""
        return self._store.staging(session) if isinstance(self._store, TieredArtifactStore) else None

    def keep(self, state: State, staging: InlineStaging | None = None) -> tuple[str, int]:
        """Store a new state durably (before any row may reference it) and cache it: its sha256
        and its size in bytes. With ``staging``, a small state is written by the caller's
        transaction instead, durable when (and only if) the row that references it commits."""
        artifact = encode_state(state)
        try:
            sha256 = sha256_hex(artifact)
            if staging is None or not staging.stage(sha256, artifact):
                sha256 = self._store.put(artifact)
        except ArtifactStoreUnavailable as exc:
            raise StoreUnavailable(f"the artifact store did not answer ({exc}); nothing was "
                                   "created, retry shortly", retry_after=2) from exc
        self._cache.put(sha256, state)
        self._gauge_cache()
        return sha256, len(artifact)

    def _gauge_cache(self) -> None:
        self.metrics.cache_bytes.set(self._cache.size_bytes)
        self.metrics.cache_entries.set(len(self._cache))

    def release(self, sha256: str) -> bool:
        """Drop a state no row references any more. A file written or re-put within the grace
        period stays (another request may be about to commit a row for the same content); the
        periodic sweep collects it later. Returns whether the file was deleted."""
        self._cache.discard(sha256)
        if self._store.exists(sha256) and self._store.age_seconds(sha256) >= self._grace:
            self._store.delete(sha256)
            return True
        return False

    @property
    def grace_seconds(self) -> float:
        return self._grace

    def state_age_seconds(self, sha256: str) -> float:
        return self._store.age_seconds(sha256)

    def store_identity(self) -> str:
        return self._store.identity()

    def stored_states(self) -> Iterator[str]:
        return self._store.keys()

    def has_state(self, sha256: str) -> bool:
        return self._store.exists(sha256)

    def remove_stale_temporaries(self) -> int:
        return self._store.remove_stale_temporaries(self._grace)
