"""Expected calibration error of every shipped Omniglot learner: are the probabilities the
service returns worth trusting (``abstain_threshold``)? Test tasks from the evaluation
alphabets (seed 2024, 15 queries per class), 15 equal-width confidence bins.

    python scripts/omniglot_ece.py [--ways 5] [--shots 1] [--tasks 300]

Writes ``reports/calibration/omniglot-<ways>w<shots>s.json``; nothing is tuned here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from app.meta.algorithms import AdaptOptions
from app.meta.checkpoint import load_meta_learner
from metaserve_train.evaluation import expected_calibration_error as ece
from metaserve_train.samplers import test_sampler

MODELS = ["omniglot-protonet", "omniglot-matchingnet", "omniglot-maml", "omniglot-anil", "omniglot-reptile"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ways", type=int, default=5)
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--tasks", type=int, default=300)
    args = ap.parse_args()
    sampler, _ = test_sampler("omniglot", args.ways, args.shots, 15)
    report = {"protocol": f"{args.ways}-way-{args.shots}-shot", "tasks": args.tasks, "bins": 15, "learners": {}}
    for name in MODELS:
        learner, manifest = load_meta_learner(Path("models") / name)
        gen = torch.Generator().manual_seed(2024)
        probs, truth = [], []
        done = 0
        while done < args.tasks:
            batch = sampler.sample(min(20, args.tasks - done), gen)
            for i in range(len(batch)):
                state = learner.adapt(batch.support_x[i], batch.support_y[i], batch.ways, AdaptOptions())
                probs.append(torch.softmax(learner.predict(state, batch.query_x[i]), -1))
                truth.append(batch.query_y[i])
            done += len(batch)
        p, t = torch.cat(probs), torch.cat(truth)
        report["learners"][f"{name}@{manifest['version']}"] = {
            "ece": round(ece(p, t), 4), "accuracy": round(float((p.argmax(-1) == t).float().mean()), 4),
            "mean_confidence": round(float(p.max(-1).values.mean()), 4)}
        print(name, report["learners"][f"{name}@{manifest['version']}"], flush=True)
    out = Path("reports/calibration") / f"omniglot-{args.ways}w{args.shots}s.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
