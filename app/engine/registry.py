"""The registry: every meta-learner folder under ``models/`` that loads and verifies."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.meta.algorithms import MetaLearner
from app.meta.checkpoint import CheckpointError, load_meta_learner

log = logging.getLogger("metaserve.registry")

DEFAULT_LIMITS = {"max_ways": 50, "max_shots": 20, "max_support": 500, "max_queries": 256,
                  "max_steps": 50}


@dataclass
class RegisteredLearner:
    name: str
    learner: MetaLearner
    manifest: dict[str, Any]
    limits: dict[str, int] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def task_type(self) -> str:
        return self.learner.task_type

    @property
    def input_spec(self) -> dict[str, Any]:
        return self.manifest["input"]


@dataclass
class Registry:
    learners: dict[str, RegisteredLearner]
    refused: dict[str, str]

    def get(self, name: str) -> RegisteredLearner | None:
        return self.learners.get(name)


def load_registry(models_dir: Path) -> Registry:
    """Load every ``<models_dir>/<name>/``; a folder that fails is refused and logged."""
    learners: dict[str, RegisteredLearner] = {}
    refused: dict[str, str] = {}
    if not Path(models_dir).is_dir():
        log.error("models directory %s does not exist", models_dir)
        return Registry(learners, {"*": f"{models_dir} does not exist"})
    for folder in sorted(p for p in Path(models_dir).iterdir() if p.is_dir()):
        try:
            learner, manifest = load_meta_learner(folder)
        except (CheckpointError, KeyError, ValueError, OSError) as exc:
            refused[folder.name] = str(exc)
            log.error("refusing meta-learner %s: %s", folder.name, exc)
            continue
        limits = {**DEFAULT_LIMITS, **manifest.get("limits", {})}
        learners[manifest["name"]] = RegisteredLearner(manifest["name"], learner, manifest, limits)
        log.info("loaded meta-learner %s (%s)", manifest["name"], manifest["algorithm"])
    return Registry(learners, refused)
