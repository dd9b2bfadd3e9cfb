"""The ``metaserve`` command: serve, database, registry, meta-training and evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.catalog.cli import add_catalog_parsers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metaserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (uvicorn)")
    serve.add_argument("--host", default=None, help="default: METASERVE_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="default: METASERVE_PORT (8000)")

    sub.add_parser("worker", help="run adaptation jobs only (no HTTP); scale these separately")

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "reconcile-usage"],
                    help="upgrade: apply migrations; reconcile-usage: recount each tenant's models "
                         "(after a rolling upgrade from before migration 0010)")

    ml = sub.add_parser("meta-learners", help="the catalog of meta-learners: list, publish, alias, "
                        "retire, purge, history")
    ml_actions = ml.add_subparsers(dest="action", required=True)
    ml_actions.add_parser("list", help="every version of the models folder, newest marked, metrics named")
    add_catalog_parsers(ml_actions)

    keys = sub.add_parser("keys", help="API keys (tenants)")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="create a key; it is printed once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--admin", action="store_true", help="an admin-scope key: it may also publish, alias, "
                        "retire and purge meta-learners over /v1/admin (METASERVE_ADMIN_API_ENABLED)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    keys_sub.add_parser("list", help="list key ids, tenants and states")

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
    return parser


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


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _shapes(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(w), int(s)) for w, s in (item.split("x") for item in text.split(",") if item.strip())]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WAYSxSHOTS,... got {text!r}") from exc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from app.meta.reports import train_command

        manifest = train_command(
            args.config, args.out, args.device, args.max_minutes, not args.no_progress
        )
        print(json.dumps(manifest["training"]["best_validation"]))
    elif args.command == "meta-train":
        from metaserve_train.cli import meta_train_command

        return meta_train_command(args)
    elif args.command == "evaluate":
        from app.meta.reports import evaluate_command

        report = evaluate_command(
            args.model, args.ways, args.shots, args.tasks, args.queries, args.steps,
            args.seed, args.omniglot_runs, args.record, args.out, args.dataset, args.seeds,
            args.photos, args.classes,
        )
        print(json.dumps(report["row"]))
    elif args.command == "fit-strategy":
        from app.meta.reports import command_line
        from app.meta.strategy_training import fit_strategy_command

        report = fit_strategy_command(
            args.model, args.version, args.candidates, args.train_shapes, args.test_shapes,
            args.train_tasks, args.val_tasks, args.test_tasks, args.queries, args.seed,
            command_line(), progress=not args.no_progress, margin_by=args.margin_by,
            cache=args.cache)
        print(json.dumps({shape: r["strategy_minus_default"] for shape, r in report["test"].items()}))
    else:
        from app.service_cli import run_service_command

        return run_service_command(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
