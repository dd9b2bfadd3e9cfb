"""Build the task samplers a configuration names (training, validation, test)."""

from __future__ import annotations

import torch

from app.meta.runtime import cache_dir
from metaserve_train.config import TrainConfig, images_dir, omniglot_dir, text_dir
from metaserve_train.tasks.omniglot import OmniglotTasks, load_split, train_val_split
from metaserve_train.tasks.sinusoid import SinusoidTasks
from metaserve_train.tasks.text import TextTasks, embed, subset
from metaserve_train.tasks.text import load_split as load_text_split


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
    if cfg.task == "photos":
        return photo_training_samplers(cfg, device)
    raise ValueError(f"unknown task {cfg.task!r}")


def photo_training_samplers(cfg: TrainConfig, device: str):
    """Episodes over the training classes of a photo folder (the configured test classes are
    never read): every K-th photo of each class held out for validation; the others drawn as
    any of their ``views`` augmented versions, in class episodes and, with
    ``instance_episodes``, in turn with episodes whose classes are single photos (their
    augmented views as shots and queries); ``class_episodes = false`` keeps only the latter
    (self-supervised: no label is read but the validation's)."""
    from metaserve_train.tasks.episodes import AlternatingEpisodes, EmbeddingEpisodes
    from metaserve_train.tasks.photos import embed_folder, embed_views, scan_photo_folder

    folder = images_dir() / cfg.photos["folder"]
    backbone, every = cfg.photos["backbone"], int(cfg.photos.get("validation_every", 5))
    n_views = int(cfg.photos.get("views", 0))
    test = set(cfg.photos.get("test_classes", []))
    data = embed_folder(scan_photo_folder(folder, skip=test), backbone, cache_dir(), progress=True)
    views = embed_views(data, backbone, n_views, cfg.seed, cache_dir(), progress=True) if n_views else None
    train, train_views, val = [], [], []
    for label in data.classes:
        rows = torch.tensor([i for i, lab in enumerate(data.labels) if lab == label])
        held = torch.zeros(rows.numel(), dtype=torch.bool)
        held[every - 1 :: every] = True
        train.append(data.embeddings[rows[~held]])
        val.append(data.embeddings[rows[held]])
        if views is not None:
            train_views.append(views[rows[~held]])
    checksums = {f"{cfg.photos['folder']} (training classes)": data.sha256}
    sampler = EmbeddingEpisodes(train, cfg.ways, cfg.shots, cfg.queries, device,
                                views=train_views if views is not None else None)
    if views is not None and cfg.photos.get("instance_episodes", False):
        photos = torch.cat([torch.cat([t[:, None], v], 1) for t, v in zip(train, train_views, strict=True)])
        half = (n_views + 1) // 2
        instances = EmbeddingEpisodes(list(photos), cfg.ways, half, n_views + 1 - half, device, what="photos")
        sampler = AlternatingEpisodes([sampler, instances] if cfg.photos.get("class_episodes", True)
                                      else [instances])
    return sampler, EmbeddingEpisodes(val, cfg.ways, cfg.shots, cfg.queries, device), checksums


def text_training_splits(cfg: TrainConfig):
    """The configured sources, embedded; every K-th intent of each (sorted) held out for
    validation, so validation episodes are of intents never trained on."""
    every = int(cfg.text.get("validation_every", 5))
    train, val, checksums = [], [], {}
    for dataset, split in cfg.text["sources"]:
        data = embed(load_text_split(text_dir(), dataset, split), cfg.text["encoder"], cache_dir(),
                     cfg.text.get("runtime", "torch"))
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
