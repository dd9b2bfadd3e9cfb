"""Meta-train a meta-learner on a team's own labelled data (``metaserve meta-train``).

The new learner starts from a served *base* (a ProtoNet over a frozen pinned encoder: the photo
or text ProtoNet) and keeps its encoder; only the base's adapter is meta-trained, and only it is
written. Classes are split once (seeded) into meta-training, validation and test classes; the
validation and test classes are never trained on. Episodic training (5-way, 1- and 5-shot
episodes in turn, photos as one of their augmented views) stops early when validation accuracy
has not improved for ``patience`` validations; the base's own weights are the first candidate,
so the result is never worse than the base on validation. The served temperature is then
refitted on validation episodes, and base and own are measured on the same episodes of the test
classes.

The run checkpoints (tensors only) into the output folder and resumes from it; the same data,
base, options and seed give the same weights, bit for bit on the CPU (``--max-minutes`` stops
by the clock, so a run cut by it is reproducible only by its iteration count).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from app.meta.checkpoint import CheckpointError, load_version, save_weights, write_json
from metaserve_train.calibration import fit_shot_temperature, raw_logits
from metaserve_train.comparison import compare, comparison_plot
from metaserve_train.embedding import embed_labelled, pool_views
from metaserve_train.evaluation import evaluate_tasks
from metaserve_train.labelled_data import DataError, class_pools, read_labelled
from metaserve_train.tasks.episodes import AlternatingEpisodes, EmbeddingEpisodes

CHECKPOINT = "checkpoint.pt"
LOG = "training_log.jsonl"
SHOTS = (1, 5)
VERSION_PATTERN = re.compile(r"^[0-9]+(\.[0-9A-Za-z+-]+)*$")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


class MetaTrainError(ValueError):
    """A meta-training run that cannot start or go on; the message says why."""


@dataclass
class MetaTrainOptions:
    data: Path
    base: str
    out: Path
    max_minutes: float = 0.0
    val_classes: int | None = None
    test_classes: int | None = None
    seed: int = 0
    name: str | None = None
    version: str | None = None
    iterations: int = 2000
    min_examples: int = 5
    eval_tasks: int = 600
    views: int = 4
    ways: int = 5
    queries: int = 10
    meta_batch: int = 8
    meta_lr: float = 5e-4
    val_every: int = 25
    val_tasks: int = 150
    patience: int = 8
    checkpoint_every: int = 25
    models_dir: Path = Path("models")
    cache_dir: Path | None = None
    progress: bool = True
    command: str = ""
    hardware: str = field(default="", repr=False)


@dataclass
class Split:
    train: list[str]
    validation: list[str]
    test: list[str]


def resolve_base(base: str, models_dir: Path) -> Path:
    """A version folder from ``NAME``, ``NAME@VERSION`` or a folder path."""
    if Path(base).is_dir():
        return Path(base)
    name, _, version = base.partition("@")
    folder = Path(models_dir) / name / version if version else Path(models_dir) / name
    if not folder.is_dir():
        raise MetaTrainError(f"no meta-learner {base!r} under {models_dir} (METASERVE_MODELS_DIR)")
    return folder


def check_base(manifest) -> None:
    """Only metric learners over a frozen embedding (the photo and text ProtoNets) can be
    meta-trained from labelled data here."""
    codec = manifest.input.codec_name
    if manifest.algorithm != "protonet" or manifest.model.backbone != "embedding_adapter" \
            or codec not in ("photo", "text"):
        raise MetaTrainError(
            f"{manifest.name}@{manifest.version} ({manifest.algorithm} over {manifest.model.backbone}, "
            f"{codec} input) cannot be a base: choose a ProtoNet over a pinned photo backbone or "
            f"sentence encoder, such as photo-protonet or text-protonet")


def output_identity(options: MetaTrainOptions) -> tuple[str, str]:
    """``--name`` / ``--version``, by default from ``--out``: ``.../NAME/VERSION`` when the
    folder is named like a version, else the folder's name and version 1.0.0."""
    out = Path(options.out).resolve()
    versioned = bool(VERSION_PATTERN.match(out.name))
    name = options.name or (out.parent.name if versioned else out.name)
    version = options.version or (out.name if versioned else "1.0.0")
    if not NAME_PATTERN.match(name):
        raise MetaTrainError(f"name {name!r}: lower-case letters, digits and '-' only (set --name)")
    if not re.match(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,39}$", version):
        raise MetaTrainError(f"version {version!r} is not a version (set --version)")
    return name, version


def split_classes(classes: list[str], val: int | None, test: int | None, seed: int) -> Split:
    """A seeded split into meta-training, validation and test classes. By default a sixth of
    the classes each (2 to 5) go to validation and test."""
    n = len(classes)
    default = min(5, max(2, n // 6))
    val = default if val is None else val
    test = default if test is None else test
    if val < 2 or test < 2:
        raise MetaTrainError("--val-classes and --test-classes must be at least 2")
    if n - val - test < 2:
        raise MetaTrainError(f"{n} usable classes: {val} for validation and {test} for test leave "
                             f"fewer than 2 to meta-train on (add classes or lower the counts)")
    order = sorted(classes)
    random.Random(seed).shuffle(order)
    return Split(sorted(order[val + test:]), sorted(order[:val]), sorted(order[val:val + test]))


def shot_settings(pools: dict[str, torch.Tensor], classes: list[str], queries: int) -> list[tuple[int, int]]:
    """(shots, queries) episode shapes every class of ``classes`` can fill."""
    smallest = min(pools[c].shape[0] for c in classes)
    return [(k, min(queries, smallest - k)) for k in SHOTS if smallest - k >= 1]


def episodes(pools, classes, ways, queries, views=None) -> dict[int, EmbeddingEpisodes]:
    """One sampler per shot setting over ``classes`` (with their augmented views if given)."""
    return {k: EmbeddingEpisodes([pools[c] for c in classes], min(ways, len(classes)), k, q, views=views)
            for k, q in shot_settings(pools, classes, queries)}


def run_key(options: MetaTrainOptions, base_sha: str, fingerprint: str, split: Split) -> str:
    """What a checkpoint must match to be resumed (the same run, perhaps with a longer clock)."""
    keep = {k: v for k, v in asdict(options).items()
            if k not in ("out", "max_minutes", "progress", "command", "cache_dir", "models_dir", "hardware",
                         "data", "base", "name", "version")}
    payload = {"options": keep, "base": base_sha, "data": fingerprint, "split": asdict(split)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def meta_train(options: MetaTrainOptions) -> dict[str, Any]:
    """Run (or resume) a meta-training; returns the written manifest."""
    started = time.monotonic()
    out = Path(options.out)
    name, version = output_identity(options)
    if Path(options.data).is_dir() and Path(options.out).resolve().is_relative_to(Path(options.data).resolve()):
        raise MetaTrainError("--out must not be inside --data (its files would be read as photos)")
    base_folder = resolve_base(options.base, options.models_dir)
    try:
        learner, manifest, raw = load_version(base_folder)
        base, _, _ = load_version(base_folder)
    except CheckpointError as exc:
        raise MetaTrainError(f"base {options.base!r}: {exc}") from exc
    check_base(manifest)
    torch.manual_seed(options.seed)

    try:
        data = read_labelled(options.data)
        embedded = embed_labelled(data, manifest.input.model_dump(exclude_none=True), options.cache_dir,
                                  options.views, options.seed, options.progress)
    except DataError as exc:
        raise MetaTrainError(str(exc)) from exc
    except ValueError as exc:
        raise MetaTrainError(str(exc)) from exc
    for where, why in embedded.unreadable:
        print(f"skipped {where}: {why}", file=sys.stderr)
    pools, skipped = class_pools(embedded.embeddings, embedded.labels, options.min_examples)
    for label, count in skipped.items():
        print(f"skipped class {label!r}: {count} examples, fewer than --min-examples {options.min_examples}",
              file=sys.stderr)
    split = split_classes(list(pools), options.val_classes, options.test_classes, options.seed)
    views = pool_views(embedded, split.train)
    train_samplers = episodes(pools, split.train, options.ways, options.queries, views)
    val_samplers = episodes(pools, split.validation, options.ways, options.queries)
    test_samplers = episodes(pools, split.test, options.ways, 15)
    if not train_samplers or not val_samplers or not test_samplers:
        raise MetaTrainError("every class needs at least 2 examples (one support, one query)")
    train_tasks = AlternatingEpisodes([train_samplers[k] for k in sorted(train_samplers)])

    base_sha = manifest.weights_sha256
    key = run_key(options, base_sha, data.fingerprint, split)
    opt = torch.optim.Adam(learner.meta_parameters(), lr=options.meta_lr)
    gen = torch.Generator().manual_seed(options.seed)

    def validate() -> dict[str, Any]:
        per_shot = {k: evaluate_tasks(learner, s, options.val_tasks, seed=options.seed + 1000 + k, progress=False)
                    for k, s in sorted(val_samplers.items())}
        n = len(per_shot)
        return {"mean": sum(r["mean"] for r in per_shot.values()) / n,
                "ci95": sum(r["ci95"] ** 2 for r in per_shot.values()) ** 0.5 / n,
                "per_shot": {f"{k}-shot": r["mean"] for k, r in per_shot.items()}}

    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / CHECKPOINT, out / LOG
    state: dict[str, Any] = {"iteration": 0, "best": None, "best_iteration": 0, "stale": 0, "elapsed": 0.0,
                             "best_params": learner.state_dict()}
    records: list[dict[str, Any]] = []
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("run_key") != key:
            raise MetaTrainError(f"{ckpt_path} is the checkpoint of another run (other data, base, "
                                 f"seed or options): remove it or choose another --out")
        learner.load_state_dict(ckpt["params"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["rng"])
        state = {k: ckpt[k] for k in ("iteration", "best", "best_iteration", "stale", "elapsed", "best_params")}
        if log_path.exists():
            records = [r for r in map(json.loads, log_path.read_text().splitlines())
                       if r["iteration"] <= state["iteration"]]
    t0 = time.monotonic() - float(state["elapsed"])

    def save_checkpoint() -> None:
        log_path.write_text("".join(json.dumps(r) + "\n" for r in records))
        tmp = out / f".{CHECKPOINT}.tmp"
        torch.save({"run_key": key, "params": learner.state_dict(), "optimizer": opt.state_dict(),
                    "rng": gen.get_state(), **{**state, "elapsed": time.monotonic() - t0}}, tmp)
        tmp.replace(ckpt_path)

    if state["best"] is None:  # the base itself is the first candidate
        val = validate()
        state["best"] = val["mean"]
        records.append({"iteration": 0, "val": val})
        save_checkpoint()
    stop_reason = "iterations"
    with tqdm(range(state["iteration"], options.iterations), initial=state["iteration"],
              total=options.iterations, desc=f"meta-train {name}", disable=not options.progress,
              mininterval=2.0) as bar:
        for it in bar:
            if state["stale"] >= options.patience:
                stop_reason = "early stop"
                break
            if options.max_minutes > 0 and time.monotonic() - t0 > options.max_minutes * 60:
                stop_reason = "max minutes"
                break
            loss, grads = learner.meta_gradient(train_tasks.sample(options.meta_batch, gen))
            opt.zero_grad(set_to_none=True)
            for k, p in learner.params.items():
                p.grad = grads[k]
            opt.step()
            state["iteration"] = it + 1
            record: dict[str, Any] = {"iteration": it + 1, "loss": loss}
            if (it + 1) % options.val_every == 0 or it + 1 == options.iterations:
                val = validate()
                record["val"] = val
                if val["mean"] > state["best"]:
                    state.update(best=val["mean"], best_iteration=it + 1, stale=0,
                                 best_params=learner.state_dict())
                else:
                    state["stale"] += 1
                bar.set_postfix(loss=f"{loss:.3f}", val=f"{val['mean']:.3f}",
                                best=f"{state['best']:.3f}@{state['best_iteration']}")
            records.append(record)
            if (it + 1) % options.checkpoint_every == 0:
                save_checkpoint()
    if state["stale"] >= options.patience:
        stop_reason = "early stop"
    save_checkpoint()
    train_seconds = time.monotonic() - t0

    learner.load_state_dict(state["best_params"])
    calibration = calibrate(learner, val_samplers, options.seed)
    evaluation = evaluate(base, learner, test_samplers, options)
    evaluation["classes"] = split.test
    weights_sha = save_weights(out, learner)
    from metaserve_train.plots import learning_curve

    learning_curve(records, out / "learning_curve.png", f"{name} on {data.source.name}", "accuracy")
    rows = [{"protocol": p, "learner": who, **r[who]} for p, r in evaluation["protocols"].items()
            for who in ("base", "own")]
    comparison_plot(rows, out / "evaluation.png",
                    f"{name} vs {manifest.name}@{manifest.version}: {len(split.test)} held-out classes")
    written = {
        "name": name,
        "version": version,
        "algorithm": raw["algorithm"],
        "family": raw["family"],
        "task_type": raw["task_type"],
        "model": {**raw["model"], "hparams": {**raw["model"].get("hparams", {}), **calibration["hparams"]}},
        "input": raw["input"],
        "adaptation_defaults": raw.get("adaptation_defaults", {}),
        "limits": raw.get("limits", {}),
        "weights_sha256": weights_sha,
        "notes": (f"Meta-trained on {len(split.train)} classes of {data.source.name} from "
                  f"{manifest.name}@{manifest.version}; only the adapter differs from the base."),
        "training": {
            "command": options.command,
            "seed": options.seed,
            "base": {"name": manifest.name, "version": manifest.version, "weights_sha256": base_sha},
            "data": data_record(data, embedded, pools, skipped, split),
            "options": {k: v for k, v in asdict(options).items()
                        if k not in ("data", "base", "out", "progress", "command", "cache_dir", "models_dir",
                                     "hardware", "name", "version")},
            "iterations_done": state["iteration"],
            "best_iteration": state["best_iteration"],
            "stopped_by": stop_reason,
            "best_validation": {"accuracy": state["best"]},
            "calibration": calibration,
            "seconds": round(time.monotonic() - started, 1),
            "training_seconds": round(train_seconds, 1),
            "hardware": options.hardware or _hardware(),
            "library_versions": {"python": sys.version.split()[0], "torch": torch.__version__},
        },
        "evaluation": {"held_out_classes": evaluation},
    }
    write_json(out / "evaluation.json", evaluation)
    write_json(out / "manifest.json", written)
    try:
        load_version(out)  # the folder serves as written (typed manifest, weights, checksum)
    except CheckpointError as exc:
        raise MetaTrainError(f"the written folder does not load: {exc}") from exc
    ckpt_path.unlink(missing_ok=True)
    return written


def calibrate(learner, val_samplers: dict[int, EmbeddingEpisodes], seed: int, tasks: int = 150) -> dict[str, Any]:
    raw = {k: raw_logits(learner, s, tasks, seed + 2000 + k) for k, s in sorted(val_samplers.items())}
    t, s = fit_shot_temperature(raw)
    learner.hp = replace(learner.hp, temperature=round(t, 6), shot_temperature=round(s, 6))
    return {"hparams": {"temperature": round(t, 6), "shot_temperature": round(s, 6)},
            "fitted_on": "validation classes", "tasks_per_shot": tasks}


def evaluate(base, own, test_samplers: dict[int, EmbeddingEpisodes], options: MetaTrainOptions) -> dict[str, Any]:
    protocols = {}
    for k, sampler in sorted(test_samplers.items()):
        result = compare({"base": base, "own": own}, sampler, options.eval_tasks, seed=options.seed + 3000 + k)
        protocols[f"{sampler.ways}-way {k}-shot"] = result
    any_sampler = next(iter(test_samplers.values()))
    return {"protocols": protocols, "tasks": options.eval_tasks, "queries_per_class": any_sampler.queries,
            "date": datetime.now(UTC).date().isoformat(), "hardware": options.hardware or _hardware()}


def data_record(data, embedded, pools, skipped, split: Split) -> dict[str, Any]:
    count = {c: int(pools[c].shape[0]) for c in pools}
    return {
        "kind": data.kind,
        "source": data.source.name,
        "fingerprint": data.fingerprint,
        "examples": len(embedded.labels),
        "classes": {part: {c: count[c] for c in getattr(split, part)} for part in ("train", "validation", "test")},
        "skipped_classes": skipped,
        "unreadable": [list(u) for u in embedded.unreadable[:100]],
        "unreadable_count": len(embedded.unreadable),
    }


def _hardware() -> str:
    import platform

    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
