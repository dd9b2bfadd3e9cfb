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
