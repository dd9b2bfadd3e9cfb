"""The durable job queue: one owner per job, only the owner finishes it, dead workers' jobs
come back (or fail after the last attempt), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from app.db.migrate import upgrade
from app.db.models import AdaptationJobRow, AdaptedModelRow, MetaLearnerRow
from app.db.session import make_engine, make_session_factory
from app.jobs import queue
from app.jobs.adaptation import worker_lost
from app.lifecycle import now_utc


@pytest.fixture
def factory(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    made = make_session_factory(engine)
    with made() as session:
        session.add(MetaLearnerRow(name="m", version="1", algorithm="maml", family="optimization",
                                   task_type="regression", input_spec={}, limits={},
                                   adaptation_defaults={}, metrics={}, weights_sha256="0" * 64,
                                   loaded_at=now_utc()))
        session.commit()
    yield made
    engine.dispose()


def enqueue_one(factory, tenant: str = "t") -> str:
    created = now_utc()
    row = AdaptedModelRow(id=uuid.uuid4().hex, tenant=tenant, meta_learner="m", meta_learner_version="1",
                          meta_learner_weights_sha256="0" * 64, task_type="regression",
                          created_at=created, expires_at=created + timedelta(hours=1))
    with factory() as session:
        queue.enqueue(session, row, {"inputs": [[0.0]], "targets": [0.0], "steps": None})
        session.commit()
    return row.id


def status_of(factory, ident):
    with factory() as session:
        row = session.get(AdaptedModelRow, ident)
        return row.status, row.progress, row.error, session.get(AdaptationJobRow, ident)


def test_enqueue_commits_row_and_job_together(factory):
    ident = enqueue_one(factory)
    status, progress, _, job = status_of(factory, ident)
    assert (status, progress, job.attempts, job.worker) == ("queued", 0.0, 0, None)
    with factory() as session:
        assert queue.queued_ids(session) == [ident]


def test_a_job_has_one_owner_and_only_the_owner_finishes_it(factory):
    ident = enqueue_one(factory)
    with factory() as session:
        first = queue.claim(session, ident, "w1", 30)
    with factory() as session:
        assert queue.claim(session, ident, "w2", 30) is None
        assert queue.queued_ids(session) == []
    assert first.attempts == 1 and first.request["steps"] is None
    with factory() as session:
        assert not queue.complete(session, ident, "w2", artifact_sha256="a" * 64, artifact_bytes=1,
                                  labels=None, adaptation={})
    with factory() as session:
        queue.renew(session, {ident: 0.5}, "w1", 30)
    assert status_of(factory, ident)[:2] == ("running", 0.5)
    with factory() as session:
        assert queue.complete(session, ident, "w1", artifact_sha256="a" * 64, artifact_bytes=1,
                              labels=None, adaptation={"steps": 1})
    status, progress, error, job = status_of(factory, ident)
    assert (status, progress, error, job) == ("ready", 1.0, None, None)


def test_failed_job_keeps_its_problem(factory):
    ident = enqueue_one(factory)
    with factory() as session:
        queue.claim(session, ident, "w1", 30)
    with factory() as session:
        assert queue.fail(session, ident, "w1", {"status": 422, "detail": "bad"})
    status, _, error, job = status_of(factory, ident)
    assert status == "failed" and error["status"] == 422 and job is None


def test_expired_lease_requeues_then_fails_after_the_last_attempt(factory):
    ident = enqueue_one(factory)
    for attempt in (1, 2):
        with factory() as session:
            assert queue.claim(session, ident, f"dead-{attempt}", 0.05).attempts == attempt
        time.sleep(0.1)
        with factory() as session:
            counts = queue.requeue_expired(session, max_attempts=2, problem_for=worker_lost)
        if attempt == 1:
            assert counts == {"requeued": 1, "failed": 0}
            assert status_of(factory, ident)[0] == "queued"
    assert counts == {"requeued": 0, "failed": 1}
    status, _, error, job = status_of(factory, ident)
    assert status == "failed" and job is None
    assert error["status"] == 500 and "2 times" in error["detail"]
    # a dead worker that comes back cannot finish a job it lost
    with factory() as session:
        assert not queue.complete(session, ident, "dead-2", artifact_sha256="a" * 64,
                                  artifact_bytes=1, labels=None, adaptation={})


def test_renewed_lease_is_not_taken_away(factory):
    ident = enqueue_one(factory)
    with factory() as session:
        queue.claim(session, ident, "w1", 0.2)
    with factory() as session:
        queue.renew(session, {ident: 0.1}, "w1", 30)
    time.sleep(0.3)
    with factory() as session:
        assert queue.requeue_expired(session, max_attempts=3, problem_for=worker_lost) == {
            "requeued": 0, "failed": 0}
    assert status_of(factory, ident)[0] == "running"


def test_give_back_without_counting_the_attempt(factory):
    ident = enqueue_one(factory)
    with factory() as session:
        queue.claim(session, ident, "w1", 30)
    with factory() as session:
        assert not queue.give_back(session, ident, "w2", count_attempt=False)
        assert queue.give_back(session, ident, "w1", count_attempt=False)
    status, _, _, job = status_of(factory, ident)
    assert status == "queued" and job.attempts == 0 and job.worker is None


def test_claims_go_round_robin_across_tenants(factory):
    """Tenant a queues five jobs, then b two and c one: the claim order interleaves tenants
    (oldest first within each; among equal turns the smaller backlog first), instead of a's
    five first."""
    a = [enqueue_one(factory, "a") for _ in range(5)]
    time.sleep(0.01)
    b = [enqueue_one(factory, "b") for _ in range(2)]
    c = [enqueue_one(factory, "c")]
    with factory() as session:
        assert queue.queued_ids(session) == [c[0], b[0], a[0], b[1], a[1], a[2], a[3], a[4]]
        assert queue.claim(session, a[0], "w", 30) is not None
    with factory() as session:  # a has a job running: b and c go first, then turns alternate
        assert queue.queued_ids(session)[:4] == [c[0], b[0], b[1], a[1]]
        assert queue.pending_jobs(session, "a") == 5 and queue.pending_jobs(session, "c") == 1
