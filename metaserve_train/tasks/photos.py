"""Few-shot photo classification tasks from a folder with one subfolder per class.

Photos go through the one preprocessing of the service
(:func:`app.meta.photo_preprocess.preprocess_photo`) and the pinned backbone once; the
embeddings are cached (safetensors) under the cache directory, keyed by the backbone and the
sha256 of the file list and contents, and episodes are drawn over them like text episodes.
Files that cannot be read are listed, never fatal; classes with too few photos are reported
and skipped by the sampler.

DTD (Cimpoi et al. 2014, "Describing Textures in the Wild") is the development set; any folder
of the same layout works (``metaserve evaluate --photos DIR``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from app.meta.image_backbone import load_image_backbone
from app.meta.photo_preprocess import PhotoError, PhotoTooLarge, preprocess_photo
from metaserve_train.tasks.tensor_cache import cached_tensors

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
DEFAULT_MAX_PIXELS = 4096 * 4096


@dataclass
class PhotoFolder:
    """The readable photos of a class folder tree, with (once embedded) their embeddings."""

    root: Path
    files: list[Path]
    labels: list[str]
    sha256: str  # of the relative paths and the bytes, in sorted order
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    embeddings: Tensor | None = None

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.labels))


def scan_photo_folder(root: Path, skip: set[str] | frozenset[str] = frozenset()) -> PhotoFolder:
    """Every photo file under ``root/<class>/`` in sorted order (hidden files and the classes
    in ``skip`` ignored: they are not even read)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    files, labels = [], []
    digest = hashlib.sha256()
    for class_dir in sorted(p for p in root.iterdir()
                            if p.is_dir() and not p.name.startswith(".") and p.name not in skip):
        for path in sorted(class_dir.rglob("*")):
            if path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES and not path.name.startswith("."):
                files.append(path)
                labels.append(class_dir.name)
                digest.update(str(path.relative_to(root)).encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    if not files:
        raise ValueError(f"{root}: no photos found in class subfolders ({sorted(PHOTO_SUFFIXES)})")
    return PhotoFolder(root, files, labels, digest.hexdigest())


def embed_folder(folder: PhotoFolder, backbone: str, cache_dir: Path | None,
                 progress: bool = False, flip: bool = False) -> PhotoFolder:
    """Fill ``folder.embeddings`` (from the cache when the data and backbone are the same);
    unreadable photos are dropped from the folder and listed in ``folder.unreadable``.
    ``flip``: embed the mirrored photos instead (an augmentation for training)."""

    def compute():
        net = load_image_backbone(backbone)
        rows, keep, unreadable = [], [], []
        for i, path in enumerate(tqdm(folder.files, desc=f"embedding {folder.root.name}", disable=not progress,
                                      mininterval=2.0)):
            try:
                pixels = torch.from_numpy(preprocess_photo(path.read_bytes(), net.image_size, DEFAULT_MAX_PIXELS))
            except (PhotoError, PhotoTooLarge, OSError) as exc:
                unreadable.append([str(path.relative_to(folder.root)), str(exc)])
                continue
            rows.append(pixels.flip(-1) if flip else pixels)
            keep.append(i)
        embeddings = torch.cat([net.embed(torch.stack(rows[s:s + 32])) for s in range(0, len(rows), 32)]
                               or [torch.zeros(0, net.spec.dim)])
        return {"embeddings": embeddings, "keep": torch.tensor(keep)}, {"unreadable": json.dumps(unreadable)}

    tensors, metadata = cached_tensors(cache_dir, "photos", f"{backbone}|{folder.sha256}|flip={flip}", compute)
    keep = tensors["keep"].tolist()
    folder.files = [folder.files[i] for i in keep]
    folder.labels = [folder.labels[i] for i in keep]
    folder.unreadable = [tuple(item) for item in json.loads(metadata.get("unreadable", "[]"))]
    folder.embeddings = tensors["embeddings"]
    return folder


def embed_views(folder: PhotoFolder, backbone: str, views: int, seed: int, cache_dir: Path | None,
                progress: bool = False) -> Tensor:
    """``[n_photos, views, dim]`` embeddings of random augmented views of every (readable) photo
    of an embedded folder (:func:`app.meta.photo_preprocess.augmented_view`), cached like
    :func:`embed_folder`; deterministic for a seed."""
    import numpy as np

    from app.meta.photo_preprocess import augmented_view, decode_photo

    def compute():
        net = load_image_backbone(backbone)
        rng = np.random.default_rng(seed)
        out = []
        for path in tqdm(folder.files, desc=f"augmented views of {folder.root.name}", disable=not progress,
                         mininterval=2.0):
            image = decode_photo(path.read_bytes(), net.image_size, DEFAULT_MAX_PIXELS)
            pixels = np.stack([augmented_view(image, net.image_size, rng) for _ in range(views)])
            out.append(net.embed(torch.from_numpy(pixels)))
        return {"views": torch.stack(out)}, {}

    key = f"{backbone}|{folder.sha256}|{len(folder.files)}|views={views}|seed={seed}"
    return cached_tensors(cache_dir, "photo-views", key, compute)[0]["views"]


def class_pools(folder: PhotoFolder, classes: list[str] | None = None) -> dict[str, Tensor]:
    """Each class's embeddings ``[n_c, dim]`` (only ``classes`` when given)."""
    assert folder.embeddings is not None, "embed_folder() first"
    index: dict[str, list[int]] = {}
    for i, label in enumerate(folder.labels):
        if classes is None or label in classes:
            index.setdefault(label, []).append(i)
    return {label: folder.embeddings[rows] for label, rows in sorted(index.items())}
