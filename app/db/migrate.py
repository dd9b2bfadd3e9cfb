"""Run Alembic migrations programmatically (``metaserve db upgrade`` and the tests).

The migrations (``alembic.ini`` and ``alembic/``) live beside ``app/`` in the source tree, not
inside the installed package: they are found in ``METASERVE_MIGRATIONS_DIR`` when set, else
in the source checkout this package runs from (an editable install), else in the current
directory (the container's ``/app``).
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config


class MigrationsNotFound(RuntimeError):
    """No folder with ``alembic.ini`` and ``alembic/env.py`` where migrations are looked for."""


def migrations_root() -> Path:
    """The folder holding ``alembic.ini`` and ``alembic/`` (see the module docstring)."""
    configured = os.environ.get("METASERVE_MIGRATIONS_DIR")
    candidates = [Path(configured)] if configured else [Path(__file__).resolve().parents[2], Path.cwd()]
    for root in candidates:
        if (root / "alembic.ini").is_file() and (root / "alembic" / "env.py").is_file():
            return root
    raise MigrationsNotFound(
        "no alembic.ini with alembic/env.py beside it in " + ", ".join(str(c) for c in candidates)
        + ": set METASERVE_MIGRATIONS_DIR to the folder that holds them (the source tree's root)")


def alembic_config(database_url: str) -> Config:
    root = migrations_root()
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "alembic"))
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
