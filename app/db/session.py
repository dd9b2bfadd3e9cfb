"""Engine and session factory, created once per application."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

# the dialects with INSERT ... ON CONFLICT, and their insert constructs
UPSERT_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 20, pool_timeout: float = 30.0) -> Engine:
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    if url.startswith("sqlite"):
        if ":memory:" in url or url in ("sqlite://", "sqlite:///"):
            pool = {}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

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
