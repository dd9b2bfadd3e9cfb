"""Registry look-ups and the mirror of the registry in the database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.api.meta_learners.schemas import MetaLearnerRead
from app.core.problems import UnknownMetaLearner
from app.db.models import MetaLearnerRow
from app.engine.registry import RegisteredLearner, Registry


def get_registered(registry: Registry, name: str) -> RegisteredLearner:
    reg = registry.get(name)
    if reg is None:
        known = ", ".join(sorted(registry.learners)) or "none"
        raise UnknownMetaLearner(f"no meta-learner named {name!r}; this deployment serves: {known}")
    return reg


def describe(reg: RegisteredLearner) -> MetaLearnerRead:
    m = reg.manifest
    return MetaLearnerRead(
        name=reg.name, version=reg.version, algorithm=m["algorithm"], family=m["family"],
        task_type=reg.task_type, input=m["input"], limits=reg.limits,
        adaptation_defaults=m.get("adaptation_defaults", {}), metrics=m.get("evaluation", {}),
    )


def mirror_registry(*, session: Session, registry: Registry) -> None:
    """Upsert one row per loaded meta-learner (rows of unloaded ones stay for old IDs)."""
    now = datetime.now(UTC)
    for reg in registry.learners.values():
        d = describe(reg)
        row = session.get(MetaLearnerRow, reg.name) or MetaLearnerRow(name=reg.name)
        row.version, row.algorithm, row.family, row.task_type = (
            d.version, d.algorithm, d.family, d.task_type)
        row.input_spec = d.input.model_dump()
        row.limits, row.adaptation_defaults, row.metrics = d.limits, d.adaptation_defaults, d.metrics
        row.weights_sha256 = reg.manifest["weights_sha256"]
        row.loaded_at = now
        session.add(row)
    session.commit()
