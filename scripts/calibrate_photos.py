"""Fit a photo ProtoNet's temperature on validation episodes (held-out photos of its training
classes) so that its served probabilities are calibrated; the argmax never changes.

The temperature T minimises the query NLL of logits / T (grid over log T) on 300 validation
episodes (the configuration's ways, shots and queries); the expected calibration error (ECE,
15 bins) is reported before and after. ``--write`` stores T in the manifest's
``model.hparams.temperature`` and the record under ``training.calibration``.

    python scripts/calibrate_photos.py models/photo-protonet/1.0.0 [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.meta.checkpoint import load_meta_learner, read_manifest, write_json  # noqa: E402
from app.meta.config import TrainConfig  # noqa: E402
from app.meta.evaluation import expected_calibration_error as ece  # noqa: E402
from app.meta.samplers import photo_training_samplers  # noqa: E402
from scripts.calibrate_text import fit_temperature  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    learner, manifest = load_meta_learner(args.model)
    cfg = TrainConfig(**manifest["training"]["config"])
    _, val, _ = photo_training_samplers(cfg, "cpu")
    batch = val.sample(args.tasks, torch.Generator().manual_seed(5))
    learner.hparams["temperature"] = 1.0
    logits = learner.predict_batch(learner.adapt_batch(batch.support_x, batch.support_y, batch.ways),
                                   batch.query_x).reshape(-1, batch.ways)
    truth = batch.query_y.reshape(-1)
    t = fit_temperature(logits, truth)
    record = {
        "temperature": round(t, 6),
        "validation_ece_before": ece(logits.softmax(-1), truth),
        "validation_ece_after": ece((logits / t).softmax(-1), truth),
        "validation": f"{args.tasks} episodes of held-out photos of the training classes "
                      f"({cfg.ways}-way {cfg.shots}-shot, {cfg.queries} queries)",
        "command": "python scripts/calibrate_photos.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(record, indent=2))
    if args.write:
        raw = read_manifest(args.model)
        raw["model"]["hparams"]["temperature"] = record["temperature"]
        raw["training"]["calibration"] = record
        write_json(Path(args.model) / "manifest.json", raw)


if __name__ == "__main__":
    main()
