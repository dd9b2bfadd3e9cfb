"""SQLite writers of one process queue on the write gate, not in SQLite's busy handler.

With SQLite's busy timeout at zero, a second writer fails at once ("database is locked")
unless something makes it wait: the gate does, and lets it in when the first commits.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError

from app.db.session import SqliteWriteGate, make_engine


def _engine(path, gated: bool):
    gate = SqliteWriteGate(timeout=10)
    args = {"check_same_thread": False, "timeout": 0}
    if gated:
        args["factory"] = gate.connection_class()
    engine = create_engine(f"sqlite:///{path}", connect_args=args)

    @event.listens_for(engine, "connect")
    def _wal(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.execute("PRAGMA journal_mode=WAL")

    if gated:
        gate.install(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (who TEXT)"))
    return engine


def _two_writers(engine) -> tuple[list[str], list[BaseException]]:
    order: list[str] = []
    errors: list[BaseException] = []
    first_wrote = threading.Event()

    def first() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES ('first')"))
            first_wrote.set()
            second_thread.join(0.3)  # the second writer tries while this transaction is open
            order.append("first committed")

    def second() -> None:
        first_wrote.wait()
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES ('second')"))
                order.append("second wrote")
        except OperationalError as exc:
            errors.append(exc)

    second_thread = threading.Thread(target=second)
    first_thread = threading.Thread(target=first)
    second_thread.start()  # it waits for the first write; started first so that first() can join it
    first_thread.start()
    first_thread.join()
    second_thread.join()
    return order, errors


def test_without_the_gate_a_concurrent_writer_is_refused(tmp_path):
    order, errors = _two_writers(_engine(tmp_path / "plain.db", gated=False))
    assert errors and "locked" in str(errors[0])


def test_with_the_gate_the_second_writer_waits_for_the_first_commit(tmp_path):
    engine = _engine(tmp_path / "gated.db", gated=True)
    order, errors = _two_writers(engine)
    assert errors == []
    assert order == ["first committed", "second wrote"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT who FROM t ORDER BY rowid")).scalars().all() == ["first", "second"]


def test_a_rolled_back_writer_lets_the_next_one_in(tmp_path):
    engine = _engine(tmp_path / "rollback.db", gated=True)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES ('lost')"))
        raise RuntimeError("abandon the transaction")
    done = threading.Event()

    def writer() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES ('kept')"))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(5)
    assert done.is_set()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT who FROM t")).scalars().all() == ["kept"]


def test_the_service_engine_on_a_sqlite_file_is_gated(tmp_path):
    with make_engine(f"sqlite:///{tmp_path / 'svc.db'}").connect() as conn:
        assert type(conn.connection.dbapi_connection).__name__ == "GatedConnection"
    with make_engine("sqlite://").connect() as conn:  # in memory: one connection, nothing to gate
        assert type(conn.connection.dbapi_connection).__name__ == "Connection"
