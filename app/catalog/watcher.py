"""Keep a process's registry in step with the catalog: check the catalog's revision every
``METASERVE_REGISTRY_POLL_SECONDS``, and on PostgreSQL also as soon as a change is notified
(LISTEN/NOTIFY; polling remains the fallback); when it moved, build the new registry (loading
and warming up what it adds before it is advertised) and swap it into the engine. A reload that
fails keeps the previous registry serving and is counted (``metaserve_catalog_reload_failures``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.catalog.artifacts import registry_store
from app.catalog.operations import revision, seed_catalog
from app.catalog.snapshot import build_registry
from app.core.config import Settings
from app.core.metrics import Metrics
from app.engine.registry import Registry

log = logging.getLogger("metaserve.catalog")


def cache_dir(settings: Settings) -> Path:
    return settings.data_dir / "registry-cache"


def initial_registry(settings: Settings, factory: sessionmaker[Session], device) -> Registry:
    """Seed the catalog from the models folder, then build the registry from the catalog."""
    with factory() as session:
        seed_catalog(session=session, models_dir=settings.models_dir)
    return build_registry(factory=factory, models_dir=settings.models_dir, store=registry_store(settings),
                          cache_dir=cache_dir(settings), device=device)


class CatalogWatcher:
    def __init__(self, factory: sessionmaker[Session], engine, settings: Settings, metrics: Metrics,
                 mirror: Callable[[Session, Registry], None] | None = None) -> None:
        self._factory, self._engine, self._settings, self._metrics = factory, engine, settings, metrics
        self._mirror = mirror
        self._store = registry_store(settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observe(engine.registry)

    def _observe(self, registry: Registry) -> None:
        self._metrics.catalog_revision.set(registry.revision)
        self._metrics.catalog_refused.set(len(registry.refused))

    def check_once(self) -> list[str]:
        """Reload when the catalog moved; returns the refs added."""
        with self._factory() as session:
            at = revision(session)
        current = self._engine.registry
        if at == current.revision and not current.refused:
            return []  # nothing moved, and nothing refused to retry
        new = build_registry(factory=self._factory, models_dir=self._settings.models_dir, store=self._store,
                             cache_dir=cache_dir(self._settings), device=self._engine.device, previous=current)
        same = {(r.ref, r.weights_sha256) for r in new.all()} == {(r.ref, r.weights_sha256) for r in current.all()}
        if at == current.revision and same and new.refused == current.refused:
            return []  # a retry of refused versions that changed nothing
        if self._mirror is not None and not (same and at == current.revision):
            with self._factory() as session:
                self._mirror(session, new)
        added = self._engine.install_registry(new, warm=self._settings.warm_up)
        self._observe(new)
        log.info("catalog revision %d: serving %d versions", new.revision, len(new.all()),
                 extra={"added": added, "refused": new.refused})
        return added

    def _run(self) -> None:
        listener = Listener(self._settings.resolved_database_url)
        try:
            while not self._stop.is_set():
                listener.wait(self._settings.registry_poll_seconds, self._stop)
                if self._stop.is_set():
                    break
                try:
                    self.check_once()
                except Exception:  # noqa: BLE001 - keep serving the previous registry, try again
                    self._metrics.catalog_reload_failures.inc()
                    log.exception("catalog reload failed; the previous registry keeps serving")
        finally:
            listener.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metaserve-catalog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class Listener:
    """Waits for the catalog's NOTIFY on PostgreSQL (a connection of its own, reconnected when
    lost); elsewhere, or while PostgreSQL cannot be reached, it just sleeps the poll period."""

    def __init__(self, database_url: str) -> None:
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        self._conninfo = (url.set(drivername="postgresql").render_as_string(hide_password=False)
                          if url.get_backend_name() == "postgresql" else None)
        self._conn = None

    def wait(self, seconds: float, stop: threading.Event) -> None:
        if self._conninfo is None:
            stop.wait(seconds)
            return
        try:
            if self._conn is None:
                import psycopg

                from app.catalog.operations import CHANNEL

                self._conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
                self._conn.execute(f"LISTEN {CHANNEL}")
            deadline = time.monotonic() + seconds
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                if any(True for _ in self._conn.notifies(timeout=min(left, 0.5), stop_after=1)):
                    return  # notified
        except Exception as exc:  # noqa: BLE001 - fall back to polling until it reconnects
            log.warning("catalog notifications unavailable (%s); polling", type(exc).__name__)
            self.close()
            stop.wait(seconds)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None
