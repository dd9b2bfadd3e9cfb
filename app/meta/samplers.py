"""Build the task samplers a configuration names (training, validation, test)."""

from __future__ import annotations

from app.meta.config import TrainConfig, cache_dir, omniglot_dir, text_dir
from app.meta.tasks.omniglot import OmniglotTasks, load_split, train_val_split
from app.meta.tasks.sinusoid import SinusoidTasks
from app.meta.tasks.text import TextTasks, embed, subset
from app.meta.tasks.text import load_split as load_text_split


def training_samplers(cfg: TrainConfig, device: str):
    """(train sampler, validation sampler, data checksums) for a configuration."""
    if cfg.task == "sinusoid":
        return (
            SinusoidTasks(cfg.shots, cfg.queries, device),
            SinusoidTasks(cfg.shots, 100, device),
            {"sinusoid": "generated (no data files)"},
        )
    if cfg.task == "omniglot":
        background = load_split(omniglot_dir(), "background", cache_dir())
        train, val = train_val_split(background)
        return (
            OmniglotTasks(train, cfg.ways, cfg.shots, cfg.queries, cfg.rotations, device),
            OmniglotTasks(val, cfg.ways, cfg.shots, cfg.queries, False, device),
            {"images_background": background.sha256},
        )
    if cfg.task == "text":
        train, val, checksums = text_training_splits(cfg)
        return (TextTasks(train, cfg.ways, cfg.shots, cfg.queries, device),
                TextTasks(val, cfg.ways, cfg.shots, cfg.queries, device), checksums)
    raise ValueError(f"unknown task {cfg.task!r}")


def text_training_splits(cfg: TrainConfig):
    """The configured sources, embedded; every K-th intent of each (sorted) held out for
    validation, so validation episodes are of intents never trained on."""
    every = int(cfg.text.get("validation_every", 5))
    train, val, checksums = [], [], {}
    for dataset, split in cfg.text["sources"]:
        data = embed(load_text_split(text_dir(), dataset, split), cfg.text["encoder"], cache_dir())
        checksums[data.name] = data.sha256
        held = set(data.classes[every - 1 :: every])
        train.append(subset(data, lambda intent, held=held: intent not in held))
        val.append(subset(data, lambda intent, held=held: intent in held))
    return train, val, checksums


def test_sampler(task: str, ways: int, shots: int, queries: int):
    """The test-time sampler: new sinusoids, or the Omniglot *evaluation* alphabets."""
    if task == "sinusoid":
        return SinusoidTasks(shots, queries), {"sinusoid": "generated"}
    evaluation = load_split(omniglot_dir(), "evaluation", cache_dir())
    return (
        OmniglotTasks(evaluation, ways, shots, queries, rotations=False),
        {"images_evaluation": evaluation.sha256},
    )
