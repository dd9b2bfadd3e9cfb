"""Build a meta-learner from its spec, and save / load a shipped meta-learner folder.

A meta-learner version lives in ``models/<name>/<version>/``: ``manifest.json`` and
``weights.safetensors``; the manifest's ``weights_sha256`` must match the weights file byte
for byte, and the folder's name must be the manifest's version. Several versions of one
meta-learner sit side by side; ``models/<name>`` alone means its newest version.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from app.atomic_io import atomic_write_bytes
from app.meta.algorithms import ALGORITHMS, MetaLearner
from app.meta.backbones import build_backbone
from app.meta.manifest import Manifest, ManifestError, parse_manifest

WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"


class CheckpointError(Exception):
    """A meta-learner folder that cannot be served (missing file, bad checksum, bad keys)."""


def build_learner(spec: dict[str, Any], seed: int = 0) -> MetaLearner:
    """A freshly initialised learner from ``algorithm``, ``backbone``, ``task_type``, ``hparams``."""
    algorithm = spec["algorithm"]
    if algorithm not in ALGORITHMS:
        raise CheckpointError(f"unknown algorithm {algorithm!r}; known: {sorted(ALGORITHMS)}")
    torch.manual_seed(seed)
    model = build_backbone(spec["backbone"], **spec.get("backbone_args", {}))
    return ALGORITHMS[algorithm](model, spec["task_type"], **spec.get("hparams", {}))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def save_weights(folder: Path, learner: MetaLearner) -> str:
    """Write the learner's meta-parameters as safetensors; returns their sha256."""
    data = save({k: v.contiguous() for k, v in learner.state_dict().items()})
    atomic_write_bytes(Path(folder) / WEIGHTS, data)
    return hashlib.sha256(data).hexdigest()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def version_key(version: str) -> tuple:
    """Order versions numerically where they are dotted numbers (``1.10.0`` > ``1.9.2``)."""
    parts = version.split(".")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def version_folders(folder: Path) -> list[Path]:
    """The version folders of ``models/<name>``, oldest first."""
    found = [p for p in Path(folder).iterdir() if p.is_dir() and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: version_key(p.name))


def resolve_version_folder(folder: Path) -> Path:
    """``models/<name>/<version>`` as given, or the newest version under ``models/<name>``."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file() or not folder.is_dir():
        return folder
    versions = version_folders(folder)
    if not versions:
        raise CheckpointError(f"{folder} holds neither {MANIFEST} nor version folders")
    return versions[-1]


def load_version(folder: Path) -> tuple[MetaLearner, Manifest, dict[str, Any]]:
    """Load one meta-learner version: the typed manifest (unknown keys refused), the weights
    checked against the manifest's sha256, and the learner built from them."""
    folder = resolve_version_folder(folder)
    raw = read_manifest(folder)
    try:
        manifest = parse_manifest(raw, str(folder / MANIFEST))
    except ManifestError as exc:
        raise CheckpointError(str(exc)) from exc
    if folder.parent.name == manifest.name and folder.name != manifest.version:
        raise CheckpointError(f"{folder} holds version {manifest.version}; the folder must be "
                              f"named after its version")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    actual = file_sha256(weights)
    if actual != manifest.weights_sha256:
        raise CheckpointError(
            f"{weights} sha256 {actual} does not match the manifest's {manifest.weights_sha256}"
        )
    if manifest.input.encoder:
        from app.meta.text_encoder import EncoderUnavailable, check_encoder

        try:
            check_encoder(manifest.input.encoder, manifest.input.runtime or "torch")
        except EncoderUnavailable as exc:
            raise CheckpointError(str(exc)) from exc
    if manifest.input.backbone:
        from app.meta.image_backbone import BackboneUnavailable, check_backbone

        try:
            check_backbone(manifest.input.backbone)
        except BackboneUnavailable as exc:
            raise CheckpointError(str(exc)) from exc
    spec = manifest.model.model_dump()
    spec["hparams"] = manifest.model.hparams.as_dict()
    learner = build_learner(spec, seed=0)
    try:
        learner.load_state_dict(load_file(str(weights)))
    except ValueError as exc:
        raise CheckpointError(f"{weights}: {exc}") from exc
    return learner, manifest, raw


def load_step_strategy(folder: Path, manifest: Manifest, learner: MetaLearner):
    """The version's step-strategy model (``StepStrategy``), checked against the manifest's
    sha256 and the learner's default steps; None when the version has none."""
    spec = manifest.step_strategy
    if spec is None:
        return None
    from app.meta.strategy import StepStrategy

    path = resolve_version_folder(folder) / spec.file
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    if file_sha256(path) != spec.sha256:
        raise CheckpointError(f"{path} sha256 does not match the manifest's step_strategy.sha256")
    if not learner.has_steps or spec.default != learner.default_steps():
        raise CheckpointError(f"{path}: a step strategy needs a gradient-based learner whose "
                              f"default steps ({learner.default_steps()}) are its default ({spec.default})")
    margin = float("inf") if spec.margin is None else spec.margin
    try:
        return StepStrategy.load(path, spec.candidates, spec.default, margin)
    except (ValueError, OSError) as exc:
        raise CheckpointError(str(exc)) from exc


def load_meta_learner(folder: Path) -> tuple[MetaLearner, dict[str, Any]]:
    """Load a shipped meta-learner after checking its weights' sha256 against the manifest."""
    learner, _, raw = load_version(folder)
    return learner, raw
