"""Per-task fine-tuning (protonet-finetune) of a text ProtoNet checkpoint: choose the steps and
learning rate on *validation* splits, then measure cross-dataset test accuracy.

Validation: each dataset's fixed 10-shot support, queried with its validation split (HWU64
``valid``, CLINC150 ``val``); the checkpoint evaluated on a dataset was meta-trained without it.
Test (``--test``): the same protocol as ``metaserve evaluate`` (fixed supports, 5 seeded draws).

    python scripts/finetune_text.py --no-hwu64 runs/text-protonet-no-hwu64 \
        --no-clinc150 runs/text-protonet-no-clinc150 --grid 0,25,50,100 --lrs 1e-4,3e-4,1e-3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from app.meta.algorithms.protonet_finetune import ProtoNetFineTune
from app.meta.checkpoint import load_meta_learner
from app.meta.runtime import cache_dir
from metaserve_train.config import text_dir
from metaserve_train.evaluation import evaluate_text_support
from metaserve_train.tasks.text import FIXED_SUPPORTS, VALIDATION_SPLITS, embed, load_split


def finetuner(folder: Path, steps: int, lr: float, identity: bool = False) -> ProtoNetFineTune:
    """The checkpoint as a fine-tuning learner; ``identity``: start instead from the frozen
    encoder (the adapter's last layer zeroed: no meta-learning), for comparison."""
    base, manifest = load_meta_learner(folder)
    hparams = dict(base.hp.as_dict(), eval_steps=steps, inner_lr=lr)
    tuned = ProtoNetFineTune(base.model, "classification", **hparams)
    weights = base.state_dict()
    if identity:
        weights = {k: torch.zeros_like(v) if ".fc2." in k else v for k, v in weights.items()}
    tuned.load_state_dict(weights)
    return tuned, manifest


def load(pair, encoder):
    return embed(load_split(text_dir(), *pair), encoder, cache_dir())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-hwu64", type=Path, required=True)
    parser.add_argument("--no-clinc150", type=Path, required=True)
    parser.add_argument("--grid", default="0,25,50,100")
    parser.add_argument("--lrs", default="1e-4,3e-4,1e-3")
    parser.add_argument("--test", action="store_true", help="also measure the test splits")
    parser.add_argument("--identity", action="store_true",
                        help="start from the frozen encoder instead of the meta-learned adapter")
    parser.add_argument("--out", type=Path, default=Path("reports/text/finetune.json"))
    args = parser.parse_args()
    folders = {"hwu64": args.no_hwu64, "clinc150": args.no_clinc150}
    results = []
    for steps in [int(s) for s in args.grid.split(",")]:
        for lr in [float(v) for v in args.lrs.split(",")] if steps else [0.0]:
            row = {"steps": steps, "lr": lr}
            for dataset, folder in folders.items():
                learner, manifest = finetuner(folder, steps, lr or 1e-4, args.identity)
                encoder = manifest["input"]["encoder"]
                support = load(FIXED_SUPPORTS[(dataset, 10)], encoder)
                t0 = time.perf_counter()
                val = load(VALIDATION_SPLITS[dataset], encoder)
                row[f"{dataset}_val"] = evaluate_text_support(learner, support, val)["accuracy"]
                row[f"{dataset}_seconds"] = round(time.perf_counter() - t0, 2)
                if args.test:
                    from metaserve_train.reports import evaluate_text_protocol
                    result, *_ = evaluate_text_protocol(learner, manifest, dataset, 10, 5)
                    row[f"{dataset}_test_fixed"] = result["fixed_support"]["accuracy"]
                    draws = result["random_supports"]
                    row[f"{dataset}_test_random"] = [draws["mean"], draws["std"]]
            row["val_mean"] = (row["hwu64_val"] + row["clinc150_val"]) / 2
            print(json.dumps(row), flush=True)
            results.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
