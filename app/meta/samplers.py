"""Build the task samplers a configuration names (training, validation, test)."""

from __future__ import annotations

from app.meta.config import TrainConfig, cache_dir, omniglot_dir
from app.meta.tasks.omniglot import OmniglotTasks, load_split, train_val_split
from app.meta.tasks.sinusoid import SinusoidTasks


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
    raise ValueError(f"unknown task {cfg.task!r}")


def test_sampler(task: str, ways: int, shots: int, queries: int):
    """The test-time sampler: new sinusoids, or the Omniglot *evaluation* alphabets."""
    if task == "sinusoid":
        return SinusoidTasks(shots, queries), {"sinusoid": "generated"}
    evaluation = load_split(omniglot_dir(), "evaluation", cache_dir())
    return (
        OmniglotTasks(evaluation, ways, shots, queries, rotations=False),
        {"images_evaluation": evaluation.sha256},
    )
