"""Replicas starting together mirror the registry into one database without tripping over
each other (a race once made one of two cluster replicas fail its start-up)."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from app.api.meta_learners.service import mirror_registry
from app.db.migrate import upgrade
from app.db.models import MetaLearnerRow, MetaLearnerVersionRow
from app.db.session import make_engine, make_session_factory
from app.engine.registry import load_registry
from tests.conftest import REPO


def test_concurrent_mirrors_all_succeed(database_url):
    upgrade(database_url)
    registry = load_registry(REPO / "models")
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    errors: list[BaseException] = []
    gate = threading.Barrier(4)

    def start_up() -> None:
        try:
            gate.wait()
            with factory() as session:
                mirror_registry(session=session, registry=registry)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start_up) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        with factory() as session:
            assert session.scalar(select(func.count()).select_from(MetaLearnerVersionRow)) == len(
                list(registry.all()))
            assert session.scalar(select(func.count()).select_from(MetaLearnerRow)) == len(registry.learners)
    finally:
        engine.dispose()
