"""The durable queue of adaptation jobs, in the database next to the rows they fill.

A pending adapted model is a row (``queued`` / ``running``) plus an ``adaptation_jobs`` row
holding its request. Every transition is one conditional UPDATE, so that two workers (threads,
processes or replicas) can never both own a job:

* ``enqueue``: in the caller's transaction, with the model's row (both or neither);
* ``claim``: ``queued`` -> ``running``, under a lease held by one worker;
* ``renew``: the worker extends its lease and records progress while it computes;
* ``complete`` / ``fail``: only the lease holder may finish the job (the job row goes);
* ``requeue_expired``: a lease that ran out (its worker died) puts the job back in the queue,
  or fails it once it has been attempted ``max_attempts`` times: never stuck ``running``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.orm import Session

from app.db.models import AdaptationJobRow, AdaptedModelRow
from app.lifecycle import now_utc

QUEUED, RUNNING, READY, FAILED = "queued", "running", "ready", "failed"


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to run a job (read under its claim)."""

    adapted_model_id: str
    tenant: str
    meta_learner: str
    meta_learner_version: str
    weights_sha256: str | None
    request: dict[str, Any]
    attempts: int


CHANNEL = "metaserve_jobs"


def enqueue(session: Session, row: AdaptedModelRow, request: dict[str, Any]) -> None:
    """Add a queued model and its job to the session (the caller commits both at once). On
    PostgreSQL a NOTIFY in the same transaction wakes every listening worker at commit."""
    row.status, row.progress = QUEUED, 0.0
    session.add(row)
    session.add(AdaptationJobRow(adapted_model_id=row.id, request=request, attempts=0,
                                 queued_at=row.created_at))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, :id)"), {"channel": CHANNEL, "id": row.id})


def queued_ids(session: Session, limit: int = 16) -> list[str]:
    """Queued jobs in the order to claim them: round-robin across tenants. A job's turn is its
    rank among its tenant's queued jobs (1 = oldest) plus the tenant's jobs already running;
    among equal turns the tenant with fewer jobs pending (queued or running) goes first, then
    the oldest job. One tenant's 50 jobs then hold back another tenant's one for at most the
    job already running; within a tenant the order stays first-in, first-out."""
    ranked = (
        select(AdaptationJobRow.adapted_model_id, AdaptationJobRow.queued_at, AdaptedModelRow.tenant,
               func.row_number().over(partition_by=AdaptedModelRow.tenant,
                                      order_by=(AdaptationJobRow.queued_at,
                                                AdaptationJobRow.adapted_model_id)).label("rank"))
        .join(AdaptedModelRow, AdaptedModelRow.id == AdaptationJobRow.adapted_model_id)
        .where(AdaptedModelRow.status == QUEUED)
        .subquery())
    per_tenant = (
        select(AdaptedModelRow.tenant,
               func.sum(case((AdaptedModelRow.status == RUNNING, 1), else_=0)).label("running"),
               func.count().label("pending"))
        .where(AdaptedModelRow.status.in_((QUEUED, RUNNING)))
        .group_by(AdaptedModelRow.tenant)
        .subquery())
    return list(session.scalars(
        select(ranked.c.adapted_model_id)
        .join(per_tenant, per_tenant.c.tenant == ranked.c.tenant)
        .order_by(ranked.c.rank + per_tenant.c.running, per_tenant.c.pending, ranked.c.queued_at,
                  ranked.c.adapted_model_id)
        .limit(limit)))


def pending_jobs(session: Session, tenant: str) -> int:
    """A tenant's jobs queued or running."""
    return session.scalar(select(func.count()).select_from(AdaptedModelRow).where(
        AdaptedModelRow.tenant == tenant, AdaptedModelRow.status.in_((QUEUED, RUNNING)))) or 0


def claim(session: Session, adapted_model_id: str, worker: str, lease_seconds: float
          ) -> ClaimedJob | None:
    """Take a queued job for ``worker``; None when another worker took it first. Commits."""
    taken = session.execute(
        update(AdaptedModelRow)
        .where(AdaptedModelRow.id == adapted_model_id, AdaptedModelRow.status == QUEUED)
        .values(status=RUNNING, progress=0.0)).rowcount
    job = session.get(AdaptationJobRow, adapted_model_id) if taken == 1 else None
    if job is None:
        session.rollback()
        return None
    job.worker = worker
    job.attempts += 1
    job.lease_expires_at = now_utc() + timedelta(seconds=lease_seconds)
    row = session.get(AdaptedModelRow, adapted_model_id)
    claimed = ClaimedJob(row.id, row.tenant, row.meta_learner, row.meta_learner_version,
                         row.meta_learner_weights_sha256, job.request, job.attempts)
    session.commit()
    return claimed


def renew(session: Session, leases: dict[str, float], worker: str, lease_seconds: float) -> None:
    """Extend ``worker``'s leases and record each job's progress (fraction done). Commits."""
    until = now_utc() + timedelta(seconds=lease_seconds)
    for ident, progress in leases.items():
        held = session.execute(
            update(AdaptationJobRow)
            .where(AdaptationJobRow.adapted_model_id == ident, AdaptationJobRow.worker == worker)
            .values(lease_expires_at=until)).rowcount
        if held:
            session.execute(update(AdaptedModelRow)
                            .where(AdaptedModelRow.id == ident, AdaptedModelRow.status == RUNNING)
                            .values(progress=round(min(max(progress, 0.0), 1.0), 4)))
    session.commit()


def _finish(session: Session, adapted_model_id: str, worker: str, **values: Any) -> bool:
    """Drop the job if ``worker`` still holds it and set the row's final values. Commits."""
    held = session.execute(
        delete(AdaptationJobRow)
        .where(AdaptationJobRow.adapted_model_id == adapted_model_id,
               AdaptationJobRow.worker == worker)).rowcount
    if held != 1:
        session.rollback()
        return False
    updated = session.execute(
        update(AdaptedModelRow)
        .where(AdaptedModelRow.id == adapted_model_id, AdaptedModelRow.status == RUNNING)
        .values(**values)).rowcount
    if updated != 1:
        session.rollback()
        return False
    session.commit()
    return True


def complete(session: Session, adapted_model_id: str, worker: str, *, artifact_sha256: str,
             artifact_bytes: int, labels: list[Any] | None, adaptation: dict[str, Any]) -> bool:
    """Mark the model ready with its stored state. False when the worker lost the job (it
    was deleted, or its lease ran out and the job went back to the queue): the caller then
    releases the state it stored."""
    return _finish(session, adapted_model_id, worker, status=READY, progress=1.0,
                   artifact_sha256=artifact_sha256, artifact_bytes=artifact_bytes,
                   labels=labels, adaptation=adaptation, error=None)


def fail(session: Session, adapted_model_id: str, worker: str, problem: dict[str, Any]) -> bool:
    """Mark the model failed with a problem body (what GET shows)."""
    return _finish(session, adapted_model_id, worker, status=FAILED, error=problem)


def give_back(session: Session, adapted_model_id: str, worker: str, *, count_attempt: bool) -> bool:
    """Put a job ``worker`` holds back in the queue (shutdown, overload). Commits."""
    job = session.get(AdaptationJobRow, adapted_model_id)
    if job is None or job.worker != worker:
        session.rollback()
        return False
    job.worker, job.lease_expires_at = None, None
    if not count_attempt:
        job.attempts = max(job.attempts - 1, 0)
    session.execute(update(AdaptedModelRow)
                    .where(AdaptedModelRow.id == adapted_model_id, AdaptedModelRow.status == RUNNING)
                    .values(status=QUEUED, progress=0.0))
    session.commit()
    return True


def requeue_expired(session: Session, *, max_attempts: int, problem_for) -> dict[str, int]:
    """Jobs whose worker's lease ran out: back to the queue, or failed after ``max_attempts``
    attempts (``problem_for(id, attempts)`` gives the problem body). Commits."""
    now = now_utc()
    expired = list(session.scalars(select(AdaptationJobRow).where(
        AdaptationJobRow.lease_expires_at.is_not(None), AdaptationJobRow.lease_expires_at < now)))
    counts = {"requeued": 0, "failed": 0}
    for job in expired:
        # conditional on the lease still being the expired one (its worker may have renewed)
        taken = session.execute(
            update(AdaptationJobRow)
            .where(AdaptationJobRow.adapted_model_id == job.adapted_model_id,
                   AdaptationJobRow.lease_expires_at == job.lease_expires_at)
            .values(worker=None, lease_expires_at=None)).rowcount
        if taken != 1:
            continue
        if job.attempts >= max_attempts:
            session.execute(delete(AdaptationJobRow)
                            .where(AdaptationJobRow.adapted_model_id == job.adapted_model_id))
            session.execute(update(AdaptedModelRow)
                            .where(AdaptedModelRow.id == job.adapted_model_id)
                            .values(status=FAILED, error=problem_for(job.adapted_model_id, job.attempts)))
            counts["failed"] += 1
        else:
            session.execute(update(AdaptedModelRow)
                            .where(AdaptedModelRow.id == job.adapted_model_id)
                            .values(status=QUEUED, progress=0.0))
            counts["requeued"] += 1
    session.commit()
    return counts
