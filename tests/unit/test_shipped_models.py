"""Shipped checkpoints: manifests are complete, and evaluate reproduces their numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.meta.checkpoint import file_sha256, load_meta_learner
from app.meta.runtime import cache_dir
from metaserve_train.config import images_dir, omniglot_dir
from metaserve_train.reports import evaluate_command

MODELS = Path(__file__).resolve().parents[2] / "models"
VERSIONS = sorted(str(p.relative_to(MODELS)) for p in MODELS.glob("*/*/manifest.json"))
VERSIONS = [str(Path(v).parent) for v in VERSIONS]
NAMES = sorted(p.name for p in MODELS.iterdir() if p.is_dir())
REQUIRED = {"name", "version", "algorithm", "family", "task_type", "input", "adaptation_defaults",
            "limits", "training", "weights_sha256", "evaluation"}


def test_all_families_ship():
    families = {json.loads((MODELS / v / "manifest.json").read_text())["family"] for v in VERSIONS}
    assert families == {"optimization", "metric", "parameter-generating", "memory"}


def test_every_model_folder_holds_versions_named_by_their_manifests():
    assert len(VERSIONS) >= len(NAMES) == 16
    for v in VERSIONS:
        manifest = json.loads((MODELS / v / "manifest.json").read_text())
        assert v == f"{manifest['name']}/{manifest['version']}"


@pytest.mark.parametrize("name", VERSIONS)
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
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    version = sorted(folder.iterdir())[-1]
    recorded = json.loads((version / "manifest.json").read_text())["evaluation"][protocol]
    report = evaluate_command(folder, record=False, omniglot_runs=None, out=tmp_path / "out",
                              **kwargs)
    # without --record the shipped folder is untouched; the reports go elsewhere
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert (tmp_path / "out" / "evaluations" / f"{report['protocol']}.json").is_file()
    assert (tmp_path / "out" / "evaluation.png").is_file()
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


OMNIGLOT = [n for n in NAMES if n.startswith("omniglot-")]


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(not (omniglot_dir() / "images_evaluation.zip").exists(),
                    reason="Omniglot data not present")
@pytest.mark.parametrize("name", OMNIGLOT)
def test_more_shots_never_hurt_the_served_version(name):
    """The version a bare name resolves to: 5-shot accuracy >= 1-shot accuracy on the same
    held-out classes (evaluation alphabets, 5-way, 24 tasks, fixed seed)."""
    from metaserve_train.evaluation import evaluate_tasks
    from metaserve_train.samplers import test_sampler

    learner, _ = load_meta_learner(MODELS / name)
    accuracy = {}
    for shots in (1, 5):
        sampler, _ = test_sampler("omniglot", 5, shots, 5)
        accuracy[shots] = evaluate_tasks(learner, sampler, 24, seed=11, progress=False)["mean"]
    assert accuracy[5] >= accuracy[1], accuracy


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(not (images_dir() / "dtd10").is_dir(), reason="DTD-10 photos not present")
def test_more_photos_never_hurt_photo_protonet_on_paired_tasks(tmp_path):
    """photo-protonet on five DTD-10 classes: 5-shot accuracy >= 1-shot accuracy on the same
    queries, the 1-shot support being the first photo of each 5-shot class (40 tasks)."""
    import torch

    from metaserve_train.tasks.photos import class_pools, embed_folder, scan_photo_folder

    learner, _ = load_meta_learner(MODELS / "photo-protonet")
    keep = {"banded", "blotchy", "braided", "bubbly", "bumpy"}
    others = {p.name for p in (images_dir() / "dtd10").iterdir()} - keep
    folder = scan_photo_folder(images_dir() / "dtd10", skip=others)
    pools = list(class_pools(embed_folder(folder, "efficientnet-lite0", cache_dir())).values())
    gen = torch.Generator().manual_seed(3)
    correct = {1: 0, 5: 0}
    for _ in range(40):
        picks = [pool[torch.randperm(pool.shape[0], generator=gen)[:20]] for pool in pools]
        queries = torch.cat([p[5:] for p in picks])
        truth = torch.arange(5).repeat_interleave(15)
        for shots in (1, 5):
            support = torch.cat([p[:shots] for p in picks])
            state = learner.adapt(support, torch.arange(5).repeat_interleave(shots), 5)
            correct[shots] += int((learner.predict(state, queries).argmax(-1) == truth).sum())
    assert correct[5] >= correct[1], correct
