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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from app.meta.image_backbone import load_image_backbone
from app.meta.photo_preprocess import PhotoError, PhotoTooLarge, preprocess_photo

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
        out: dict[str, int] = {}
        for label in self.labels:
            out[label] = out.get(label, 0) + 1
        return out


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
    cache = None
    if cache_dir is not None:
        key = hashlib.sha256(f"{backbone}|{folder.sha256}|flip={flip}".encode()).hexdigest()[:24]
        cache = Path(cache_dir) / f"photos-{key}.safetensors"
        if cache.is_file():
            stored = load_file(str(cache))
            keep = stored["keep"].tolist()
            _keep_rows(folder, keep)
            folder.embeddings = stored["embeddings"]
            return folder
    net = load_image_backbone(backbone)
    rows, keep = [], []
    for i, path in enumerate(tqdm(folder.files, desc=f"embedding {folder.root.name}", disable=not progress,
                                  mininterval=2.0)):
        try:
            pixels = torch.from_numpy(preprocess_photo(path.read_bytes(), net.image_size, DEFAULT_MAX_PIXELS))
        except (PhotoError, PhotoTooLarge, OSError) as exc:
            folder.unreadable.append((str(path.relative_to(folder.root)), str(exc)))
            continue
        if flip:
            pixels = pixels.flip(-1)
        rows.append(pixels)
        keep.append(i)
        if len(rows) == 32:
            _flush(net, rows, folder)
    _flush(net, rows, folder)
    _keep_rows(folder, keep)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": folder.embeddings.contiguous(), "keep": torch.tensor(keep)}, str(cache))
    return folder


def embed_views(folder: PhotoFolder, backbone: str, views: int, seed: int, cache_dir: Path | None,
                progress: bool = False) -> Tensor:
    """``[n_photos, views, dim]`` embeddings of random augmented views of every (readable) photo
    of an embedded folder (:func:`app.meta.photo_preprocess.augmented_view`), cached like
    :func:`embed_folder`; deterministic for a seed."""
    import numpy as np

    from app.meta.photo_preprocess import augmented_view, decode_photo

    cache = None
    if cache_dir is not None:
        key = hashlib.sha256(f"{backbone}|{folder.sha256}|{len(folder.files)}|views={views}|seed={seed}"
                             .encode()).hexdigest()[:24]
        cache = Path(cache_dir) / f"photo-views-{key}.safetensors"
        if cache.is_file():
            return load_file(str(cache))["views"]
    net = load_image_backbone(backbone)
    rng = np.random.default_rng(seed)
    out = []
    for path in tqdm(folder.files, desc=f"augmented views of {folder.root.name}", disable=not progress,
                     mininterval=2.0):
        image = decode_photo(path.read_bytes(), net.image_size, DEFAULT_MAX_PIXELS)
        pixels = torch.from_numpy(np.stack([augmented_view(image, net.image_size, rng) for _ in range(views)]))
        out.append(net.embed(pixels))
    result = torch.stack(out)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({"views": result.contiguous()}, str(cache))
    return result


def _flush(net, rows: list[Tensor], folder: PhotoFolder) -> None:
    if rows:
        out = net.embed(torch.stack(rows))
        folder.embeddings = out if folder.embeddings is None else torch.cat([folder.embeddings, out])
        rows.clear()


def _keep_rows(folder: PhotoFolder, keep: list[int]) -> None:
    folder.files = [folder.files[i] for i in keep]
    folder.labels = [folder.labels[i] for i in keep]


def class_pools(folder: PhotoFolder, classes: list[str] | None = None) -> dict[str, Tensor]:
    """Each class's embeddings ``[n_c, dim]`` (only ``classes`` when given)."""
    assert folder.embeddings is not None, "embed_folder() first"
    index: dict[str, list[int]] = {}
    for i, label in enumerate(folder.labels):
        if classes is None or label in classes:
            index.setdefault(label, []).append(i)
    return {label: folder.embeddings[rows] for label, rows in sorted(index.items())}
