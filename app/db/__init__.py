"""Persistence: SQLAlchemy models and sessions (schema managed by Alembic)."""
