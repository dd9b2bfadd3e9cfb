"""Compare the photo modes on the same tasks: photo-protonet (prototypes of the frozen
backbone's embeddings through the model's adapter) and the same model fine-tuned per task
(photo-finetune: the backbone's head convolution and the adapter, P>M>F).

Classes are split into folds (``--fold NAME=class,class,...``); for each fold the tasks are
5-way K-shot (15 queries per class) over the fold's classes, and fine-tuning's steps and
learning rate are chosen with ``--grid`` on tasks of the *other* classes only. Results are
paired (the same tasks for every mode): mean accuracy, 95% CI and the paired difference.

    python scripts/evaluate_photo_modes.py --photos DIR --model models/photo-protonet/1.0.0 \\
        --fold A=banded,blotchy,... --fold B=... [--tasks 200] [--grid 10:1e-4,20:5e-4] \\
        [--device cuda] [--out reports/photos/modes.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.meta.algorithms import AdaptOptions  # noqa: E402
from app.meta.algorithms.protonet import ProtoNet  # noqa: E402
from app.meta.algorithms.protonet_backbone_finetune import ProtoNetBackboneFineTune  # noqa: E402
from app.meta.backbones import EmbeddingAdapter  # noqa: E402
from app.meta.image_backbone import load_image_backbone  # noqa: E402
from app.meta.photo_preprocess import preprocess_photo  # noqa: E402

BACKBONE = "efficientnet-lite0"


def pixels_of(path: str) -> np.ndarray:
    return preprocess_photo(Path(path).read_bytes(), 224, 4096 * 4096)


def summary(values: list[float]) -> dict[str, float]:
    a = np.array(values)
    return {"mean": float(a.mean()), "ci95": float(1.96 * a.std(ddof=1) / math.sqrt(len(a))), "tasks": len(a)}


def draw_tasks(files: dict[str, list[str]], classes: list[str], shots: int, n: int, seed: int):
    rng = random.Random(seed)
    tasks = []
    for _ in range(n):
        sx, sy, qx, qy = [], [], [], []
        for label, name in enumerate(rng.sample(classes, 5)):
            pick = rng.sample(files[name], shots + 15)
            sx += pick[:shots]
            sy += [label] * shots
            qx += pick[shots:]
            qy += [label] * 15
        tasks.append((sx, sy, qx, qy))
    return tasks


def learners(model_dir: Path, device: str, steps: int, lr: float, views: int):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    weights = load_file(str(model_dir / "weights.safetensors"))
    args = manifest["model"]["backbone_args"]
    hparams = {k: v for k, v in manifest["model"]["hparams"].items()
               if k in ("temperature", "shot_temperature")}
    protonet = ProtoNet(EmbeddingAdapter(**args), "classification", **hparams)
    protonet.load_state_dict(weights)
    finetune = ProtoNetBackboneFineTune(EmbeddingAdapter(**args), "classification", image_backbone=BACKBONE,
                                        tail_blocks=0, views=views, inner_lr=lr, eval_steps=steps, **hparams)
    finetune.load_state_dict(weights)
    return [m.to(device) for m in (protonet, finetune)]


def run(tasks, pixels, backbone, modes, device: str, desc: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in modes}
    for sx, sy, qx, qy in tqdm(tasks, desc=desc, mininterval=5.0):
        xs = torch.from_numpy(np.stack([pixels[p] for p in sx])).to(device)
        xq = torch.from_numpy(np.stack([pixels[p] for p in qx])).to(device)
        ys, yq = torch.tensor(sy, device=device), torch.tensor(qy, device=device)
        zs, zq = backbone.embed(xs).to(device), backbone.embed(xq).to(device)
        for name, learner in modes.items():
            if isinstance(learner, ProtoNetBackboneFineTune):
                state = learner.adapt(xs, ys, 5)
                logits = learner.predict(state, xq)
            else:
                logits = learner.predict(learner.adapt(zs, ys, 5, AdaptOptions()), zq)
            out[name].append(float((logits.argmax(-1) == yq).float().mean()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="a photo ProtoNet version folder")
    parser.add_argument("--fold", action="append", required=True, help="NAME=class,class,... (5 or more)")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--val-tasks", type=int, default=30)
    parser.add_argument("--grid", default="20:5e-4", help="steps:lr candidates for fine-tuning")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=0, help="use only the first N photos of a class")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("reports/photos/modes.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    files = {d.name: sorted(str(p) for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
             for d in sorted(args.photos.iterdir()) if d.is_dir()}
    if args.per_class:
        files = {k: v[: args.per_class] for k, v in files.items()}
    every = [p for v in files.values() for p in v]
    with ProcessPoolExecutor() as pool:
        pixels = dict(zip(every, pool.map(pixels_of, every, chunksize=16), strict=True))
    backbone = load_image_backbone(BACKBONE).on(args.device)
    grid = [(int(s), float(lr)) for s, lr in (c.split(":") for c in args.grid.split(","))]
    report = {"date": time.strftime("%Y-%m-%d"), "device": args.device,
              "hardware": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.machine(),
              "command": "python scripts/evaluate_photo_modes.py " + " ".join(sys.argv[1:]), "folds": {}}
    for spec in args.fold:
        name, listed = spec.split("=", 1)
        test = listed.split(",")
        train = [c for c in files if c not in test]
        fold = {"test_classes": test, "validation": {}, "test": {}}
        chosen = grid[0]
        if len(grid) > 1:  # choose on tasks of the training classes, 5-shot and 1-shot together
            scores = {}
            for steps, lr in grid:
                _, finetune = learners(args.model, args.device, steps, lr, args.views)
                accs = []
                for shots in (1, 5):
                    tasks = draw_tasks(files, train, shots, args.val_tasks, seed=100 + shots)
                    accs += run(tasks, pixels, backbone, {"ft": finetune}, args.device,
                                f"{name} val {steps}:{lr}")["ft"]
                scores[f"{steps}:{lr}"] = summary(accs)
            fold["validation"] = scores
            chosen = max(grid, key=lambda g: scores[f"{g[0]}:{g[1]}"]["mean"])
        fold["chosen"] = {"steps": chosen[0], "inner_lr": chosen[1], "views": args.views}
        protonet, finetune = learners(args.model, args.device, chosen[0], chosen[1], args.views)
        modes = {"photo-protonet": protonet, "photo-finetune": finetune}
        for shots in (1, 5):
            tasks = draw_tasks(files, test, shots, args.tasks, seed=shots)
            t0 = time.monotonic()
            accs = run(tasks, pixels, backbone, modes, args.device, f"{name} test {shots}-shot")
            fold["test"][f"{shots}-shot"] = {
                **{mode: summary(v) for mode, v in accs.items()},
                "finetune_minus_protonet": summary([a - b for a, b in zip(accs["photo-finetune"],
                                                                            accs["photo-protonet"], strict=True)]),
                "seconds_per_task": (time.monotonic() - t0) / len(tasks)}
            print(name, shots, {m: round(100 * s["mean"], 1) for m, s in fold["test"][f"{shots}-shot"].items()
                                if isinstance(s, dict)}, flush=True)
        report["folds"][name] = fold
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")  # after every fold
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
