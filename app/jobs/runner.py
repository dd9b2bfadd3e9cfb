"""Job runners: what takes queued adaptation jobs and runs them.

:class:`JobRunner` is the one interface the API and the application need (``start``,
``notify`` after a commit that enqueued a job, ``stop``). :class:`InProcessRunner` runs jobs
in threads of the serving process itself (the single-process default, on SQLite or
PostgreSQL): it claims jobs from the database, so any process sharing the database may run
any job, and a process that dies leaves leases that run out and put its jobs back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from app.engine.engine import ServingEngine
from app.jobs import queue
from app.jobs.adaptation import run_claimed, worker_lost

log = logging.getLogger("metaserve.jobs")


class JobRunner(Protocol):
    def start(self) -> None: ...
    def notify(self) -> None: ...
    def stop(self) -> None: ...


def worker_name() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class InProcessRunner:
    """``threads`` job threads, and one thread that renews their leases, records progress
    and puts back the jobs of workers whose leases ran out."""

    def __init__(self, factory: sessionmaker[Session], engine: ServingEngine, *, threads: int = 1,
                 lease_seconds: float = 30.0, poll_seconds: float = 1.0, max_attempts: int = 3,
                 torch_threads: int | None = None) -> None:
        """``torch_threads``: each job's intra-op threads (default: the engine's pool's)."""
        self.factory, self.engine, self.torch_threads = factory, engine, torch_threads
        self.lease, self.poll, self.max_attempts = lease_seconds, poll_seconds, max_attempts
        self.worker = worker_name()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._progress: dict[str, float] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"metaserve-job-{i}", daemon=True)
                         for i in range(threads)]
        self._keeper = threading.Thread(target=self._keep, name="metaserve-job-leases", daemon=True)
        self._listener = threading.Thread(target=self._listen, name="metaserve-job-listen", daemon=True)
        self._started = False

    def start(self) -> None:
        for thread in [*self._threads, self._keeper]:
            thread.start()
        if self._threads and self._postgres_url() is not None:
            self._listener.start()
        self._started = True

    def notify(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop taking jobs; a job still running after a short wait goes back to the queue
        (without counting the attempt) for the next process to take."""
        self._stop.set()
        self._wake.set()
        if not self._started:
            return
        for thread in self._threads:
            thread.join(timeout=5)
        # the lease keeper and the listener notice the stop within one poll; waiting for them
        # means no thread of a stopped runner outlives it (or keeps its engine alive)
        for thread in (self._keeper, self._listener):
            if thread.is_alive():
                thread.join(timeout=self.poll + 5)
        with self._lock:
            running = list(self._progress)
        for ident in running:
            try:
                with self.factory() as session:
                    queue.give_back(session, ident, self.worker, count_attempt=False)
            except Exception:  # noqa: BLE001 - the lease runs out instead
                log.exception("could not hand a job back at shutdown")

    def in_flight(self) -> int:
        with self._lock:
            return len(self._progress)

    # ----- threads ---------------------------------------------------------------------------
    def _next(self) -> queue.ClaimedJob | None:
        with self.factory() as session:
            for ident in queue.queued_ids(session):
                session.commit()
                job = queue.claim(session, ident, self.worker, self.lease)
                if job is not None:
                    return job
            session.commit()
        return None

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._next()
            except Exception:  # noqa: BLE001 - a database hiccup: try again later
                log.exception("could not claim a job")
                job = None
            if job is None:
                self._wake.wait(self.poll)
                self._wake.clear()
                continue
            self._run(job)

    def _run(self, job: queue.ClaimedJob) -> None:
        ident = job.adapted_model_id
        with self._lock:
            self._progress[ident] = 0.0

        def progress(fraction: float) -> None:
            with self._lock:
                self._progress[ident] = fraction

        try:
            status = run_claimed(factory=self.factory, engine=self.engine, job=job,
                                 worker=self.worker, max_attempts=self.max_attempts, progress=progress,
                                 torch_threads=self.torch_threads)
            log.info("adaptation job finished", extra={"adapted_model_id": ident, "status": status})
        except Exception:  # noqa: BLE001 - the lease runs out and the job is retried
            log.exception("adaptation job crashed", extra={"adapted_model_id": ident})
        finally:
            with self._lock:
                self._progress.pop(ident, None)

    def _postgres_url(self) -> str | None:
        url = self.factory.kw["bind"].url
        if url.get_backend_name() != "postgresql":
            return None
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _listen(self) -> None:
        """PostgreSQL: LISTEN for jobs committed by any process and wake a job thread at
        once (polling stays as the fallback, e.g. while the connection is re-established)."""
        import psycopg  # noqa: PLC0415 - PostgreSQL deployments only

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._postgres_url(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {queue.CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=self.poll, stop_after=1):
                            self._wake.set()
            except Exception:  # noqa: BLE001 - reconnect after a database restart
                log.warning("job notification listener reconnecting", exc_info=True)
                self._stop.wait(self.poll)

    def _keep(self) -> None:
        interval = max(self.lease / 3, 0.05)
        while not self._stop.wait(min(interval, self.poll)):
            try:
                with self._lock:
                    leases = dict(self._progress)
                with self.factory() as session:
                    if leases:
                        queue.renew(session, leases, self.worker, self.lease)
                    counts = queue.requeue_expired(session, max_attempts=self.max_attempts,
                                                   problem_for=worker_lost)
                if counts["requeued"]:
                    self._wake.set()
                if any(counts.values()):
                    log.warning("jobs of stopped workers reclaimed", extra=counts)
            except Exception:  # noqa: BLE001 - keep renewing after a transient failure
                log.exception("job lease upkeep failed")
