"""Run Alembic migrations programmatically (``metaserve db upgrade`` and the tests).

The migrations ship inside this package (``app/db/migrations``: ``env.py`` and ``versions/``) and
are found through it, so an editable checkout, a wheel install and the container all migrate the
same way, from any working directory. ``alembic.ini`` at the source tree's root points the
``alembic`` command-line tool there, for writing new revisions.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config


class MigrationsNotFound(RuntimeError):
    """The installed package lacks its migrations (a broken install)."""


def migrations_dir() -> Path:
    """The package's migrations folder (``env.py``, ``script.py.mako``, ``versions/``)."""
    folder = Path(str(resources.files("app.db") / "migrations"))
    if not (folder / "env.py").is_file() or not (folder / "versions").is_dir():
        raise MigrationsNotFound(f"{folder} has no env.py and versions/: the package was installed without "
                                 "its migrations (reinstall metaserve)")
    return folder


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
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
