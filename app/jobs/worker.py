"""``metaserve worker``: a process that only runs adaptation jobs (no HTTP).

It shares the database and the artifact store with the API replicas, claims jobs under
leases like the API's own job threads do, and on SIGTERM hands the job it is running back to
the queue (a SIGKILL leaves a lease that runs out: the job is then run again elsewhere).
"""

from __future__ import annotations

import logging
import signal
import threading

from app.catalog.watcher import CatalogWatcher
from app.core.config import Settings
from app.core.logging import configure_logging
from app.core.metrics import Metrics
from app.core.tracing import configure_tracing
from app.db.migrate import check_schema
from app.db.session import make_engine, make_session_factory
from app.engine.build import build_engine, freeze_loaded_objects, shutdown_engine
from app.jobs.runner import InProcessRunner
from app.lifecycle import bind_store

log = logging.getLogger("metaserve.worker")


def run_worker(settings: Settings, stop: threading.Event | None = None) -> int:
    configure_logging(settings.log_level)
    configure_tracing(settings.otel_enabled, "metaserve-worker")
    stop = stop or threading.Event()
    db = make_engine(settings.resolved_database_url, settings.db_pool_size, settings.db_max_overflow,
                     settings.db_pool_timeout)
    check_schema(db)
    factory = make_session_factory(db)
    metrics = Metrics()
    engine = build_engine(settings, metrics, factory)
    with factory() as session:
        mismatch = bind_store(session=session, states=engine.states)
    if mismatch:
        log.error("not running jobs: %s", mismatch)
        return 2
    if settings.warm_up:
        engine.warm_up()
    freeze_loaded_objects()
    runner = InProcessRunner(factory, engine, threads=max(settings.job_threads, 1),
                             lease_seconds=settings.job_lease_seconds,
                             poll_seconds=settings.job_poll_seconds,
                             max_attempts=settings.job_max_attempts,
                             torch_threads=settings.resolved_job_torch_threads(only_jobs=True))
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    runner.start()
    catalog = CatalogWatcher(factory, engine, settings, metrics)
    catalog.start()
    log.info("worker ready", extra={"worker": runner.worker, "threads": max(settings.job_threads, 1)})
    stop.wait()
    log.info("worker stopping", extra={"worker": runner.worker})
    catalog.stop()
    runner.stop()
    shutdown_engine(engine)
    db.dispose()
    return 0
