"""Start-up reconciliation of rows and artifacts, and the periodic expiry sweep."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AdaptedModelRow, IdempotencyRow
from app.engine.engine import ServingEngine
from app.storage.artifacts import ArtifactStore

log = logging.getLogger("metaserve.maintenance")


def reconcile(*, session: Session, store: ArtifactStore, grace_seconds: float) -> dict[str, int]:
    """Remove artifacts no row references (older than the grace period, so that another
    replica's adaptation in flight keeps its file) and rows whose artifact is gone."""
    referenced = set(session.scalars(select(AdaptedModelRow.artifact_sha256).distinct()))
    orphans = 0
    for sha in list(store.keys()):
        if sha not in referenced and store.age_seconds(sha) >= grace_seconds:
            store.delete(sha)
            orphans += 1
    missing = [sha for sha in referenced if not store.exists(sha)]
    dangling = 0
    if missing:
        ids = list(session.scalars(select(AdaptedModelRow.id).where(
            AdaptedModelRow.artifact_sha256.in_(missing))))
        session.execute(delete(IdempotencyRow).where(IdempotencyRow.adapted_model_id.in_(ids)))
        session.execute(delete(AdaptedModelRow).where(AdaptedModelRow.id.in_(ids)))
        session.commit()
        dangling = len(ids)
        log.error("rows without artifacts removed", extra={"count": dangling})
    temporaries = store.remove_stale_temporaries(grace_seconds)
    report = {"orphan_artifacts": orphans, "rows_without_artifact": dangling,
              "temporaries": temporaries}
    if any(report.values()):
        log.info("reconciled storage", extra=report)
    return report


class ExpirySweeper:
    """A daemon thread that, every ``interval`` seconds, deletes expired adapted models and
    collects artifacts no row references once they are older than the grace period."""

    def __init__(self, factory: sessionmaker[Session], engine: ServingEngine, interval: float) -> None:
        self.factory, self.engine, self.interval = factory, engine, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metaserve-sweeper", daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def _run(self) -> None:
        from app.api.adapted_models.service import sweep_expired

        while not self._stop.wait(self.interval):
            try:
                with self.factory() as session:
                    sweep_expired(session=session, engine=self.engine)
                    reconcile(session=session, store=self.engine.store,
                              grace_seconds=self.engine.artifact_grace_seconds)
            except Exception:  # noqa: BLE001 - keep sweeping after a transient failure
                log.exception("expiry sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
