"""``metaserve meta-train``: run it and print its summary (its arguments are declared in ``app.cli``,
which must not import this package)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def meta_train_command(args: argparse.Namespace) -> int:
    from app.core.config import get_settings
    from app.meta.config import cache_dir
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
