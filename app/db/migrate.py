"""Run Alembic migrations programmatically (``metaserve db upgrade`` and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


class SchemaOutOfDate(RuntimeError):
    """The database is not at the revision this code needs."""


def check_schema(engine) -> None:  # noqa: ANN001 - a SQLAlchemy Engine
    """Refuse to serve on a database that is not migrated to this code's head revision
    (it would answer 500 on every write that touches a new column)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        raise SchemaOutOfDate(f"the database is at revision {current or 'none (empty)'}, this server "
                              f"needs {head}: run `metaserve db upgrade` first")
