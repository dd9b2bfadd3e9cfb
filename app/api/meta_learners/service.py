"""Descriptions of registered meta-learners and their mirror in the database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.api.meta_learners.schemas import MetaLearnerRead, VersionSummary
from app.db.models import MetaLearnerRow, MetaLearnerVersionRow
from app.db.session import lock_named
from app.engine.registry import RegisteredLearner, Registry


def describe(reg: RegisteredLearner, registry: Registry) -> MetaLearnerRead:
    """One version, with the list of every installed version of the same meta-learner."""
    spec = reg.spec
    newest = registry.learners.get(reg.name)
    versions = [VersionSummary(version=v.version, weights_sha256=v.weights_sha256, newest=v is newest,
                               state=registry.state(v))
                for v in registry.versions[reg.name].values()]
    return MetaLearnerRead(
        name=reg.name, version=reg.version, ref=reg.ref, weights_sha256=reg.weights_sha256,
        algorithm=spec.algorithm, family=spec.family, task_type=reg.task_type,
        input=reg.input_spec.model_dump(exclude_none=True), limits=reg.limits.model_dump(),
        adaptation_defaults=adaptation_defaults(reg), adds_examples=reg.learner.extends,
        reads_label_names=reg.learner.reads_label_names,
        metrics=spec.evaluation, versions=versions, state=registry.state(reg),
        aliases=dict(sorted(registry.aliases.get(reg.name, {}).items())),
        canary_percent=registry.canary.get(reg.name, 0),
    )


def adaptation_defaults(reg: RegisteredLearner) -> dict:
    """What a request that leaves the options out gets: fixed steps (with the rule that scales
    them with the task's classes where the learner has one), or "auto" (the version's
    step-strategy model) with its candidates and the fallback it never does worse than."""
    defaults = reg.spec.adaptation_defaults.model_dump(exclude_none=True)
    if reg.strategy is not None:
        defaults = {"steps": "auto", "fallback_steps": reg.strategy.default,
                    "step_candidates": reg.strategy.candidates,
                    "auto_cost": "the chosen number of steps (one of step_candidates, often more "
                                 "than fallback_steps) plus two support-set losses to read the task; "
                                 "the first step is shared. Send steps to pay for exactly that many"}
    elif reg.learner.steps_rule is not None:  # steps scale with the task's classes
        defaults["steps_by_classes"] = reg.learner.steps_rule
    return defaults


def mirror_registry(*, session: Session, registry: Registry) -> None:
    """Upsert one row per meta-learner (its newest version) and one per installed version;
    rows of versions no longer installed stay, so old IDs can still be explained. Replicas
    starting together take turns (each reads what the one before it committed)."""
    lock_named(session, "metaserve:registry-mirror")
    now = datetime.now(UTC)
    for reg in registry.all():
        v = session.get(MetaLearnerVersionRow, (reg.name, reg.version)) or MetaLearnerVersionRow(
            name=reg.name, version=reg.version)
        v.weights_sha256, v.algorithm, v.loaded_at = reg.weights_sha256, reg.spec.algorithm, now
        session.add(v)
    for name, reg in registry.learners.items():
        d = describe(reg, registry)
        row = session.get(MetaLearnerRow, name) or MetaLearnerRow(name=name)
        row.version, row.algorithm, row.family, row.task_type = (
            d.version, d.algorithm, d.family, d.task_type)
        row.input_spec = d.input.model_dump()
        row.limits, row.adaptation_defaults, row.metrics = d.limits, d.adaptation_defaults, d.metrics
        row.weights_sha256 = reg.weights_sha256
        row.loaded_at = now
        session.add(row)
    session.commit()
