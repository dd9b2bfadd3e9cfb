"""The registry: the meta-learner versions this process serves, loaded and verified.

Versions of one meta-learner are served side by side. A reference ``"name"`` means the version
its ``stable`` alias points at, else the newest active version; ``"name@1.0.0"`` pins one and
``"name@canary"`` follows an alias. An adapted model is bound to the exact weights that adapted
it (name, version and weights sha256); when those are no longer served, or the version is
retired, :meth:`Registry.exact` refuses with ``meta-learner-version-retired`` rather than run the
adapted state on other weights. A registry never changes once built: the catalog watcher
(``app.catalog.watcher``) builds a new one and the engine swaps it in.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from app.core.errors import MetaLearnerVersionRetired, UnknownMetaLearner
from app.meta.algorithms import MetaLearner
from app.meta.checkpoint import (
    MANIFEST,
    CheckpointError,
    load_step_strategy,
    load_version,
    version_folders,
    version_key,
)
from app.meta.manifest import InputSpec, Limits, Manifest
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
    def input_spec(self) -> InputSpec:
        return self.spec.input

    @property
    def limits(self) -> Limits:
        return self.spec.limits


DEFAULT_ALIAS = "stable"


@dataclass
class Registry:
    versions: dict[str, dict[str, RegisteredLearner]]  # name -> version -> learner, oldest first
    refused: dict[str, str]
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> alias -> version
    retired: set[tuple[str, str]] = field(default_factory=set)  # (name, version), still described
    revision: int = 0  # the catalog revision this registry was built from
    canary: dict[str, int] = field(default_factory=dict)  # name -> percent of tenants sent to @canary

    @cached_property
    def learners(self) -> dict[str, RegisteredLearner]:
        """What the bare name of each meta-learner resolves to (its ``stable`` alias, else its
        newest active version); names whose versions are all retired are left out."""
        out = {}
        for name, versions in sorted(self.versions.items()):
            pinned = self.aliases.get(name, {}).get(DEFAULT_ALIAS)
            active = [v for v in versions if (name, v) not in self.retired]
            if pinned in active:
                out[name] = versions[pinned]
            elif active:
                out[name] = versions[active[-1]]
        return out

    def in_canary(self, name: str, tenant: str) -> bool:
        percent = self.canary.get(name, 0)
        target = self.aliases.get(name, {}).get("canary")
        if not percent or target is None or (name, target) in self.retired:
            return False
        if target not in self.versions.get(name, {}):
            return False
        bucket = int(hashlib.sha256(f"{name}\0{tenant}".encode()).hexdigest()[:8], 16) % 100
        return bucket < percent

    def alternative(self, name: str) -> str:
        reg = self.learners.get(name)
        return f"adapt again with {reg.ref}" if reg else f"{name} is no longer served"

    def all(self) -> list[RegisteredLearner]:
        return [reg for name in sorted(self.versions) for reg in self.versions[name].values()]

    def state(self, reg: RegisteredLearner) -> str:
        return "retired" if (reg.name, reg.version) in self.retired else "active"

    def resolve(self, ref: str, retired_ok: bool = False, tenant: str | None = None) -> RegisteredLearner:
        """``name``, ``name@version`` or ``name@alias``; 404 problem when unknown, 410 when the
        version is retired (unless ``retired_ok``: to describe it). With ``tenant``, a bare name
        under a canary goes to ``name@canary`` for that share of the tenants (always the same ones)."""
        name, _, version = ref.partition("@")
        if not version and tenant is not None and self.in_canary(name, tenant):
            version = "canary"
        versions = self.versions.get(name)
        if not versions:
            known = ", ".join(sorted(self.learners)) or "none"
            raise UnknownMetaLearner(f"no meta-learner named {name!r}; this deployment serves: {known}")
        if not version:
            if name not in self.learners:
                raise MetaLearnerVersionRetired(f"every version of {name} is retired")
            return self.learners[name]
        version = self.aliases.get(name, {}).get(version, version)
        if version not in versions:
            aliases = sorted(self.aliases.get(name, {}))
            also = f"; aliases: {', '.join(aliases)}" if aliases else ""
            raise UnknownMetaLearner(f"{name} has no version or alias {ref.partition('@')[2]!r}; installed: "
                                     f"{', '.join(versions)}{also}")
        if (name, version) in self.retired and not retired_ok:
            raise MetaLearnerVersionRetired(f"{name}@{version} is retired: {self.alternative(name)}")
        return versions[version]

    def exact(self, name: str, version: str, weights_sha256: str | None) -> RegisteredLearner:
        """The version that adapted a model, with the very same weights; 410 problem otherwise."""
        reg = self.versions.get(name, {}).get(version)
        if reg is not None and (name, version) in self.retired:
            raise MetaLearnerVersionRetired(
                f"this adapted model was made by {name}@{version}, which is retired: {self.alternative(name)}")
        if reg is not None and weights_sha256 is not None and reg.weights_sha256 == weights_sha256:
            return reg
        newest = self.learners.get(name)
        hint = (f"adapt again with {name} (now {newest.ref})" if newest else f"{name} is no longer served")
        raise MetaLearnerVersionRetired(
            f"this adapted model was made by {name}@{version} with weights "
            f"{(weights_sha256 or 'unrecorded')[:12]}, which this deployment no longer serves; "
            f"its state is only valid with those weights, so it will not predict: {hint}")


def candidate_folders(models_dir: Path) -> list[Path]:
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
    for folder in candidate_folders(models_dir):
        label = str(folder.relative_to(models_dir))
        try:
            reg = load_registered(folder, device)
        except LoadRefused as exc:
            refused[label] = str(exc)
            log.error("refusing meta-learner %s: %s", label, exc)
            continue
        if reg.version in versions.get(reg.name, {}):
            refused[label] = f"{reg.ref} is installed twice"
            log.error("refusing meta-learner %s: %s", label, refused[label])
            continue
        versions.setdefault(reg.name, {})[reg.version] = reg
    return Registry(ordered_versions(versions), refused)


class LoadRefused(Exception):
    """A version folder that does not load; the message says why."""


def load_registered(folder: Path, device: torch.device | str = "cpu") -> RegisteredLearner:
    """One version folder, verified and loaded onto ``device``."""
    try:
        learner, spec, raw = load_version(folder)
        strategy = load_step_strategy(folder, spec, learner)
    except (CheckpointError, KeyError, ValueError, OSError) as exc:
        raise LoadRefused(str(exc)) from exc
    log.info("loaded meta-learner %s@%s (%s)", spec.name, spec.version, spec.algorithm)
    return RegisteredLearner(spec.name, learner.to(device), spec, raw, strategy)


def ordered_versions(versions: dict[str, dict[str, RegisteredLearner]]) -> dict[str, dict[str, RegisteredLearner]]:
    """Names sorted, each one's versions oldest first."""
    return {name: dict(sorted(v.items(), key=lambda kv: version_key(kv[0])))
            for name, v in sorted(versions.items())}
