"""Run one claimed adaptation job: the same engine calls as a synchronous adaptation
(prepare -> adapt -> durable state), then the row is marked ready, or failed with the problem
body a synchronous request would have answered."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import MetaserveError, RetryLater
from app.core.problems import problem_body, problem_of
from app.core.tracing import attach_carrier, detach, tracer
from app.engine.engine import ServingEngine
from app.jobs import queue
from app.lifecycle import release
from app.meta.runtime import release_free_heap

log = logging.getLogger("metaserve.jobs")


def instance(adapted_model_id: str) -> str:
    return f"/v1/adapted-models/{adapted_model_id}"


def worker_lost(adapted_model_id: str, attempts: int) -> dict[str, Any]:
    return problem_body(500, "Adaptation failed", f"the adaptation was started {attempts} times "
                        "and its worker stopped each time; create the model again, or contact the "
                        "operator if this repeats", "adaptation-failed", instance(adapted_model_id))


def job_request(*, inputs: list[Any], targets: list[Any], steps: int | str | None,
                trace: dict[str, str] | None = None) -> dict[str, Any]:
    """What a job keeps of its request: enough to run it in any process, and the trace
    context of the request that queued it (W3C traceparent; empty when tracing is off)."""
    return {"inputs": inputs, "targets": targets, "steps": steps, "trace": trace or {}}


def run_claimed(*, factory: sessionmaker[Session], engine: ServingEngine, job: queue.ClaimedJob,
                worker: str, max_attempts: int, progress: Callable[[float], None],
                torch_threads: int | None = None) -> str:
    """Adapt, store and mark the model ready (or failed), in a span that continues the trace
    of the request that queued the job. Returns the final status, or ``queued`` when the job
    went back to the queue for another attempt."""
    token = attach_carrier(job.request.get("trace"))
    try:
        with tracer.start_as_current_span("adaptation-job", attributes={
                "metaserve.adapted_model_id": job.adapted_model_id,
                "metaserve.meta_learner": f"{job.meta_learner}@{job.meta_learner_version}",
                "metaserve.attempt": job.attempts}) as span:
            status = _run(factory=factory, engine=engine, job=job, worker=worker,
                          max_attempts=max_attempts, progress=progress, torch_threads=torch_threads)
            span.set_attribute("metaserve.status", status)
            return status
    finally:
        detach(token)


def _run(*, factory: sessionmaker[Session], engine: ServingEngine, job: queue.ClaimedJob,
         worker: str, max_attempts: int, progress: Callable[[float], None],
         torch_threads: int | None) -> str:
    ident = job.adapted_model_id
    try:
        reg = engine.bound(job.meta_learner, job.meta_learner_version, job.weights_sha256)
        task = engine.prepare(reg, job.request["inputs"], job.request["targets"], job.request["steps"])
        try:
            made = engine.adapt(task, tenant=job.tenant, progress=progress, torch_threads=torch_threads)
        finally:
            release_free_heap()  # what the job's tensors freed goes back to the system
    except RetryLater:  # the engine is saturated: try again later, not the job's fault
        with factory() as session:
            queue.give_back(session, ident, worker, count_attempt=False)
        return queue.QUEUED
    except MetaserveError as exc:  # what a synchronous request would have answered
        with factory() as session:
            queue.fail(session, ident, worker, problem_of(exc, instance(ident)))
        return queue.FAILED
    except Exception:
        log.exception("adaptation job failed", extra={"adapted_model_id": ident, "attempt": job.attempts})
        with factory() as session:
            if job.attempts < max_attempts:
                queue.give_back(session, ident, worker, count_attempt=True)
                return queue.QUEUED
            queue.fail(session, ident, worker, problem_body(
                500, "Adaptation failed", f"the adaptation failed {job.attempts} times on the "
                "server; the operator's logs hold the cause", "adaptation-failed", instance(ident)))
        return queue.FAILED
    with factory() as session:
        done = queue.complete(session, ident, worker, artifact_sha256=made.artifact_sha256,
                              artifact_bytes=made.artifact_bytes, labels=made.labels,
                              adaptation=made.report.as_dict())
        if not done:  # deleted meanwhile, or the lease ran out and another worker has it
            release(session=session, states=engine.states, sha256=made.artifact_sha256)
            session.commit()
            return "lost"
    return queue.READY
