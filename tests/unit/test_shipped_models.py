"""Shipped checkpoints: manifests are complete, and evaluate reproduces their numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.meta.checkpoint import file_sha256, load_meta_learner
from app.meta.config import omniglot_dir
from app.meta.reports import evaluate_command

MODELS = Path(__file__).resolve().parents[2] / "models"
NAMES = sorted(p.name for p in MODELS.iterdir() if (p / "manifest.json").exists())
REQUIRED = {"name", "version", "algorithm", "family", "task_type", "input", "adaptation_defaults",
            "limits", "training", "weights_sha256", "evaluation"}


def test_all_families_ship():
    families = {json.loads((MODELS / n / "manifest.json").read_text())["family"] for n in NAMES}
    assert families == {"optimization", "metric", "parameter-generating"}


@pytest.mark.parametrize("name", NAMES)
def test_manifest_is_complete_and_weights_match(name):
    manifest = json.loads((MODELS / name / "manifest.json").read_text())
    assert REQUIRED <= set(manifest)
    for key in ("command", "seed", "data_checksums", "library_versions", "seconds", "hardware"):
        assert key in manifest["training"]
    assert file_sha256(MODELS / name / "weights.safetensors") == manifest["weights_sha256"]
    assert (MODELS / name / "weights.safetensors").stat().st_size < 5 * 1024 * 1024
    assert manifest["evaluation"], "every shipped model records its evaluation"
    load_meta_learner(MODELS / name)


def reproduce(tmp_path: Path, name: str, protocol: str, **kwargs) -> None:
    """A smaller run of the recorded protocol lands within the two intervals."""
    import shutil

    folder = tmp_path / name
    shutil.copytree(MODELS / name, folder)
    recorded = json.loads((folder / "manifest.json").read_text())["evaluation"][protocol]
    report = evaluate_command(folder, record=False, omniglot_runs=None, **kwargs)
    result = report["result"]
    assert abs(result["mean"] - recorded["mean"]) <= result["ci95"] + recorded["ci95"]


def test_evaluate_reproduces_sinusoid_hypernet(tmp_path):
    reproduce(tmp_path, "sinusoid-hypernet", "5-shot", ways=0, shots=5, tasks=200, queries=100,
              steps=None, seed=7)


def test_evaluate_reproduces_sinusoid_maml(tmp_path):
    reproduce(tmp_path, "sinusoid-maml", "5-shot-10-steps", ways=0, shots=5, tasks=200,
              queries=100, steps=10, seed=7)


@pytest.mark.data
@pytest.mark.skipif(not (omniglot_dir() / "images_evaluation.zip").exists(),
                    reason="Omniglot data not present")
def test_evaluate_reproduces_omniglot_protonet(tmp_path):
    reproduce(tmp_path, "omniglot-protonet", "5-way-1-shot", ways=5, shots=1, tasks=100,
              queries=15, steps=None, seed=7)
