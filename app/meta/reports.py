"""The ``train`` and ``evaluate`` commands: run, then write JSON + PNG reports."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from app.meta.checkpoint import load_meta_learner, read_manifest, write_json
from app.meta.config import TrainConfig
from app.meta.evaluation import evaluate_lake_runs, evaluate_tasks
from app.meta.plots import results_table
from app.meta.samplers import test_sampler
from app.meta.tasks.omniglot import load_lake_runs, sha256_of
from app.meta.training import train


def command_line() -> str:
    return "metaserve " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def train_command(
    config: Path, out: Path | None, device: str, max_minutes: float, progress: bool = True
) -> dict:
    cfg = TrainConfig.from_file(config)
    out_dir = out or Path("models") / cfg.name
    return train(
        cfg, out_dir, device=device, max_minutes=max_minutes, command=command_line(),
        progress=progress,
    )


def protocol_name(task_type: str, ways: int, shots: int, steps: int | None) -> str:
    base = f"{ways}-way-{shots}-shot" if task_type == "classification" else f"{shots}-shot"
    return base + (f"-{steps}-steps" if steps is not None else "")


def evaluate_command(
    model_dir: Path, ways: int, shots: int, tasks: int, queries: int, steps: int | None,
    seed: int, omniglot_runs: Path | None, record: bool,
) -> dict[str, Any]:
    """Evaluate a shipped meta-learner on test tasks; write JSON + PNG; optionally record it."""
    learner, manifest = load_meta_learner(model_dir)
    t0 = time.monotonic()
    if omniglot_runs is not None:
        result = evaluate_lake_runs(learner, load_lake_runs(omniglot_runs))
        protocol, data = "lake-20-runs", {"all_runs": sha256_of(Path(omniglot_runs))}
        row = {"protocol": protocol, "metric": "error_rate", "mean": result["error_rate"]}
    else:
        task = "omniglot" if manifest["input"]["kind"] == "image" else "sinusoid"
        sampler, data = test_sampler(task, ways, shots, queries)
        result = evaluate_tasks(learner, sampler, tasks, seed=seed, steps=steps)
        protocol = protocol_name(learner.task_type, ways, shots, steps)
        metric = "accuracy" if learner.task_type == "classification" else "mse"
        row = {"protocol": protocol, "metric": metric, **result}
    report = {
        "model": manifest["name"],
        "protocol": protocol,
        "settings": {"ways": ways, "shots": shots, "tasks": tasks, "queries": queries,
                     "steps": steps if steps is not None else learner.default_steps(),
                     "seed": seed},
        "result": result,
        "row": row,
        "command": command_line(),
        "data_checksums": data,
        "seconds": round(time.monotonic() - t0, 2),
        "torch": torch.__version__,
    }
    reports = Path(model_dir) / "evaluations"
    reports.mkdir(exist_ok=True)
    write_json(reports / f"{protocol}.json", report)
    rows = [json.loads(p.read_text())["row"] for p in sorted(reports.glob("*.json"))]
    results_table(rows, Path(model_dir) / "evaluation.png", f"{manifest['name']}: test results")
    if record:
        manifest = read_manifest(model_dir)
        manifest.setdefault("evaluation", {})[protocol] = {
            **{k: v for k, v in row.items() if k != "protocol"},
            "settings": report["settings"],
            "command": report["command"],
        }
        write_json(Path(model_dir) / "manifest.json", manifest)
    return report
