"""The checks a version folder passes before it is published, in order; the first that fails
is named (``PublishRefused.check``) and nothing is written.

1. ``manifest``: ``manifest.json`` parses into the typed manifest (unknown keys refused);
2. ``weights-checksum``: ``weights.safetensors`` has the manifest's sha256;
3. ``tensors``: the safetensors header and every tensor's name and shape fit the architecture
   (the learner is built from the manifest and loads them strictly), and a step-strategy file,
   when named, matches its sha256 and the learner;
4. ``smoke``: an adaptation and a prediction on a synthetic two-example task give finite outputs.

Only tensors are read (safetensors, ``torch.load`` never); no code is loaded from the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.meta.checkpoint import (
    MANIFEST,
    WEIGHTS,
    CheckpointError,
    file_sha256,
    load_step_strategy,
    load_version,
    read_manifest,
)
from app.meta.manifest import Manifest, ManifestError, parse_manifest


class PublishRefused(Exception):
    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check, self.detail = check, detail


@dataclass
class CheckedVersion:
    folder: Path
    spec: Manifest
    files: dict[str, str]  # file name -> sha256 of what is published

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version


def served_files(folder: Path, spec: Manifest) -> dict[str, str]:
    """The files a replica needs to serve a version (the manifest, the weights, the step-strategy
    model), with their sha256; reports and plots stay behind."""
    names = [MANIFEST, WEIGHTS] + ([spec.step_strategy.file] if spec.step_strategy else [])
    return {name: file_sha256(folder / name) for name in names}


def check_version_folder(folder: Path) -> CheckedVersion:
    folder = Path(folder)
    try:
        raw: dict[str, Any] = read_manifest(folder)
        spec = parse_manifest(raw, str(folder / MANIFEST))
    except (CheckpointError, ManifestError) as exc:
        raise PublishRefused("manifest", str(exc)) from exc
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise PublishRefused("weights-checksum", f"{weights} is missing")
    actual = file_sha256(weights)
    if actual != spec.weights_sha256:
        raise PublishRefused("weights-checksum", f"{WEIGHTS} has sha256 {actual}, the manifest says "
                                                 f"{spec.weights_sha256}")
    try:
        learner, spec, _ = load_version(folder)
        load_step_strategy(folder, spec, learner)
    except CheckpointError as exc:
        raise PublishRefused("tensors", str(exc)) from exc
    smoke(learner, spec)
    return CheckedVersion(folder, spec, served_files(folder, spec))


def smoke(learner, spec: Manifest) -> None:
    """Adapt and predict on a synthetic two-example task of the version's input shape."""
    from app.meta.algorithms import AdaptOptions
    from app.meta.codec_registry import CODECS
    from app.meta.task_types import task_type_for

    codec = CODECS[spec.input.codec_name]
    input_spec = spec.input
    try:
        codec.warm(input_spec)
        x = torch.zeros(2, *codec.model_shape(input_spec))
        targets = task_type_for(spec.task_type).dummy_targets(2)
        state = learner.adapt(x, targets.y, targets.ways, AdaptOptions(steps=1 if learner.has_steps else 0))
        with torch.no_grad():
            out = learner.predict(state, x)
    except Exception as exc:  # noqa: BLE001 - any failure is the version's, reported as such
        raise PublishRefused("smoke", f"adapting and predicting on a synthetic task failed: "
                                      f"{type(exc).__name__}: {exc}") from exc
    if not torch.isfinite(out).all():
        raise PublishRefused("smoke", "predictions on a synthetic task are not finite")
