"""The per-tenant row counter (``tenant_usage``) that spares the quota an exact count.

``claim_model_row`` adds one to the tenant's count in the transaction that inserts the row,
and holds the counter's row lock (PostgreSQL) or the database's write lock (SQLite) until
that transaction ends: one tenant's creates run their quota check and insert one at a time.
``release_model_rows`` subtracts, in the transaction that deleted the rows. The count is never
below the tenant's rows, so a count under the quota proves the live models are under it.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.models import TenantUsageRow

_USAGE = TenantUsageRow.__table__


def _claim_statement(insert):  # noqa: ANN001, ANN202
    """Built once per dialect, on the Core table: the ORM's bulk-insert path and a statement
    rebuilt per call cost ~0.3 ms of CPU more per adaptation on SQLite (0.35 vs 0.06-0.10 ms)."""
    return insert(_USAGE).values(tenant=bindparam("tenant"), models=bindparam("rows")).on_conflict_do_update(
        index_elements=[_USAGE.c.tenant], set_={"models": _USAGE.c.models + bindparam("rows")},
    ).returning(_USAGE.c.models)


_CLAIMS = {"postgresql": _claim_statement(postgresql.insert), "sqlite": _claim_statement(sqlite.insert)}


def claim_model_row(session: Session, tenant: str, rows: int = 1) -> int:
    """Count ``rows`` more rows for ``tenant`` (locking its counter until the transaction
    ends); returns the new count, the rows about to be inserted included. Every insert of
    adapted-model rows claims them in its transaction."""
    dialect = session.get_bind().dialect.name
    statement = _CLAIMS.get(dialect)
    if statement is None:
        raise RuntimeError(f"tenant_usage needs PostgreSQL or SQLite, not {dialect}")
    return int(session.execute(statement, {"tenant": tenant, "rows": rows}).scalar_one())


def release_model_rows(session: Session, tenants: Counter[str]) -> None:
    """Subtract deleted rows, per tenant, in the deleting transaction (tenants in sorted
    order: two deleting transactions lock counters in the same order)."""
    for tenant in sorted(tenants):
        session.execute(update(TenantUsageRow).where(TenantUsageRow.tenant == tenant)
                        .values(models=TenantUsageRow.models - tenants[tenant]))
