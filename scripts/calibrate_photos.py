"""Fit a photo ProtoNet's temperature on validation episodes (held-out photos of its training
classes) so that its served probabilities are calibrated; the argmax never changes.

The temperature is T + s / k (k: shots per class): T and s minimise the query NLL of the
logits divided by it (grid over log T and log s, s = 0 included) on validation episodes of
1, 2, 5 and 10 shots (the configuration's ways and queries, ``--tasks`` of each); the expected
calibration error (ECE, 15 bins) is reported per shot before (T = 1, s = 0) and after.
``--write`` stores T and s in the manifest's ``model.hparams`` (``temperature``,
``shot_temperature``) and the record under ``training.calibration``.

    python scripts/calibrate_photos.py models/photo-protonet/1.0.0 [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.meta.checkpoint import load_meta_learner, read_manifest, write_json  # noqa: E402
from metaserve_train.calibration import fit_shot_temperature  # noqa: E402
from metaserve_train.config import TrainConfig  # noqa: E402
from metaserve_train.evaluation import expected_calibration_error as ece  # noqa: E402
from metaserve_train.samplers import photo_training_samplers  # noqa: E402
from metaserve_train.tasks.episodes import EmbeddingEpisodes  # noqa: E402

SHOTS = (1, 2, 5, 10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--tasks", type=int, default=150, help="validation episodes per shot setting")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    learner, manifest = load_meta_learner(args.model)
    cfg = TrainConfig(**manifest["training"]["config"])
    _, val, _ = photo_training_samplers(cfg, "cpu")
    learner.hp = replace(learner.hp, temperature=1.0, shot_temperature=0.0)
    raw = {}
    for k in SHOTS:
        batch = EmbeddingEpisodes(val.pools, cfg.ways, k, cfg.queries).sample(
            args.tasks, torch.Generator().manual_seed(5 + k))
        logits = learner.predict_batch(learner.adapt_batch(batch.support_x, batch.support_y, batch.ways),
                                       batch.query_x).reshape(-1, batch.ways)
        raw[k] = (logits, batch.query_y.reshape(-1))
    t, s = fit_shot_temperature(raw)
    record = {
        "temperature": round(t, 6),
        "shot_temperature": round(s, 6),
        "validation_ece_before": {f"{k}-shot": ece(lg.softmax(-1), y) for k, (lg, y) in raw.items()},
        "validation_ece_after": {f"{k}-shot": ece((lg / (t + s / k)).softmax(-1), y)
                                 for k, (lg, y) in raw.items()},
        "validation": f"{args.tasks} episodes each of 1, 2, 5 and 10 shots of held-out photos of the "
                      f"training classes ({cfg.ways}-way, {cfg.queries} queries)",
        "command": "python scripts/calibrate_photos.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(record, indent=2))
    if args.write:
        raw = read_manifest(args.model)
        raw["model"]["hparams"]["temperature"] = record["temperature"]
        raw["model"]["hparams"]["shot_temperature"] = record["shot_temperature"]
        raw["training"]["calibration"] = record
        write_json(Path(args.model) / "manifest.json", raw)


if __name__ == "__main__":
    main()
