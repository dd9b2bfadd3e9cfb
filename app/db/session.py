"""Engine and session factory, created once per application."""

from __future__ import annotations

import re
import sqlite3
import threading

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


class SqliteWriteGate:
    """One writing transaction at a time per process, queued on a Python lock.

    SQLite has one writer; others wait in its busy handler, which sleeps and retries. Where
    SQLite was built without ``usleep`` (some Python distributions' own builds) each retry
    sleeps a whole second: 32 adaptations finishing together in one micro-batch then took
    seconds to commit (6 vs 28 adaptations/s with batching on vs off, measured on such a
    Python). Writers of this process wait here instead and are let in the moment the previous
    transaction ends; SQLite's busy handler only arbitrates between processes.

    A connection takes the gate at its first write statement and leaves it once its
    transaction has committed or rolled back (or it closes). A thread never waits for a
    gate it holds through another connection (it would wait for itself): SQLite decides then.
    """

    def __init__(self, timeout: float) -> None:
        self._lock = threading.Lock()
        self.timeout = timeout
        self._holder: tuple[int, int] | None = None  # (id of the DBAPI connection, thread id)

    def enter(self, dbapi_conn: object) -> None:
        me = (id(dbapi_conn), threading.get_ident())
        holder = self._holder
        if holder is not None and (holder[0] == me[0] or holder[1] == me[1]):
            return
        if self._lock.acquire(timeout=self.timeout):
            self._holder = me

    def leave(self, dbapi_conn: object) -> None:
        holder = self._holder
        if holder is not None and holder[0] == id(dbapi_conn):
            self._holder = None
            self._lock.release()

    def connection_class(self) -> type[sqlite3.Connection]:
        """sqlite3 connections that leave the gate once their commit or rollback is done
        (SQLAlchemy's commit event comes before the commit)."""
        gate = self

        class GatedConnection(sqlite3.Connection):
            def commit(self) -> None:
                try:
                    super().commit()
                finally:
                    gate.leave(self)

            def rollback(self) -> None:
                try:
                    super().rollback()
                finally:
                    gate.leave(self)

            def close(self) -> None:
                try:
                    super().close()
                finally:
                    gate.leave(self)

        return GatedConnection

    def install(self, engine: Engine) -> None:
        """Enter at a connection's first write (the connections must be ``connection_class``)."""

        @event.listens_for(engine, "before_cursor_execute")
        def _before(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
            if _WRITE.match(statement):
                self.enter(conn.connection.dbapi_connection)


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 20, pool_timeout: float = 30.0) -> Engine:
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    if url.startswith("sqlite"):
        if ":memory:" in url or url in ("sqlite://", "sqlite:///"):
            pool = {}
        connect_args = {"check_same_thread": False, "timeout": 30}
        gate = SqliteWriteGate(timeout=30) if pool else None  # a file: many connections, one writer
        if gate is not None:
            connect_args["factory"] = gate.connection_class()
        engine = create_engine(url, connect_args=connect_args, **pool)
        if gate is not None:
            gate.install(engine)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def lock_named(session: Session, name: str) -> None:
    """Serialise the transactions that take the lock ``name`` until they end: a
    transaction-scoped advisory lock on PostgreSQL; SQLite's single writer lock, taken now
    (before the transaction reads anything) by a write that changes nothing."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:t, 7))"), {"t": name})
    elif dialect == "sqlite":
        session.execute(text("UPDATE store_bindings SET role = role WHERE 0 = 1"))


def lock_tenant(session: Session, tenant: str) -> None:
    """Serialise writers of one tenant until the end of the transaction (quota checks)."""
    lock_named(session, tenant)
