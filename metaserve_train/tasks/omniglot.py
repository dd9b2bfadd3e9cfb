"""Omniglot (Lake et al., 2015) read from its official folder layout, and N-way K-shot tasks.

``root`` holds ``images_background.zip`` / ``images_evaluation.zip`` (or the same folders
extracted): ``images_<split>/<Alphabet>/characterNN/<id>_<drawer>.png``. Background alphabets
are for meta-training (with a held-out set of background characters for validation),
evaluation alphabets for testing only. Decoded, preprocessed arrays are cached in
``cache_dir`` keyed by the source's sha256.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from app.meta.preprocess import preprocess_image
from app.meta.types import TaskBatch

SPLITS = ("background", "evaluation")
CACHE_VERSION = "v1"


@dataclass
class OmniglotSplit:
    """Images ``[characters, drawers, 1, 28, 28]`` and the ``Alphabet/characterNN`` names."""

    images: Tensor
    characters: list[str]
    sha256: str

    def subset(self, keep: list[int]) -> OmniglotSplit:
        return OmniglotSplit(self.images[keep], [self.characters[i] for i in keep], self.sha256)


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's sorted relative names and contents."""
    digest = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(path)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def find_source(root: Path, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    for candidate in (root / f"images_{split}.zip", root / f"images_{split}"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no images_{split}.zip or images_{split}/ under {root}")


def _read_pngs(source: Path, split: str) -> dict[str, list[tuple[str, bytes]]]:
    """``Alphabet/characterNN`` -> [(file name, png bytes)] from a zip or a folder."""
    groups: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    if source.is_file():
        with zipfile.ZipFile(source) as zf:
            for name in zf.namelist():
                parts = name.split("/")
                if name.endswith(".png") and len(parts) == 4 and parts[0] == f"images_{split}":
                    groups[f"{parts[1]}/{parts[2]}"].append((parts[3], zf.read(name)))
    else:
        for png in source.glob("*/*/*.png"):
            groups[f"{png.parent.parent.name}/{png.parent.name}"].append((png.name, png.read_bytes()))
    return groups


def load_split(root: Path, split: str, cache_dir: Path | None = None) -> OmniglotSplit:
    """Load and preprocess every image of one split (cached as .npz when ``cache_dir``)."""
    source = find_source(Path(root), split)
    sha = sha256_of(source)
    cache = Path(cache_dir) / f"omniglot-{split}-{sha[:16]}-{CACHE_VERSION}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache) as npz:
            return OmniglotSplit(torch.from_numpy(npz["images"]), list(npz["characters"]), sha)
    groups = _read_pngs(source, split)
    if not groups:
        raise FileNotFoundError(f"{source} holds no images_{split}/<Alphabet>/<character>/*.png")
    characters = sorted(groups)
    drawers = {len(v) for v in groups.values()}
    if len(drawers) != 1:
        raise ValueError(f"characters have different numbers of drawings: {sorted(drawers)}")
    images = np.stack([
        np.stack([preprocess_image(Image.open(io.BytesIO(data))) for _, data in sorted(groups[c])])
        for c in characters
    ])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, images=images, characters=np.array(characters))
        tmp.replace(cache)
    return OmniglotSplit(torch.from_numpy(images), characters, sha)


def train_val_split(background: OmniglotSplit, every: int = 10) -> tuple[OmniglotSplit, OmniglotSplit]:
    """Hold out every ``every``-th background character (sorted by name) for validation."""
    n = len(background.characters)
    val = [i for i in range(n) if i % every == every - 1]
    train = [i for i in range(n) if i % every != every - 1]
    return background.subset(train), background.subset(val)


class OmniglotTasks:
    """N-way K-shot tasks from a split; ``rotations`` adds 90° rotations as new classes."""

    def __init__(
        self, data: OmniglotSplit, ways: int, shots: int, queries: int,
        rotations: bool = False, device: str = "cpu",
    ) -> None:
        self.images = data.images.to(device)
        self.ways, self.shots, self.queries = ways, shots, queries
        self.rotations = rotations
        self.device = device
        n_classes = self.images.shape[0] * (4 if rotations else 1)
        if ways > n_classes or shots + queries > self.images.shape[1]:
            raise ValueError("not enough characters or drawers for this task shape")

    def sample(self, n_tasks: int, generator: torch.Generator) -> TaskBatch:
        n_chars, n_drawers = self.images.shape[:2]
        n_classes = n_chars * (4 if self.rotations else 1)
        per_class = self.shots + self.queries
        tasks = []
        for _ in range(n_tasks):
            classes = torch.randperm(n_classes, generator=generator)[: self.ways]
            drawers = torch.stack(
                [torch.randperm(n_drawers, generator=generator)[:per_class] for _ in range(self.ways)]
            )
            chars = (classes % n_chars).to(self.device)
            imgs = self.images[chars[:, None], drawers.to(self.device)]  # [ways, per_class, 1, H, W]
            if self.rotations:
                turns = (classes // n_chars).tolist()
                imgs = torch.stack([torch.rot90(im, k, dims=(-2, -1)) for im, k in zip(imgs, turns)])
            tasks.append(imgs)
        x = torch.stack(tasks)  # [T, ways, per_class, 1, H, W]
        labels = torch.arange(self.ways, device=self.device)[:, None]
        sy = labels.expand(self.ways, self.shots).reshape(-1)
        qy = labels.expand(self.ways, self.queries).reshape(-1)
        shape = x.shape[-3:]
        sx = x[:, :, : self.shots].reshape(n_tasks, -1, *shape)
        qx = x[:, :, self.shots :].reshape(n_tasks, -1, *shape)
        return TaskBatch(sx, sy.expand(n_tasks, -1), qx, qy.expand(n_tasks, -1), self.ways)


@dataclass
class LakeRun:
    """One of the 20 within-alphabet 20-way 1-shot runs of Lake et al. (2015)."""

    name: str
    train: Tensor  # [20, 1, 28, 28], class i at index i
    test: Tensor  # [20, 1, 28, 28]
    answers: Tensor  # [20] index of the right training image for each test item


def load_lake_runs(path: Path) -> list[LakeRun]:
    """Read ``all_runs.zip`` (or its extracted folder): runNN/{training,test,class_labels.txt}."""
    path = Path(path)

    def read(name: str) -> bytes:
        if path.is_file():
            with zipfile.ZipFile(path) as zf:
                return zf.read(name)
        return (path / name).read_bytes()

    def image(name: str) -> np.ndarray:
        return preprocess_image(Image.open(io.BytesIO(read(name))))

    runs = []
    for r in range(1, 21):
        run = f"run{r:02d}"
        pairs = [line.split() for line in read(f"{run}/class_labels.txt").decode().splitlines() if line.strip()]
        train_names = sorted({t for _, t in pairs})
        index = {n: i for i, n in enumerate(train_names)}
        runs.append(LakeRun(
            run,
            torch.from_numpy(np.stack([image(n) for n in train_names])),
            torch.from_numpy(np.stack([image(q) for q, _ in pairs])),
            torch.tensor([index[t] for _, t in pairs]),
        ))
    return runs
