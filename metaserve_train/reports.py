"""The ``train`` and ``evaluate`` commands: run, then write JSON + PNG reports."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from app.meta.checkpoint import load_meta_learner, read_manifest, resolve_version_folder, write_json
from metaserve_train.config import TrainConfig
from metaserve_train.evaluation import evaluate_lake_runs, evaluate_tasks
from metaserve_train.plots import results_table
from metaserve_train.samplers import test_sampler
from metaserve_train.tasks.omniglot import load_lake_runs, sha256_of
from metaserve_train.training import train


def command_line() -> str:
    return "metaserve " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def train_command(
    config: Path, out: Path | None, device: str, max_minutes: float, progress: bool = True
) -> dict:
    cfg = TrainConfig.from_file(config)
    out_dir = out or Path("models") / cfg.name / cfg.version
    return train(
        cfg, out_dir, device=device, max_minutes=max_minutes, command=command_line(),
        progress=progress,
    )


def protocol_name(task_type: str, ways: int, shots: int, steps: int | None) -> str:
    base = f"{ways}-way-{shots}-shot" if task_type == "classification" else f"{shots}-shot"
    return base + (f"-{steps}-steps" if steps is not None else "")


def evaluate_text_protocol(learner, manifest: dict, dataset: str, shots: int, seeds: int):
    """Cross-dataset intent classification: the dataset's fixed K-shot support, and K-shot
    draws from its full training split over ``seeds`` seeds (mean ± std), on its test split."""
    from statistics import mean, stdev

    from app.meta.runtime import cache_dir
    from metaserve_train.config import text_dir
    from metaserve_train.evaluation import evaluate_text_support
    from metaserve_train.tasks.text import (
        FIXED_SUPPORTS,
        FULL_TRAIN,
        TEST_SPLITS,
        draw_support,
        embed,
        embed_label_names,
    )
    from metaserve_train.tasks.text import load_split as load_text

    if manifest["input"].get("codec") == "text-tokens":
        raise SystemExit("this learner fine-tunes the encoder per task on token ids: measure it with "
                         "scripts/text_encoder_finetune.py --model FOLDER --split test")
    encoder, runtime = manifest["input"]["encoder"], manifest["input"].get("runtime") or "torch"

    def load(pair):
        return embed(load_text(text_dir(), *pair), encoder, cache_dir(), runtime)

    def embed_labels(labels: list[str]):
        return embed_label_names(labels, encoder, runtime)

    test = load(TEST_SPLITS[dataset])
    fixed = evaluate_text_support(learner, load(FIXED_SUPPORTS[(dataset, shots)]), test, embed_labels)
    full = load(FULL_TRAIN[dataset])
    draws = [evaluate_text_support(learner, draw_support(full, shots, torch.Generator().manual_seed(s)),
                                   test, embed_labels)["accuracy"] for s in range(seeds)]
    result = {"fixed_support": fixed, "random_supports": {
        "accuracies": draws, "mean": mean(draws), "std": stdev(draws) if len(draws) > 1 else 0.0}}
    protocol = f"{dataset}-{shots}-shot"
    data = {test.name: test.sha256, full.name: full.sha256}
    row = {"protocol": protocol, "metric": "accuracy", "mean": fixed["accuracy"],
           "random_mean": result["random_supports"]["mean"], "random_std": result["random_supports"]["std"],
           "items": fixed["test"]}
    return result, protocol, data, row


def evaluate_photo_protocol(learner, manifest: dict, photos: Path, classes: list[str] | None,
                            ways: int, shots: int, queries: int, tasks: int, seed: int):
    """N-way K-shot episodes over a photo folder (one subfolder per class; ``classes`` only,
    when given): mean accuracy, 95% CI and the calibration error over ``tasks`` tasks."""
    from app.meta.runtime import cache_dir
    from metaserve_train.evaluation import evaluate_with_calibration
    from metaserve_train.tasks.episodes import EmbeddingEpisodes
    from metaserve_train.tasks.photos import class_pools, embed_folder, scan_photo_folder

    folder = scan_photo_folder(photos)
    if classes:
        missing = sorted(set(classes) - set(folder.classes))
        if missing:
            raise ValueError(f"{photos}: no photos of the classes {missing}")
    embed_folder(folder, manifest["input"]["backbone"], cache_dir(), progress=True)
    pools = class_pools(folder, classes)
    too_few = {label: int(p.shape[0]) for label, p in pools.items() if p.shape[0] < shots + queries}
    try:
        sampler = EmbeddingEpisodes(list(pools.values()), ways, shots, queries, what="classes")
    except ValueError as exc:
        raise SystemExit(f"{photos}: {exc} (shots + queries photos per class, --ways classes; "
                         f"photos per class: {dict(sorted(folder.counts().items()))})") from None
    result = evaluate_with_calibration(learner, sampler, tasks, seed)
    result.update(classes=sorted(pools), skipped_classes=too_few,
                  unreadable=[f"{path}: {why}" for path, why in folder.unreadable])
    subset = f"-{'+'.join(sorted(pools))}" if classes else ""
    protocol = f"{Path(photos).name}{subset}-{ways}-way-{shots}-shot"
    row = {"protocol": protocol, "metric": "accuracy", "mean": result["mean"], "ci95": result["ci95"],
           "ece": result["ece"], "tasks": tasks}
    return result, protocol, {Path(photos).name: folder.sha256}, row


def evaluate_command(
    model_dir: Path, ways: int, shots: int, tasks: int, queries: int, steps: int | None,
    seed: int, omniglot_runs: Path | None, record: bool, out: Path | None = None,
    dataset: str | None = None, seeds: int = 5, photos: Path | None = None,
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """Evaluate a shipped meta-learner on test tasks and write JSON + PNG.

    The reports go to ``out`` (default ``runs/evaluations/<name>/<version>``); only with
    ``record`` do they go into the meta-learner's own folder and its manifest, so a quick
    sanity run in a checkout never replaces published numbers.
    """
    model_dir = resolve_version_folder(model_dir)
    learner, manifest = load_meta_learner(model_dir)
    t0 = time.monotonic()
    if manifest["input"].get("codec") == "photo":
        if photos is None:
            raise SystemExit("photo meta-learners are evaluated on a folder of photos: --photos DIR")
        result, protocol, data, row = evaluate_photo_protocol(
            learner, manifest, photos, classes, ways, shots, queries, tasks, seed)
        settings = {"ways": ways, "shots": shots, "tasks": tasks, "queries": queries, "seed": seed,
                    "photos": Path(photos).name, "classes": result["classes"]}
    elif manifest["input"]["kind"] == "text":
        result, protocol, data, row = evaluate_text_protocol(learner, manifest, dataset, shots, seeds)
        settings = {"dataset": dataset, "shots": shots, "seeds": seeds, "seed_base": seed}
    elif omniglot_runs is not None:
        result = evaluate_lake_runs(learner, load_lake_runs(omniglot_runs))
        protocol, data = "lake-20-runs", {"all_runs": sha256_of(Path(omniglot_runs))}
        row = {"protocol": protocol, "metric": "error_rate", "mean": result["error_rate"],
               "items": result["items"]}
        settings = {"runs": len(result["per_run"]), "ways": 20, "shots": 1,
                    "items": result["items"], "steps": learner.default_steps()}
    else:
        task = "omniglot" if manifest["input"]["kind"] == "image" else "sinusoid"
        sampler, data = test_sampler(task, ways, shots, queries)
        result = evaluate_tasks(learner, sampler, tasks, seed=seed, steps=steps)
        protocol = protocol_name(learner.task_type, ways, shots, steps)
        metric = learner.task.metric_name
        row = {"protocol": protocol, "metric": metric, **result}
        settings = {"ways": ways, "shots": shots, "tasks": tasks, "queries": queries,
                    "steps": steps if steps is not None else learner.default_steps(), "seed": seed}
    report = {
        "model": manifest["name"],
        "version": manifest["version"],
        "protocol": protocol,
        "settings": settings,
        "result": result,
        "row": row,
        "command": command_line(),
        "data_checksums": data,
        "seconds": round(time.monotonic() - t0, 2),
        "torch": torch.__version__,
    }
    home = Path(model_dir) if record else (
        out or Path("runs") / "evaluations" / manifest["name"] / manifest["version"])
    reports = home / "evaluations"
    reports.mkdir(parents=True, exist_ok=True)
    write_json(reports / f"{protocol}.json", report)
    rows = [json.loads(p.read_text())["row"] for p in sorted(reports.glob("*.json"))]
    results_table(rows, home / "evaluation.png",
                  f"{manifest['name']} {manifest['version']}: test results")
    report["written_to"] = str(home)
    if record:
        manifest = read_manifest(model_dir)
        manifest.setdefault("evaluation", {})[protocol] = {
            **{k: v for k, v in row.items() if k != "protocol"},
            "settings": report["settings"],
            "command": report["command"],
        }
        write_json(Path(model_dir) / "manifest.json", manifest)
    return report
