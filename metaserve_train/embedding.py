"""Embed a team's labelled data with the frozen encoder of the base meta-learner, once.

The photos go through the service's own preprocessing and the base's pinned image backbone (the
same function as a served request), sentences through its pinned sentence encoder; embeddings
are cached under the cache directory (``METASERVE_CACHE_DIR``) keyed by the encoder and the
data's fingerprint, so a rerun or a resumed run does not embed again. Photos also get
``views`` augmented views each (crops, mirror image, colour jitter), cached the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from metaserve_train.labelled_data import LabelledData


@dataclass
class Embedded:
    embeddings: Tensor  # [n, dim]
    labels: list[str]
    views: Tensor | None  # [n, V, dim] augmented views (photos), aligned with ``embeddings``
    unreadable: list[tuple[str, str]]


def embed_labelled(data: LabelledData, input_spec: dict[str, Any], cache_dir: Path | None,
                   views: int, seed: int, progress: bool) -> Embedded:
    """The embeddings the base learner sees for ``data`` (the kinds must match)."""
    codec = input_spec.get("codec") or input_spec.get("kind")
    if data.kind == "photos" and codec == "photo":
        return _embed_photos(data, input_spec["backbone"], cache_dir, views, seed, progress)
    if data.kind == "text" and codec == "text":
        return _embed_text(data, input_spec["encoder"], input_spec.get("runtime") or "torch",
                           int(input_spec.get("max_chars") or 1000), cache_dir)
    wanted = {"photo": "a folder of class subfolders of photos",
              "text": "a .csv or .jsonl file of text,label rows"}
    raise ValueError(f"the base meta-learner takes {wanted.get(codec, codec)}; --data is "
                     f"{'a folder of photos' if data.kind == 'photos' else 'a text file'}")


def _embed_photos(data: LabelledData, backbone: str, cache_dir: Path | None, views: int, seed: int,
                  progress: bool) -> Embedded:
    from metaserve_train.tasks.photos import PhotoFolder, embed_folder, embed_views

    folder = embed_folder(PhotoFolder(data.source, list(data.items), list(data.labels), data.fingerprint),
                          backbone, cache_dir, progress=progress)
    extra = embed_views(folder, backbone, views, seed, cache_dir, progress=progress) if views else None
    unreadable = data.unreadable + [(path, why) for path, why in folder.unreadable]
    return Embedded(folder.embeddings, list(folder.labels), extra, unreadable)


def _embed_text(data: LabelledData, encoder: str, runtime: str, max_chars: int,
                cache_dir: Path | None) -> Embedded:
    from app.meta.text_encoder import EMBEDDING_KEYS, load_encoder
    from metaserve_train.tasks.tensor_cache import cached_tensors

    keep = [i for i, s in enumerate(data.items) if len(s) <= max_chars]
    unreadable = list(data.unreadable) + [
        (f"row {i + 1}", f"text of {len(s)} characters exceeds the base's {max_chars}")
        for i, s in enumerate(data.items) if len(s) > max_chars]
    sentences = [data.items[i] for i in keep]

    def compute():
        return {"embeddings": load_encoder(encoder, runtime).encode(sentences)}, {}

    key = f"{encoder}|{data.fingerprint}|{max_chars}" + EMBEDDING_KEYS[runtime]
    tensors, _ = cached_tensors(cache_dir, "text-rows", key, compute)
    return Embedded(tensors["embeddings"], [data.labels[i] for i in keep], None, unreadable)


def no_views(embedded: Embedded) -> bool:
    return embedded.views is None or embedded.views.shape[1] == 0


def pool_views(embedded: Embedded, classes: list[str]) -> list[Tensor] | None:
    """Each class's ``[n_c, V, dim]`` views, in the order of ``classes`` (None without views)."""
    if no_views(embedded):
        return None
    out = []
    for c in classes:
        rows = torch.tensor([i for i, label in enumerate(embedded.labels) if label == c])
        out.append(embedded.views[rows])
    return out
