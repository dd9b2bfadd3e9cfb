"""Fit a ProtoNet's temperature on validation episodes and measure out-of-scope detection.

1. Temperature: on episodes of the held-out validation intents (every 5th training intent),
   the T minimising the query NLL of logits / T (grid over log T); reports the expected
   calibration error (ECE, 15 bins) before and after. 2. Out-of-scope: with CLINC150's fixed
   10-shot support, the abstain threshold on the top probability that maximises the mean of
   in-scope accuracy and out-of-scope recall on CLINC150 *validation* (val + oos_val), then
   both figures on the test split (test + oos_test), as in Larson et al. (2019); a learner that
   reads label names is given the intents' names there, as the service gives them.

    python scripts/calibrate_text.py models/text-protonet/1.0.0 [--write]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import torch

from app.atomic_io import atomic_write_bytes
from app.meta.algorithms import AdaptOptions
from app.meta.checkpoint import load_meta_learner, read_manifest, write_json
from app.meta.runtime import cache_dir
from metaserve_train.config import TrainConfig, text_dir
from metaserve_train.evaluation import expected_calibration_error as ece
from metaserve_train.samplers import text_training_splits
from metaserve_train.tasks.text import TextTasks, embed, embed_label_names, load_split


def validation_logits(learner, cfg: TrainConfig, n_tasks: int = 200):
    _, val, _ = text_training_splits(cfg)
    batch = TextTasks(val, cfg.ways, cfg.shots, cfg.queries).sample(n_tasks, torch.Generator().manual_seed(5))
    fine_tunes = hasattr(learner.hp, "inner_temperature")  # fine-tuning keeps its own loss's
    learner.hp = replace(learner.hp, temperature=1.0,
                         **({"inner_temperature": learner.hp.loss_temperature} if fine_tunes else {}))
    if learner.batchable:
        states = learner.adapt_batch(batch.support_x, batch.support_y, batch.ways)
        logits = learner.predict_batch(states, batch.query_x)
    else:  # per-task fine-tuning: one task at a time
        logits = torch.stack([learner.predict(learner.adapt(sx, sy, batch.ways), qx)
                              for sx, sy, qx in zip(batch.support_x, batch.support_y, batch.query_x,
                                                    strict=True)])
    return logits.reshape(-1, batch.ways), batch.query_y.reshape(-1)


def fit_temperature(logits: torch.Tensor, truth: torch.Tensor) -> float:
    best = (math.inf, 1.0)
    for log_t in torch.linspace(-3, 6, 181).tolist():
        t = math.exp(log_t)
        nll = float(torch.nn.functional.cross_entropy(logits / t, truth))
        best = min(best, (nll, t))
    return best[1]


def oos_figures(learner, encoder: str, runtime: str = "torch") -> dict:
    def load(dataset, split):
        return embed(load_split(text_dir(), dataset, split), encoder, cache_dir(), runtime)

    support = load("clinc150-fewshot", "train_10")
    labels = sorted(set(support.intents))
    index = {label: i for i, label in enumerate(labels)}
    names = embed_label_names(labels, encoder, runtime) if learner.reads_label_names else None
    state = learner.adapt(support.embeddings, torch.tensor([index[i] for i in support.intents]), len(labels),
                          AdaptOptions(label_inputs=names))

    def scored(in_split, oos_split):
        ins, oos = load("clinc150", in_split), load("clinc150", oos_split)
        with torch.no_grad():
            p_in = torch.softmax(learner.predict(state, ins.embeddings), -1)
            p_oos = torch.softmax(learner.predict(state, oos.embeddings), -1)
        truth = torch.tensor([index[i] for i in ins.intents])
        return p_in, truth, p_oos

    def rates(p_in, truth, p_oos, threshold):
        conf, pred = p_in.max(-1)
        in_acc = float(((pred == truth) & (conf >= threshold)).float().mean())
        oos_recall = float((p_oos.max(-1).values < threshold).float().mean())
        return in_acc, oos_recall

    val = scored("val", "oos_val")
    grid = [i / 200 for i in range(0, 200)]
    threshold = max(grid, key=lambda t: sum(rates(*val, t)) / 2)
    test = scored("test", "oos_test")
    in_acc, recall = rates(*test, threshold)
    no_abstain = rates(*test, 0.0)
    return {"threshold_chosen_on_validation": threshold, "test_in_scope_accuracy": in_acc,
            "test_oos_recall": recall, "test_in_scope_accuracy_without_abstaining": no_abstain[0],
            "support": "clinc150-fewshot/train_10", "test": "clinc150 test (4,500) + oos_test (1,000)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--config", type=Path, default=Path("configs/text-protonet.toml"))
    ap.add_argument("--write", action="store_true", help="record the temperature in the manifest")
    ap.add_argument("--out", type=Path, default=Path("reports/text/calibration.json"))
    args = ap.parse_args()
    learner, manifest = load_meta_learner(args.model)
    cfg = TrainConfig.from_file(args.config)
    # the validation episodes in the embeddings the model is served on (the config gives the
    # sources and the held-out intents)
    cfg.text = {**cfg.text, "encoder": manifest["input"]["encoder"],
                "runtime": manifest["input"].get("runtime") or "torch"}
    logits, truth = validation_logits(learner, cfg)
    t = fit_temperature(logits, truth)
    before = ece(torch.softmax(logits, -1), truth)
    after = ece(torch.softmax(logits / t, -1), truth)
    learner.hp = replace(learner.hp, temperature=t)
    report = {"temperature": t, "validation_ece_before": before, "validation_ece_after": after,
              "validation": "200 episodes of held-out training intents (10-way 5-shot, 10 queries)"
              + ("; the episodes carry no intent names, so the temperature is fitted without them"
                 if learner.reads_label_names else ""),
              "out_of_scope": oos_figures(learner, manifest["input"]["encoder"],
                                                      manifest["input"].get("runtime") or "torch")}
    print(json.dumps(report, indent=2))
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, (json.dumps(report, indent=2) + "\n").encode())
    if args.write:
        raw = read_manifest(args.model)
        if getattr(learner.hp, "inner_temperature", None) is not None and not learner.batchable:
            raw["model"]["hparams"]["inner_temperature"] = learner.hp.inner_temperature
        raw["model"]["hparams"]["temperature"] = round(t, 6)
        raw.setdefault("training", {})["calibration"] = {k: v for k, v in report.items() if k != "temperature"}
        write_json(Path(args.model) / "manifest.json", raw)


if __name__ == "__main__":
    main()
