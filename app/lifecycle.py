"""Lifecycle of adapted models below the API and the engine: the one row-deletion path,
releasing states no row references, the expiry sweep, the binding of the database to its
artifact store, and start-up collection of orphans.

It talks to the engine only through :class:`States` (release / list / check a stored state),
so it imports neither ``app.api`` nor the engine's store or cache.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AdaptationJobRow, AdaptedModelRow, IdempotencyRow, StoreBindingRow
from app.db.tenant_usage import release_model_rows

log = logging.getLogger("metaserve.lifecycle")


class States(Protocol):
    def release(self, sha256: str) -> bool: ...
    def stored_states(self) -> Iterator[str]: ...
    def has_state(self, sha256: str) -> bool: ...
    def remove_stale_temporaries(self) -> int: ...
    @property
    def grace_seconds(self) -> float: ...
    def state_age_seconds(self, sha256: str) -> float: ...
    def store_identity(self) -> str: ...


def now_utc() -> datetime:
    return datetime.now(UTC)


def release(*, session: Session, states: States, sha256: str) -> None:
    """Release a stored state unless a row still references it (states are shared by content)."""
    in_use = session.scalar(select(func.count()).where(AdaptedModelRow.artifact_sha256 == sha256))
    if not in_use:
        states.release(sha256)


def delete_rows(*, session: Session, states: States, ids: Iterable[str]) -> int:
    """Delete adapted models, their idempotency keys and then their unshared states: every
    deletion (client, expiry) goes through here. Commits."""
    ids = list(ids)
    if not ids:
        return 0
    shas = set(session.scalars(select(AdaptedModelRow.artifact_sha256).where(
        AdaptedModelRow.id.in_(ids), AdaptedModelRow.artifact_sha256.is_not(None))))
    session.execute(delete(IdempotencyRow).where(IdempotencyRow.adapted_model_id.in_(ids)))
    # a pending model's job goes with it (a worker running it finds it gone and releases)
    session.execute(delete(AdaptationJobRow).where(AdaptationJobRow.adapted_model_id.in_(ids)))
    tenants = Counter(session.scalars(delete(AdaptedModelRow).where(AdaptedModelRow.id.in_(ids))
                                      .returning(AdaptedModelRow.tenant)))
    release_model_rows(session, tenants)  # only the rows this transaction deleted
    removed = sum(tenants.values())
    session.commit()
    for sha in shas:
        release(session=session, states=states, sha256=sha)
    session.commit()  # end the read transaction: no connection is kept
    return removed


def sweep_expired(*, session: Session, states: States, batch: int = 500) -> int:
    """Delete expired adapted models, in batches."""
    removed = 0
    while True:
        ids = list(session.scalars(select(AdaptedModelRow.id).where(
            AdaptedModelRow.expires_at <= now_utc()).limit(batch)))
        if not ids:
            session.commit()
            return removed
        removed += delete_rows(session=session, states=states, ids=ids)
        log.info("expired adapted models removed", extra={"count": len(ids)})


def bind_store(*, session: Session, states: States) -> str | None:
    """Check that the artifact store is the one this database's adapted models live in.

    The first server to start records its store's identity; every later start must find the
    same one. Returns None when it matches, else a message: that server must not serve, and
    must not collect anything (its store is wrong, not the rows).
    """
    mine = states.store_identity()
    binding = session.get(StoreBindingRow, "artifacts")
    if binding is None:
        session.add(StoreBindingRow(role="artifacts", store_id=mine, bound_at=now_utc()))
        try:
            session.commit()
        except IntegrityError:  # another replica bound it at the same moment
            session.rollback()
            binding = session.get(StoreBindingRow, "artifacts")
        else:
            return None
    expected = binding.store_id
    session.commit()
    if expected == mine:
        return None
    message = (f"the artifact store (METASERVE_ARTIFACT_STORE: METASERVE_DATA_DIR or the S3 bucket "
               f"and prefix) holds store {mine}, but this database's adapted models live in store "
               f"{expected}: refusing to serve and to collect anything; point it at the right one")
    log.error(message)
    return message


def collect_orphans(*, session: Session, states: States) -> dict[str, int]:
    """Remove stored states that no row references, once older than the grace period (another
    replica's adaptation in flight keeps its file), and stale temporary files.

    Rows are never deleted here: a row whose state cannot be found is a sign of a wrong or
    unmounted store, not evidence that the row is garbage (it answers 500 artifact-missing
    and is counted, and a correctly configured replica still serves it).
    """
    referenced = set(session.scalars(select(AdaptedModelRow.artifact_sha256).where(
        AdaptedModelRow.artifact_sha256.is_not(None)).distinct()))
    session.commit()
    orphans = 0
    for sha in list(states.stored_states()):
        if sha not in referenced and states.state_age_seconds(sha) >= states.grace_seconds:
            if states.release(sha):
                orphans += 1
    missing = sum(1 for sha in referenced if not states.has_state(sha))
    report = {"orphan_states": orphans, "rows_without_state": missing,
              "temporaries": states.remove_stale_temporaries()}
    if missing:
        log.error("rows reference states this store does not hold; check METASERVE_DATA_DIR",
                  extra={"count": missing})
    if any(report.values()):
        log.info("reconciled storage", extra=report)
    return report


class ExpirySweeper:
    """A daemon thread that, every ``interval`` seconds, deletes expired adapted models and
    collects states no row references once they are older than the grace period."""

    def __init__(self, factory: sessionmaker[Session], states: States, interval: float) -> None:
        self.factory, self.states, self.interval = factory, states, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metaserve-sweeper", daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.factory() as session:
                    sweep_expired(session=session, states=self.states)
                    collect_orphans(session=session, states=self.states)
            except Exception:  # noqa: BLE001 - keep sweeping after a transient failure
                log.exception("expiry sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
