"""Training configuration files (TOML) for meta-learners, and where the training and evaluation datasets are."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def datasets_dir() -> Path:
    """``METASERVE_DATASETS_DIR``, default ``./datasets`` (relative to the cwd): the folder holding
    ``omniglot/``, ``text/`` and ``images/``, each of which its own variable may point elsewhere."""
    return Path(os.environ.get("METASERVE_DATASETS_DIR", "datasets"))


def omniglot_dir() -> Path:
    """``METASERVE_OMNIGLOT_DIR``, default ``<datasets dir>/omniglot`` (official layout; zips or folders)."""
    return Path(os.environ.get("METASERVE_OMNIGLOT_DIR", str(datasets_dir() / "omniglot")))


def text_dir() -> Path:
    """``METASERVE_TEXT_DIR``, default ``<datasets dir>/text`` (CLINC150, HWU64)."""
    return Path(os.environ.get("METASERVE_TEXT_DIR", str(datasets_dir() / "text")))


def images_dir() -> Path:
    """``METASERVE_IMAGES_DIR``, default ``<datasets dir>/images``: photo folders named by training
    configurations."""
    return Path(os.environ.get("METASERVE_IMAGES_DIR", str(datasets_dir() / "images")))


@dataclass
class TrainConfig:
    name: str
    algorithm: str
    backbone: str
    task: str  # "sinusoid" | "omniglot" | "text" | "photos"
    task_type: str
    version: str = "1.0.0"
    seed: int = 0
    backbone_args: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    ways: int = 0
    shots: int = 5
    queries: int = 10
    rotations: bool = True
    meta_batch: int = 16
    iterations: int = 1000
    meta_lr: float = 1e-3
    outer_optimizer: str = "adam"
    lr_decay_every: int = 0
    val_every: int = 250
    val_tasks: int = 200
    checkpoint_every: int = 500
    limits: dict[str, int] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    # text tasks: {"encoder": NAME, "max_chars": N, "sources": [[dataset, split], ...],
    # "validation_every": K (every K-th intent, sorted, held out for validation)}
    text: dict[str, Any] = field(default_factory=dict)
    # photo tasks: {"backbone": NAME, "folder": DIR under METASERVE_IMAGES_DIR (one subfolder
    # per class), "test_classes": [...] (never read), "validation_every": K (every K-th photo of
    # each training class held out for validation)}
    photos: dict[str, Any] = field(default_factory=dict)
    # a shipped model folder whose weights start the training (matching names only); its
    # weights' sha256 is recorded in the manifest
    init_from: str = ""

    @property
    def model_spec(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "backbone": self.backbone,
            "backbone_args": self.backbone_args,
            "task_type": self.task_type,
            "hparams": self.hparams,
        }

    @classmethod
    def from_file(cls, path: Path) -> TrainConfig:
        with Path(path).open("rb") as fh:
            raw = tomllib.load(fh)
        train = raw.pop("train", {})
        unknown = set(raw) | set(train)
        known = set(cls.__dataclass_fields__)
        if unknown - known:
            raise ValueError(f"{path}: unknown keys {sorted(unknown - known)}")
        return cls(**raw, **train)
