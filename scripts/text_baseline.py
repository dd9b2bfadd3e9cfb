"""The frozen-encoder baseline: nearest prototype over all-MiniLM-L6-v2 embeddings, no
meta-training (the adapter of configs/text-protonet.toml at its initialisation is exactly
the frozen encoder, scaled). Writes reports/text/frozen-baseline.json.

    python scripts/text_baseline.py
"""

from __future__ import annotations

import json
from pathlib import Path

from app.meta.checkpoint import build_learner
from metaserve_train.config import TrainConfig
from metaserve_train.reports import evaluate_text_protocol


def main() -> None:
    cfg = TrainConfig.from_file(Path("configs/text-protonet.toml"))
    learner = build_learner(cfg.model_spec, seed=cfg.seed)
    manifest = {"input": {"encoder": cfg.text["encoder"]}}
    rows = []
    for dataset in ("hwu64", "clinc150"):
        for shots in (10, 5):
            result, protocol, data, row = evaluate_text_protocol(learner, manifest, dataset, shots, 5)
            rows.append({**row, "data": data})
            print(json.dumps(row), flush=True)
    out = Path("reports/text/frozen-baseline.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"learner": "frozen all-MiniLM-L6-v2, nearest prototype", "rows": rows},
                              indent=2) + "\n")


if __name__ == "__main__":
    main()
