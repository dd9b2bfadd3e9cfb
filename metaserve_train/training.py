"""Meta-training loop: outer optimiser, periodic validation, checkpoint and resume.

``train(config, out_dir)`` writes into ``out_dir``: ``weights.safetensors`` (the meta-
parameters with the best validation score), ``manifest.json``, ``training_log.jsonl`` and
``learning_curve.png``; ``checkpoint.pt`` (tensors only, read with ``weights_only=True``)
lets an interrupted run resume where it stopped.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from app.meta.algorithms import MetaLearner
from app.meta.checkpoint import build_learner, save_weights, write_json
from app.meta.task_types import task_type_for
from metaserve_train.config import TrainConfig
from metaserve_train.evaluation import evaluate_tasks
from metaserve_train.plots import learning_curve
from metaserve_train.samplers import training_samplers

CHECKPOINT = "checkpoint.pt"
LOG = "training_log.jsonl"


def better(task_type: str, new: float, old: float | None) -> bool:
    return task_type_for(task_type).better(new, old)


def make_optimizer(cfg: TrainConfig, learner: MetaLearner) -> torch.optim.Optimizer:
    if cfg.outer_optimizer == "sgd":
        return torch.optim.SGD(learner.meta_parameters(), lr=cfg.meta_lr)
    return torch.optim.Adam(learner.meta_parameters(), lr=cfg.meta_lr)


def hardware(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def train(
    cfg: TrainConfig, out_dir: Path, device: str = "cpu", max_minutes: float = 0.0,
    command: str = "", progress: bool = True,
) -> dict[str, Any]:
    """Meta-train (resuming from ``out_dir/checkpoint.pt`` when present); returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    learner = build_learner(cfg.model_spec, seed=cfg.seed)
    initialisation = initialise_from(learner, cfg.init_from) if cfg.init_from else None
    for p in learner.params.values():
        p.data = p.data.to(device)
    opt = make_optimizer(cfg, learner)
    sched = (
        torch.optim.lr_scheduler.StepLR(opt, cfg.lr_decay_every, gamma=0.5)
        if cfg.lr_decay_every else None
    )
    train_tasks, val_tasks, checksums = training_samplers(cfg, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, best, best_params, elapsed = 0, None, learner.state_dict(), 0.0
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        learner.load_state_dict(ckpt["params"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["rng"].cpu())
        start, elapsed = int(ckpt["iteration"]), float(ckpt["elapsed"])
        best = ckpt["best"] if ckpt["best"] == ckpt["best"] else None
        best_params = {k: v.to(device) for k, v in ckpt["best_params"].items()}
    log_path = out_dir / LOG
    if start == 0 and log_path.exists():
        log_path.unlink()
    t0 = time.monotonic() - elapsed

    def save_checkpoint(iteration: int) -> None:
        tmp = out_dir / f".{CHECKPOINT}.tmp"
        torch.save({
            "iteration": iteration, "params": learner.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched else {}, "rng": gen.get_state(),
            "elapsed": time.monotonic() - t0, "best": best if best is not None else float("nan"),
            "best_params": best_params,
        }, tmp)
        tmp.replace(ckpt_path)

    metric = task_type_for(cfg.task_type).metric_name
    iterations_done = start
    with log_path.open("a") as log, tqdm(
        range(start, cfg.iterations), initial=start, total=cfg.iterations,
        desc=cfg.name, disable=not progress, mininterval=2.0,
    ) as bar:
        if start == 0 and cfg.iterations == 0:
            # no meta-training: the initialisation is the result, validated like any other
            val = evaluate_tasks(learner, val_tasks, cfg.val_tasks, seed=12345, progress=False)
            best = val["mean"]
            log.write(json.dumps({"iteration": 0, "val": val}) + "\n")
        for it in bar:
            iterations_done = it + 1
            batch = train_tasks.sample(cfg.meta_batch, gen)
            loss, grads = learner.meta_gradient(batch)
            opt.zero_grad(set_to_none=True)
            for k, p in learner.params.items():
                p.grad = grads[k]
            opt.step()
            if sched is not None:
                sched.step()
            record: dict[str, Any] = {"iteration": it + 1, "loss": loss}
            done = it + 1 == cfg.iterations
            out_of_time = max_minutes > 0 and time.monotonic() - t0 > max_minutes * 60
            if (it + 1) % cfg.val_every == 0 or done or out_of_time:
                val = evaluate_tasks(learner, val_tasks, cfg.val_tasks, seed=12345, progress=False)
                record["val"] = val
                if better(cfg.task_type, val["mean"], best):
                    best, best_params = val["mean"], learner.state_dict()
                bar.set_postfix(loss=f"{loss:.4f}", val=f"{val['mean']:.4f}")
            log.write(json.dumps(record) + "\n")
            if (it + 1) % cfg.checkpoint_every == 0 or done or out_of_time:
                log.flush()
                save_checkpoint(it + 1)
            if out_of_time:
                break
    final = build_learner(cfg.model_spec)
    final.load_state_dict({k: v.cpu() for k, v in best_params.items()})
    weights_sha = save_weights(out_dir, final)
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    learning_curve(records, out_dir / "learning_curve.png", cfg.name, metric)
    manifest = {
        "name": cfg.name,
        "version": cfg.version,
        "algorithm": cfg.algorithm,
        "family": final.family,
        "task_type": cfg.task_type,
        "model": cfg.model_spec,
        "input": input_spec(cfg),
        "adaptation_defaults": {"steps": final.default_steps()} if final.has_steps else {},
        "limits": cfg.limits,
        "training": {
            "command": command,
            "config": {k: v for k, v in vars(cfg).items() if k not in ("limits", "evaluations")},
            "seed": cfg.seed,
            "iterations_done": iterations_done,
            "iterations_planned": cfg.iterations,
            "best_validation": {metric: best},
            "seconds": round(time.monotonic() - t0, 1),
            "hardware": hardware(device),
            "data_checksums": checksums,
            **({"initialised_from": initialisation} if initialisation else {}),
            "library_versions": {"python": sys.version.split()[0], "torch": torch.__version__},
        },
        "weights_sha256": weights_sha,
        "evaluation": {},
    }
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def initialise_from(learner: MetaLearner, folder: str) -> dict[str, Any]:
    """Start from a shipped model's weights (the meta-parameters with the same names)."""
    from safetensors.torch import load_file

    from app.meta.checkpoint import file_sha256, resolve_version_folder

    version = resolve_version_folder(Path(folder))
    weights = version / "weights.safetensors"
    tensors = load_file(str(weights))
    shared = {k: v for k, v in tensors.items() if k in learner.params}
    if not shared:
        raise ValueError(f"{weights} holds none of {sorted(learner.params)[:3]}...")
    with torch.no_grad():
        for k, v in shared.items():
            learner.params[k].copy_(v)
    return {"folder": str(version), "weights_sha256": file_sha256(weights), "tensors": len(shared)}


RUN_BY = {"torch": "", "onnx": " run by ONNX Runtime",
          "onnx-int8": " run by ONNX Runtime with int8 weights (quantised per output channel)"}


def input_spec(cfg: TrainConfig) -> dict[str, Any]:
    from app.meta.preprocess import IMAGE_SIZE, PREPROCESSING

    if cfg.task == "text":
        from app.meta.text_encoder import ENCODERS

        encoder, runtime = ENCODERS[cfg.text["encoder"]], cfg.text.get("runtime", "torch")
        spec = {
            "kind": "text", "shape": [encoder.dim], "dtype": "float32",
            "preprocessing": f"UTF-8 sentences embedded by the pinned {encoder.name}{RUN_BY[runtime]} "
                             f"(L2-normalised, {encoder.dim}-d); only the adapter is shipped",
            "encoder": encoder.name, "max_chars": int(cfg.text.get("max_chars", 512)),
        }
        return spec if runtime == "torch" else {**spec, "runtime": runtime}
    if cfg.task == "photos":
        from app.meta.image_backbone import backbone_spec
        from app.meta.photo_preprocess import photo_preprocessing

        backbone = backbone_spec(cfg.photos["backbone"])
        size = backbone.image_size
        return {
            "kind": "image", "codec": "photo", "backbone": backbone.name, "shape": [3, size, size],
            "dtype": "float32", "value_range": [-1.0, 1.0], "preprocessing": photo_preprocessing(size),
            "native": "a photograph (base64 JPEG, PNG or WebP) of any size from 16x16 to 4096x4096; "
                      f"only the adapter over the pinned {backbone.name} is shipped",
        }
    if cfg.task == "omniglot":
        return {
            "kind": "image", "shape": [1, IMAGE_SIZE, IMAGE_SIZE], "dtype": "float32",
            "value_range": [0.0, 1.0], "preprocessing": PREPROCESSING,
            "native": "Omniglot 105x105 PNG, black stroke on white (base64 PNG/JPEG accepted)",
        }
    return {
        "kind": "vector", "shape": [1], "dtype": "float32", "value_range": [-5.0, 5.0],
        "preprocessing": "none",
    }
