"""Small states in the database, large ones in the artifact store.

A state of a few KB (prototypes, heads, sinusoid weights) costs an S3 PUT (~6 ms here) or a
file write with two fsyncs when it could be one row: :class:`DatabaseArtifactStore` keeps
states in ``inline_states`` (content-addressed: key = sha256, checked on every read), and
:class:`TieredArtifactStore` sends each state to it or to the large store by size
(``METASERVE_INLINE_STATE_BYTES``; 0 = everything in the large store). Both answer the same
:class:`~app.storage.artifacts.ArtifactStore` interface, so expiry, orphan collection and
release work unchanged.

:class:`InlineStaging` writes a small state with the caller's own transaction instead: the state
becomes durable exactly when the row that references it commits (one commit, no store write of
its own, and never a row without its state nor a state left behind by a failed commit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import InlineStateRow
from app.db.session import UPSERT_INSERTS
from app.storage.artifacts import ArtifactCorrupted, ArtifactMissing, ArtifactStore, sha256_hex


class DatabaseArtifactStore:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        with self.factory() as session:
            touched = session.execute(update(InlineStateRow).where(InlineStateRow.sha256 == sha)
                                      .values(stored_at=datetime.now(UTC))).rowcount
            if not touched:
                session.add(InlineStateRow(sha256=sha, data=data, stored_at=datetime.now(UTC)))
            try:
                session.commit()
            except IntegrityError:  # the same content, stored concurrently
                session.rollback()
        return sha

    def get(self, sha256: str) -> bytes:
        with self.factory() as session:
            data = session.scalar(select(InlineStateRow.data).where(InlineStateRow.sha256 == sha256))
        if data is None:
            raise ArtifactMissing(sha256)
        data = bytes(data)
        if sha256_hex(data) != sha256:
            raise ArtifactCorrupted(sha256)
        return data

    def delete(self, sha256: str) -> None:
        with self.factory() as session:
            session.execute(delete(InlineStateRow).where(InlineStateRow.sha256 == sha256))
            session.commit()

    def exists(self, sha256: str) -> bool:
        with self.factory() as session:
            return session.scalar(select(InlineStateRow.sha256).where(InlineStateRow.sha256 == sha256)) is not None

    def age_seconds(self, sha256: str) -> float:
        with self.factory() as session:
            stored = session.scalar(select(InlineStateRow.stored_at).where(InlineStateRow.sha256 == sha256))
        if stored is None:
            raise FileNotFoundError(sha256)
        return (datetime.now(UTC) - stored).total_seconds()

    def keys(self) -> Iterator[str]:
        with self.factory() as session:
            shas = list(session.scalars(select(InlineStateRow.sha256)))
        yield from shas

    def identity(self) -> str:
        raise NotImplementedError("the database store is always paired with a large store")

    def remove_stale_temporaries(self, older_than_seconds: float) -> int:
        return 0


_INLINE = InlineStateRow.__table__


def _upsert(insert: Callable[..., Any]) -> Any:
    staged = insert(_INLINE).values({name: bindparam(name, type_=_INLINE.c[name].type)
                                     for name in ("sha256", "data", "stored_at")})
    return staged.on_conflict_do_update(index_elements=[_INLINE.c.sha256],
                                        set_={"stored_at": staged.excluded.stored_at})


# INSERT ... ON CONFLICT (sha256) DO UPDATE, where the database has it: a state stored by a
# concurrent transaction is refreshed (its grace period restarts), never a duplicate-key error.
# Built once, as Core statements: building the statement and the ORM's bulk-insert path per
# adaptation cost about as much as executing it.
UPSERTS = {name: _upsert(insert) for name, insert in UPSERT_INSERTS.items()}


class InlineStaging:
    """Small states added to ``session``'s transaction (content-addressed, as the store's own)."""

    def __init__(self, session: Session, max_bytes: int) -> None:
        self.session, self.max_bytes = session, max_bytes

    def stage(self, sha256: str, data: bytes) -> bool:
        """Add ``data`` to the caller's transaction; False when it is too large to live inline."""
        if len(data) > self.max_bytes:
            return False
        now = datetime.now(UTC)
        upsert = UPSERTS.get(self.session.get_bind().dialect.name)
        if upsert is None:
            self.session.merge(InlineStateRow(sha256=sha256, data=data, stored_at=now))
        else:
            self.session.execute(upsert, {"sha256": sha256, "data": data, "stored_at": now})
        return True


class TieredArtifactStore:
    """States up to ``max_inline_bytes`` in ``inline``, larger ones in ``large``."""

    def __init__(self, inline: DatabaseArtifactStore, large: ArtifactStore, max_inline_bytes: int) -> None:
        self.inline, self.large, self.max_inline_bytes = inline, large, max_inline_bytes

    def _holder(self, sha256: str) -> ArtifactStore | None:
        if self.inline.exists(sha256):
            return self.inline
        return self.large if self.large.exists(sha256) else None

    def put(self, data: bytes) -> str:
        return (self.inline if len(data) <= self.max_inline_bytes else self.large).put(data)

    def staging(self, session: Session) -> InlineStaging:
        """Small states written with ``session``'s transaction (larger ones: ``put``)."""
        return InlineStaging(session, self.max_inline_bytes)

    def get(self, sha256: str) -> bytes:
        try:
            return self.inline.get(sha256)
        except ArtifactMissing:
            return self.large.get(sha256)

    def delete(self, sha256: str) -> None:
        self.inline.delete(sha256)
        self.large.delete(sha256)

    def exists(self, sha256: str) -> bool:
        return self._holder(sha256) is not None

    def age_seconds(self, sha256: str) -> float:
        holder = self._holder(sha256)
        if holder is None:
            raise FileNotFoundError(sha256)
        return holder.age_seconds(sha256)

    def keys(self) -> Iterator[str]:
        yield from self.inline.keys()
        yield from self.large.keys()

    def identity(self) -> str:
        return self.large.identity()

    def remove_stale_temporaries(self, older_than_seconds: float) -> int:
        return self.large.remove_stale_temporaries(older_than_seconds)
