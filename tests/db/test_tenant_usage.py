"""The per-tenant row counter: claimed with each insert, released with each delete, never
twice for one row."""

from __future__ import annotations

from collections import Counter

from app.db.migrate import upgrade
from app.db.models import TenantUsageRow
from app.db.session import make_engine, make_session_factory
from app.db.tenant_usage import claim_model_row, release_model_rows


def test_claims_count_up_per_tenant_and_roll_back_with_their_transaction(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        assert claim_model_row(session, "alpha") == 1
        assert claim_model_row(session, "alpha") == 2
        assert claim_model_row(session, "beta") == 1
        session.commit()
        assert claim_model_row(session, "alpha") == 3
        session.rollback()  # a refused or failed create gives its claim back
        release_model_rows(session, Counter({"alpha": 2, "beta": 1}))
        session.commit()
        assert {r.tenant: r.models for r in session.query(TenantUsageRow)} == {"alpha": 0, "beta": 0}
    engine.dispose()


def test_deleting_the_same_rows_twice_releases_them_once(database_url, tmp_path):
    from sqlalchemy import select, text

    from app.db.models import AdaptedModelRow
    from app.lifecycle import delete_rows, now_utc
    from tests.db.test_migrations import META_LEARNER

    class NoStates:
        grace_seconds = 0.0

        def release(self, sha256: str) -> bool:
            return False

    upgrade(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        session.execute(text(META_LEARNER), {"version": "1", "w": "a" * 64})
        for ident in ("m1", "m2"):
            claim_model_row(session, "alpha")
            session.add(AdaptedModelRow(id=ident, tenant="alpha", meta_learner="m", meta_learner_version="1",
                                        task_type="regression", created_at=now_utc(), expires_at=now_utc()))
        session.commit()
        assert delete_rows(session=session, states=NoStates(), ids=["m1"]) == 1
        assert delete_rows(session=session, states=NoStates(), ids=["m1"]) == 0  # a second sweeper
        assert session.scalar(select(TenantUsageRow.models).where(TenantUsageRow.tenant == "alpha")) == 1
    engine.dispose()


def _rows(session, tenant: str, n: int, start: int = 0) -> None:
    """Insert ``n`` rows as a replica older than migration 0010 did: without a claim."""
    from app.db.models import AdaptedModelRow
    from app.lifecycle import now_utc

    for i in range(start, start + n):
        session.add(AdaptedModelRow(id=f"{tenant}{i}", tenant=tenant, meta_learner="m", meta_learner_version="1",
                                    task_type="regression", created_at=now_utc(), expires_at=now_utc()))


def _counters(session) -> dict[str, int]:
    return {r.tenant: r.models for r in session.query(TenantUsageRow)}


def test_reconciliation_sets_every_counter_to_the_rows_uncounted_replicas_left(database_url):
    from sqlalchemy import delete, text

    from app.db.models import AdaptedModelRow
    from app.db.tenant_usage import reconcile_usage
    from tests.db.test_migrations import META_LEARNER

    upgrade(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        session.execute(text(META_LEARNER), {"version": "1", "w": "a" * 64})
        _rows(session, "alpha", 3)  # inserted uncounted: no counter at all
        for _ in range(5):
            claim_model_row(session, "beta")
        _rows(session, "beta", 5)
        claim_model_row(session, "gamma")
        _rows(session, "gamma", 1)
        for _ in range(2):
            claim_model_row(session, "delta")
        _rows(session, "delta", 2)
        session.commit()
        # an old replica deleted three of beta's rows and both of delta's without releasing them
        session.execute(delete(AdaptedModelRow).where(AdaptedModelRow.id.in_(["beta0", "beta1", "beta2",
                                                                             "delta0", "delta1"])))
        session.commit()
        assert _counters(session) == {"beta": 5, "gamma": 1, "delta": 2}
    changed = reconcile_usage(factory)
    assert changed == {"alpha": (None, 3), "beta": (5, 2), "delta": (2, 0)}
    with factory() as session:
        assert _counters(session) == {"alpha": 3, "beta": 2, "gamma": 1, "delta": 0}
        assert claim_model_row(session, "alpha") == 4  # counting goes on from the exact count
        session.rollback()
    assert reconcile_usage(factory) == {}  # nothing left to change
    engine.dispose()


def test_reconciliation_waits_for_a_create_in_progress_and_counts_its_row(database_url):
    """A create holds its tenant's counter from its claim to its commit; the reconciliation
    takes the same lock, so it counts the create's row once (neither lost nor doubled)."""
    import threading
    import time

    from sqlalchemy import text

    from app.db.tenant_usage import reconcile_usage
    from tests.db.test_migrations import META_LEARNER

    upgrade(database_url)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        session.execute(text(META_LEARNER), {"version": "1", "w": "a" * 64})
        _rows(session, "alpha", 2)  # uncounted
        claim_model_row(session, "alpha")
        _rows(session, "alpha", 1, start=2)  # counted: the counter exists, 1 for 3 rows
        session.commit()
    creating = factory()
    assert claim_model_row(creating, "alpha") == 2  # the counter's lock is held from here
    _rows(creating, "alpha", 1, start=3)
    creating.flush()
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(changed=reconcile_usage(factory)))
    worker.start()
    time.sleep(0.5)
    assert worker.is_alive(), "the reconciliation must wait for the create's transaction"
    creating.commit()
    creating.close()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert done["changed"] == {"alpha": (2, 4)}
    with factory() as session:
        assert _counters(session) == {"alpha": 4}
    engine.dispose()
