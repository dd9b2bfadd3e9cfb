"""The per-tenant row counter (``tenant_usage``) that spares the quota an exact count.

``claim_model_row`` adds one to the tenant's count in the transaction that inserts the row,
and holds the counter's row lock (PostgreSQL) or the database's write lock (SQLite) until
that transaction ends: one tenant's creates run their quota check and insert one at a time.
``release_model_rows`` subtracts, in the transaction that deleted the rows. The count is never
below the tenant's rows, so a count under the quota proves the live models are under it.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.models import TenantUsageRow

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def claim_model_row(session: Session, tenant: str, rows: int = 1) -> int:
    """Count ``rows`` more rows for ``tenant`` (locking its counter until the transaction
    ends); returns the new count, the rows about to be inserted included. Every insert of
    adapted-model rows claims them in its transaction."""
    dialect = session.get_bind().dialect.name
    insert = _INSERTS.get(dialect)
    if insert is None:
        raise RuntimeError(f"tenant_usage needs PostgreSQL or SQLite, not {dialect}")
    statement = insert(TenantUsageRow).values(tenant=tenant, models=rows)
    statement = statement.on_conflict_do_update(
        index_elements=[TenantUsageRow.tenant],
        set_={"models": TenantUsageRow.models + rows},
    ).returning(TenantUsageRow.models)
    return int(session.execute(statement).scalar_one())


def release_model_rows(session: Session, tenants: Counter[str]) -> None:
    """Subtract deleted rows, per tenant, in the deleting transaction (tenants in sorted
    order: two deleting transactions lock counters in the same order)."""
    for tenant in sorted(tenants):
        session.execute(update(TenantUsageRow).where(TenantUsageRow.tenant == tenant)
                        .values(models=TenantUsageRow.models - tenants[tenant]))
