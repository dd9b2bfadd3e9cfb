"""Classifier heads over a frozen sentence encoder's embeddings, for the synchronous text mode,
measured on validation splits only: 10-shot supports drawn from each dataset's training split
over its whole label set, queried with its validation split (HWU64 ``valid``, CLINC150 ``val``).

Heads: the nearest prototype (what text-protonet does over the frozen encoder), the nearest
prototype after centring on the support's mean, and the softmax head of protonet-softmax-head
(fitted on the support with L-BFGS, pulled toward the prototype layer) over a grid of its pull
``--l2`` and input scale ``--scales``. ``--write`` writes the shipped version: the frozen
encoder's identity adapter and the head's hyperparameters.

    python scripts/text_fast_heads.py --encoders all-MiniLM-L6-v2:onnx-int8,all-mpnet-base-v2:torch
    python scripts/text_fast_heads.py --write models/text-protonet-head/1.0.0 \
        --encoders all-MiniLM-L6-v2:onnx-int8 --l2 0.001 --scales 4 --out reports/text/fast-heads-minilm.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import mean, stdev

import torch
import torch.nn.functional as F

from app.meta.algorithms.protonet import ProtoNet
from app.meta.algorithms.protonet_softmax_head import fit_softmax_head, join_names
from app.meta.runtime import cache_dir
from metaserve_train.config import text_dir
from metaserve_train.tasks.text import (
    FULL_TRAIN,
    VALIDATION_SPLITS,
    draw_support,
    embed,
    embed_label_names,
    load_split,
)


def nearest(zs, y, zq, ways):
    p = ProtoNet.prototypes_of(zs, y, ways)["prototypes"]
    return (2 * zq @ p.T - (p * p).sum(-1)).argmax(-1)


def centred(zs, y, zq, ways):
    mu = zs.mean(0)
    return nearest(F.normalize(zs - mu, dim=-1), y, F.normalize(zq - mu, dim=-1), ways)


def softmax_head(zs, y, zq, ways, l2: float, scale: float, names=None):
    """The served head (protonet-softmax-head): fitted on the support's unit embeddings times
    ``scale``, pulled by ``l2`` toward the prototype layer it starts from; with the label
    names' embeddings ``names``, those join the support where they are informative."""
    z = F.normalize(zs, dim=-1) * scale
    z, y = join_names(z, y, ways, None if names is None else F.normalize(names, dim=-1) * scale)
    head = fit_softmax_head(z, y, ways, scale, l2, iterations=100)
    return (F.normalize(zq, dim=-1) * scale @ head["weight"].T + head["bias"]).argmax(-1)


def heads(grid_l2, grid_scale, label_names: bool):
    """Every head of the grid, each called ``(zs, y, zq, ways, names)``."""
    out = {"prototype": lambda zs, y, zq, ways, names: nearest(zs, y, zq, ways),
           "prototype-centred": lambda zs, y, zq, ways, names: centred(zs, y, zq, ways)}
    for l2 in grid_l2:
        for scale in grid_scale:
            out[f"softmax l2={l2} scale={scale}"] = (
                lambda zs, y, zq, ways, names, l2=l2, scale=scale: softmax_head(zs, y, zq, ways, l2, scale))
            if label_names:
                out[f"softmax+names l2={l2} scale={scale}"] = (
                    lambda zs, y, zq, ways, names, l2=l2, scale=scale:
                    softmax_head(zs, y, zq, ways, l2, scale, names))
    return out


def write_version(folder: Path, l2: float, scale: float, report: Path, encoder: str,
                  label_names: bool = False) -> None:
    """The shipped version: the pinned ``encoder`` on ONNX Runtime with int8 weights (the
    embeddings text-protonet 1.1.0 is served on), the identity adapter (W2 = 0, scale 8) and the
    head chosen on validation; nothing is learned before a task arrives. The served temperature
    is 1 until ``scripts/calibrate_text.py --write`` fits it."""
    import platform

    from app.meta.checkpoint import build_learner, save_weights, write_json
    from app.meta.text_encoder import ENCODERS

    name, version = folder.parent.name, folder.name
    dim, layers = ENCODERS[encoder].dim, ENCODERS[encoder].layers
    hparams = {"temperature": 1.0, "head_scale": scale, "head_l2": l2, "head_iterations": 100}
    if label_names:
        hparams["label_names"] = True
    # the adapter is the identity whatever its hidden width (W2 = 0): a narrow one keeps the
    # checkpoint small (the first version kept text-protonet's 512)
    spec = {"algorithm": "protonet-softmax-head", "backbone": "embedding_adapter",
            "backbone_args": {"dim": dim, "hidden": 512 if dim == 384 else 16, "scale": 8.0},
            "task_type": "classification", "hparams": hparams}
    learner = build_learner(spec, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    sha = save_weights(folder, learner)
    write_json(folder / "manifest.json", {
        "name": name,
        "version": version,
        "algorithm": spec["algorithm"],
        "family": "optimization",
        "task_type": "classification",
        "model": spec,
        "input": {
            "kind": "text", "shape": [dim], "dtype": "float32",
            "preprocessing": "UTF-8 sentences embedded by the pinned all-MiniLM-L6-v2 run by ONNX Runtime with "
            "int8 weights (quantised per output channel) "
            + (f"(its layers {', '.join(map(str, layers))}: each layer's token states mean-pooled and "
               f"L2-normalised, concatenated and normalised again, {dim}-d)" if layers
               else f"(L2-normalised, {dim}-d)")
            + "; only the adapter (the identity) is shipped",
            "encoder": encoder, "max_chars": 512, "runtime": "onnx-int8",
        },
        "adaptation_defaults": {},
        "limits": {"max_ways": 150, "max_shots": 50, "max_support": 2000, "max_queries": 256},
        "training": {
            "initialisation": "the pinned all-MiniLM-L6-v2's pretrained weights, frozen; the adapter at its "
            "initialisation (seed 0, W2 = 0: the identity scaled by 8); nothing is meta-trained",
            "command": f"python scripts/text_fast_heads.py --write {folder} --encoders {encoder}:onnx-int8 "
            f"--l2 {l2} --scales {scale}{' --label-names' if label_names else ''} --out {report}",
            "seed": 0,
            "data_checksums": {},
            "head": {
                "what": f"per task, in the request: a softmax head over the unit embeddings times {scale}, "
                f"fitted by L-BFGS (at most 100 iterations) on the support's cross-entropy plus {l2} x the "
                "squared distance of its weights and biases from the prototypes' linear layer, where it starts "
                "(Proto-MAML's initialisation, Triantafillou et al. 2020; SetFit's head, Tunstall et al. 2022)"
                + ("; the labels' names, read as phrases ('alarm_query' -> 'alarm query') and embedded like "
                   "the sentences, join the support as one example per class when the prototype classifier "
                   "puts at least a quarter of them, and three standard deviations more than chance, in "
                   "their own class" if label_names else ""),
                "chosen_on": "validation only: 10-shot supports drawn from HWU64 train and CLINC150 train over "
                "each whole label set (3 draws each), queried with HWU64 valid and CLINC150 val",
                "grid": str(report),
                "command": json.loads(report.read_text()).get("command", ""),
            },
            "library_versions": {"python": platform.python_version(), "torch": torch.__version__},
            "seconds": 0.0,
            "seconds_note": "no meta-training; the head is fitted per task at adaptation",
            "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
        },
        "weights_sha256": sha,
        "notes": "Synchronous (the head's fit takes tens of milliseconds for ten classes). Neither CLINC150 nor "
        "HWU64 is seen before a task arrives (no meta-training), so its evaluations on them are cross-dataset. "
        "Adapted models cannot "
        "add examples (the head depends on the whole support set): adapt again with the larger support. "
        + ("Label names are read: labels that are words ('alarm_query', 'CardArrival') join the support as one "
           "example per class when they are informative, so name classes by what they mean; labels such as "
           "'class_017' or numbers are left out and change nothing. " if label_names else "")
        + "Data: CLINC150 (Larson et al. 2019, CC BY 3.0), HWU64 (Liu et al. 2019, CC BY 4.0).",
    })
    print(f"wrote {folder} (weights sha256 {sha})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoders", default="all-MiniLM-L6-v2:onnx-int8,all-mpnet-base-v2:torch")
    ap.add_argument("--datasets", default="hwu64,clinc150")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--l2", default="0.001,0.01,0.1")
    ap.add_argument("--scales", default="1,4")
    ap.add_argument("--out", type=Path, default=Path("reports/text/fast-heads.json"))
    ap.add_argument("--label-names", action="store_true",
                    help="also the heads that read the label names (the written version reads them)")
    ap.add_argument("--opaque-names", action="store_true",
                    help="with --label-names: name the intents class_000, class_001, ... (what the heads "
                    "do with labels that say nothing)")
    ap.add_argument("--write", type=Path, help="write the shipped version to this folder (one --l2 and --scales)")
    args = ap.parse_args()
    if args.write:
        encoder, runtime = args.encoders.split(":")
        if "," in args.encoders or runtime != "onnx-int8":
            ap.error("--write takes one encoder, on onnx-int8")
        write_version(args.write, float(args.l2), float(args.scales), args.out, encoder, args.label_names)
        return
    root = text_dir()
    grid = heads([float(v) for v in args.l2.split(",")], [float(v) for v in args.scales.split(",")],
                 args.label_names)
    rows = []
    for pair in args.encoders.split(","):
        encoder, runtime = pair.split(":")
        for dataset in args.datasets.split(","):
            train = embed(load_split(root, *FULL_TRAIN[dataset]), encoder, cache_dir(), runtime)
            valid = embed(load_split(root, *VALIDATION_SPLITS[dataset]), encoder, cache_dir(), runtime)
            labels = sorted(set(train.intents))
            index = {label: i for i, label in enumerate(labels)}
            truth = torch.tensor([index[i] for i in valid.intents])
            named = [f"class_{i:03d}" for i in range(len(labels))] if args.opaque_names else labels
            names = embed_label_names(named, encoder, runtime) if args.label_names else None
            scores: dict[str, list[float]] = {name: [] for name in grid}
            seconds: dict[str, list[float]] = {name: [] for name in grid}
            for draw in range(args.draws):
                support = draw_support(train, args.shots, torch.Generator().manual_seed(1000 + draw))
                y = torch.tensor([index[i] for i in support.intents])
                for name, head in grid.items():
                    start = time.perf_counter()
                    predicted = head(support.embeddings, y, valid.embeddings, len(labels), names)
                    seconds[name].append(time.perf_counter() - start)
                    scores[name].append(100 * float((predicted == truth).float().mean()))
            for name in grid:
                row = {"encoder": encoder, "runtime": runtime, "dataset": dataset, "head": name,
                       "mean": mean(scores[name]), "std": stdev(scores[name]) if len(scores[name]) > 1 else 0.0,
                       "accuracies": scores[name], "seconds": mean(seconds[name])}
                rows.append(row)
                print(f"{encoder:18s} {dataset:9s} {name:48s} {row['mean']:6.2f} ± {row['std']:.2f}"
                      f"  {row['seconds'] * 1000:7.1f} ms", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"protocol": f"{args.shots}-shot supports drawn from the training split "
                                    "(whole label set), queried with the validation split",
                                    "command": "python scripts/text_fast_heads.py " + " ".join(sys.argv[1:]),
                                    "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
