"""The registry: every meta-learner version under ``models/`` that loads and verifies.

Versions of one meta-learner are served side by side (``models/<name>/<version>/``). A
reference ``"name"`` means the newest version, ``"name@1.0.0"`` pins one. An adapted model is
bound to the exact weights that adapted it (name, version and weights sha256); when those are
no longer installed, :meth:`Registry.exact` refuses with ``meta-learner-version-retired``
rather than run the adapted state on other weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from app.core.problems import MetaLearnerVersionRetired, UnknownMetaLearner
from app.meta.algorithms import MetaLearner
from app.meta.checkpoint import (
    MANIFEST,
    CheckpointError,
    load_step_strategy,
    load_version,
    version_folders,
    version_key,
)
from app.meta.manifest import Manifest
from app.meta.strategy import StepStrategy
from app.meta.task_types import TaskType, task_type_for

log = logging.getLogger("metaserve.registry")


@dataclass
class RegisteredLearner:
    name: str
    learner: MetaLearner
    spec: Manifest
    manifest: dict[str, Any]  # the raw manifest, for documentary sections
    # chooses the inner steps per task when a request does not say (gradient-based only)
    strategy: StepStrategy | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def weights_sha256(self) -> str:
        return self.spec.weights_sha256

    @property
    def task_type(self) -> str:
        return self.spec.task_type

    @property
    def task(self) -> TaskType:
        return task_type_for(self.spec.task_type)

    @property
    def input_spec(self) -> dict[str, Any]:
        return self.spec.input.model_dump(exclude_none=True)

    @property
    def limits(self) -> dict[str, int]:
        return self.spec.limits.model_dump()


@dataclass
class Registry:
    versions: dict[str, dict[str, RegisteredLearner]]  # name -> version -> learner, oldest first
    refused: dict[str, str]

    @cached_property
    def learners(self) -> dict[str, RegisteredLearner]:
        """The newest version of each meta-learner, by name (the registry never changes after
        loading, so this is computed once)."""
        return {name: list(v.values())[-1] for name, v in sorted(self.versions.items())}

    def all(self) -> list[RegisteredLearner]:
        return [reg for name in sorted(self.versions) for reg in self.versions[name].values()]

    def resolve(self, ref: str) -> RegisteredLearner:
        """``name`` (newest version) or ``name@version``; 404 problem when unknown."""
        name, _, version = ref.partition("@")
        versions = self.versions.get(name)
        if not versions:
            known = ", ".join(sorted(self.versions)) or "none"
            raise UnknownMetaLearner(f"no meta-learner named {name!r}; this deployment serves: {known}")
        if not version:
            return self.learners[name]
        if version not in versions:
            raise UnknownMetaLearner(f"{name} has no version {version!r}; installed: "
                                     f"{', '.join(versions)}")
        return versions[version]

    def exact(self, name: str, version: str, weights_sha256: str | None) -> RegisteredLearner:
        """The version that adapted a model, with the very same weights; 410 problem otherwise."""
        reg = self.versions.get(name, {}).get(version)
        if reg is not None and weights_sha256 is not None and reg.weights_sha256 == weights_sha256:
            return reg
        newest = self.versions.get(name)
        hint = (f"adapt again with {name} (newest installed: {list(newest)[-1]})" if newest
                else f"{name} is no longer served")
        raise MetaLearnerVersionRetired(
            f"this adapted model was made by {name}@{version} with weights "
            f"{(weights_sha256 or 'unrecorded')[:12]}, which this deployment no longer serves; "
            f"its state is only valid with those weights, so it will not predict: {hint}")


def _candidate_folders(models_dir: Path) -> list[Path]:
    """``<models_dir>/<name>/<version>/`` folders (and a flat ``<models_dir>/<name>/``)."""
    found = []
    for folder in sorted(p for p in Path(models_dir).iterdir() if p.is_dir()):
        if (folder / MANIFEST).is_file():
            found.append(folder)
        else:
            found.extend(version_folders(folder))
    return found


def load_registry(models_dir: Path, device: torch.device | str = "cpu") -> Registry:
    """Load every version folder onto ``device``; one that fails is refused and logged, the
    rest serve."""
    versions: dict[str, dict[str, RegisteredLearner]] = {}
    refused: dict[str, str] = {}
    if not Path(models_dir).is_dir():
        log.error("models directory %s does not exist", models_dir)
        return Registry(versions, {"*": f"{models_dir} does not exist"})
    for folder in _candidate_folders(models_dir):
        label = str(folder.relative_to(models_dir))
        try:
            learner, spec, raw = load_version(folder)
            strategy = load_step_strategy(folder, spec, learner)
        except (CheckpointError, KeyError, ValueError, OSError) as exc:
            refused[label] = str(exc)
            log.error("refusing meta-learner %s: %s", label, exc)
            continue
        if spec.version in versions.get(spec.name, {}):
            refused[label] = f"{spec.name}@{spec.version} is installed twice"
            log.error("refusing meta-learner %s: %s", label, refused[label])
            continue
        versions.setdefault(spec.name, {})[spec.version] = RegisteredLearner(
            spec.name, learner.to(device), spec, raw, strategy)
        log.info("loaded meta-learner %s@%s (%s)", spec.name, spec.version, spec.algorithm)
    ordered = {name: dict(sorted(v.items(), key=lambda kv: version_key(kv[0])))
               for name, v in versions.items()}
    return Registry(ordered, refused)
