"""The training package's sub-commands of ``metaserve``: ``train``, ``evaluate``, ``fit-strategy`` and
``meta-train``, registered through the ``metaserve.commands`` entry point (``register``)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def meta_train_command(args: argparse.Namespace) -> int:
    from app.core.config import get_settings
    from app.meta.runtime import cache_dir
    from metaserve_train.own_domain import MetaTrainError, MetaTrainOptions, meta_train

    try:  # plots are written at the end: fail now, not after the training
        import matplotlib  # noqa: F401
    except ImportError:
        print("metaserve meta-train: error: needs the train extra: pip install 'metaserve[train]'",
              file=sys.stderr)
        return 2

    options = MetaTrainOptions(
        data=args.data, base=args.base, out=args.out, max_minutes=args.max_minutes,
        val_classes=args.val_classes, test_classes=args.test_classes, seed=args.seed, name=args.name,
        version=args.version, iterations=args.iterations, min_examples=args.min_examples,
        eval_tasks=args.eval_tasks, views=args.views, patience=args.patience, models_dir=get_settings().models_dir,
        cache_dir=cache_dir(), progress=not args.no_progress,
        command="metaserve " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    try:
        manifest = meta_train(options)
    except MetaTrainError as exc:
        print(f"metaserve meta-train: error: {exc}", file=sys.stderr)
        return 2
    held_out = manifest["evaluation"]["held_out_classes"]["protocols"]
    print(json.dumps({
        "name": manifest["name"], "version": manifest["version"], "out": str(args.out),
        "stopped_by": manifest["training"]["stopped_by"],
        "held_out_accuracy": {p: {"base": round(r["base"]["mean"], 4), "own": round(r["own"]["mean"], 4),
                                  "difference": round(r["difference"]["mean"], 4),
                                  "difference_ci95": round(r["difference"]["ci95"], 4)}
                              for p, r in held_out.items()},
    }))
    return 0


def register(sub) -> None:  # noqa: ANN001 - argparse's sub-parsers action
    """Add this package's sub-commands to ``metaserve``."""
    tr = sub.add_parser("train", help="meta-train from a TOML config (resumes from a checkpoint)")
    tr.add_argument("config", type=Path)
    tr.add_argument("--out", type=Path, default=None, help="default: models/<name>/<version>")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--max-minutes", type=float, default=0.0, help="stop cleanly after this")
    tr.add_argument("--no-progress", action="store_true")

    add_meta_train_parser(sub)

    ev = sub.add_parser("evaluate", help="evaluate a meta-learner folder on test tasks")
    ev.add_argument("model", type=Path, help="models/<name>/<version>, or models/<name> for the newest")
    ev.add_argument("--ways", type=int, default=5)
    ev.add_argument("--shots", type=int, default=1)
    ev.add_argument("--tasks", type=int, default=600)
    ev.add_argument("--queries", type=int, default=15, help="query examples per class / task")
    ev.add_argument("--steps", type=int, default=None, help="adaptation steps (default: model's)")
    ev.add_argument("--seed", type=int, default=2024)
    ev.add_argument("--omniglot-runs", type=Path, default=None, help="path to all_runs.zip")
    ev.add_argument("--dataset", choices=["hwu64", "clinc150"], default=None,
                    help="text learners: the dataset whose fixed K-shot support and test split to use")
    ev.add_argument("--seeds", type=int, default=5, help="text learners: random K-shot supports drawn")
    ev.add_argument("--photos", type=Path, default=None,
                    help="photo learners: a folder with one subfolder of photos per class")
    ev.add_argument("--classes", type=_names, default=None,
                    help="photo learners: evaluate on these classes (comma-separated) only")
    ev.add_argument("--record", action="store_true",
                    help="write the reports into the model's folder and the result into its manifest")
    ev.add_argument("--out", type=Path, default=None,
                    help="where reports go without --record (default: runs/evaluations/<name>/<version>)")
    fs = sub.add_parser("fit-strategy", help="fit a step-strategy model for a gradient-based "
                        "learner and ship it as a new version beside it")
    fs.add_argument("model", type=Path, help="models/<name>/<version>, or models/<name> for the newest")
    fs.add_argument("--version", required=True, help="the new version to write")
    fs.add_argument("--candidates", type=_ints, required=True, help="step counts, e.g. 1,2,5,10")
    fs.add_argument("--train-shapes", type=_shapes, required=True,
                    help="WAYSxSHOTS list for training and validation tasks (0xSHOTS: regression)")
    fs.add_argument("--test-shapes", type=_shapes, required=True, help="WAYSxSHOTS list to report")
    fs.add_argument("--train-tasks", type=int, default=300)
    fs.add_argument("--val-tasks", type=int, default=150)
    fs.add_argument("--test-tasks", type=int, default=400, help="spread over the test shapes")
    fs.add_argument("--queries", type=int, default=10, help="per class (classification) or task")
    fs.add_argument("--seed", type=int, default=0)
    fs.add_argument("--margin-by", choices=["loss", "metric"], default="loss",
                    help="choose the margin by validation query loss, or by accuracy / MSE with "
                    "no validation shape worse than the default")
    fs.add_argument("--cache", type=Path, default=None,
                    help="keep the adapted tasks' outcomes here and reuse them on a rerun")
    fs.add_argument("--no-progress", action="store_true")
    tr.set_defaults(handler=train_command)
    ev.set_defaults(handler=evaluate_command)
    fs.set_defaults(handler=fit_strategy_command)


META_TRAIN_CONTRACT = """Meta-train your own meta-learner from labelled data, starting from a served one.

--data is a folder with one subfolder of photos per class (JPEG, PNG or WebP), or a .csv
(header with the columns text and label) or .jsonl ({"text": ..., "label": ...} per line) file.
Classes with fewer than --min-examples examples are reported and skipped; unreadable files or
rows are listed, never fatal. Classes are split (seeded) into meta-training, validation (early
stopping) and test classes (the evaluation against the base); the run checkpoints into --out
and resumes when run again with the same arguments."""


def add_meta_train_parser(sub) -> None:
    mt = sub.add_parser("meta-train", help="meta-train your own meta-learner from a folder of photos per "
                        "class or a text,label file (resumes; needs the train extra)",
                        description=META_TRAIN_CONTRACT, formatter_class=argparse.RawDescriptionHelpFormatter)
    mt.add_argument("--data", type=Path, required=True,
                    help="a folder of class subfolders of photos, or a .csv / .jsonl file of text,label rows")
    mt.add_argument("--base", required=True,
                    help="the served meta-learner to start from: NAME, NAME@VERSION or its folder "
                         "(photo-protonet for photos, text-protonet for text)")
    mt.add_argument("--out", type=Path, required=True,
                    help="the version folder to write, e.g. models/my-parts/1.0.0 (its checkpoint goes there)")
    mt.add_argument("--max-minutes", type=float, default=0.0,
                    help="stop meta-training after this many minutes and write the best so far (0: no limit)")
    mt.add_argument("--val-classes", type=int, default=None,
                    help="held-out classes for early stopping (default: a sixth of the classes, 2 to 5)")
    mt.add_argument("--test-classes", type=int, default=None,
                    help="held-out classes for the evaluation against the base (default: as --val-classes)")
    mt.add_argument("--seed", type=int, default=0)
    mt.add_argument("--name", default=None, help="default: the folder above --out when --out is named "
                    "like a version, else the name of --out")
    mt.add_argument("--version", default=None, help="default: the name of --out when it is a version, else 1.0.0")
    mt.add_argument("--iterations", type=int, default=2000, help="at most this many meta-batches")
    mt.add_argument("--min-examples", type=int, default=5, help="classes with fewer examples are skipped")
    mt.add_argument("--eval-tasks", type=int, default=600, help="test episodes per shot setting")
    mt.add_argument("--views", type=int, default=4, help="augmented views of each training photo")
    mt.add_argument("--patience", type=int, default=8,
                    help="stop after this many validations (every 25 meta-batches) without improvement")
    mt.add_argument("--no-progress", action="store_true")
    mt.set_defaults(handler=meta_train_command)


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _shapes(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(w), int(s)) for w, s in (item.split("x") for item in text.split(",") if item.strip())]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WAYSxSHOTS,... got {text!r}") from exc


def train_command(args: argparse.Namespace) -> int:
    from metaserve_train.reports import train_command as train

    manifest = train(args.config, args.out, args.device, args.max_minutes, not args.no_progress)
    print(json.dumps(manifest["training"]["best_validation"]))
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    from metaserve_train.reports import evaluate_command as evaluate

    report = evaluate(
        args.model, args.ways, args.shots, args.tasks, args.queries, args.steps,
        args.seed, args.omniglot_runs, args.record, args.out, args.dataset, args.seeds,
        args.photos, args.classes,
    )
    print(json.dumps(report["row"]))
    return 0


def fit_strategy_command(args: argparse.Namespace) -> int:
    from metaserve_train.reports import command_line
    from metaserve_train.strategy_training import fit_strategy_command as fit

    report = fit(
        args.model, args.version, args.candidates, args.train_shapes, args.test_shapes,
        args.train_tasks, args.val_tasks, args.test_tasks, args.queries, args.seed,
        command_line(), progress=not args.no_progress, margin_by=args.margin_by,
        cache=args.cache)
    print(json.dumps({shape: r["strategy_minus_default"] for shape, r in report["test"].items()}))
    return 0
