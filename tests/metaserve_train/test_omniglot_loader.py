"""The Omniglot loader on a generated tree (zip and folder), and on the real data if present."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.meta.preprocess import preprocess_image
from metaserve_train.config import omniglot_dir
from metaserve_train.tasks.omniglot import OmniglotTasks, load_lake_runs, load_split, train_val_split


def png(seed: int, size: int = 105) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.full((size, size), 255, np.uint8)
    r, c = rng.integers(10, size - 30, 2)
    pixels[r : r + 20, c : c + 4] = 0  # a black stroke on white
    buf = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buf, "PNG")
    return buf.getvalue()


def write_tree(root: Path, as_zip: bool, alphabets: int = 2, chars: int = 3, drawers: int = 4):
    files = {}
    for a in range(alphabets):
        for c in range(chars):
            for d in range(drawers):
                name = f"images_background/Alpha{a}/character{c + 1:02d}/{a}{c}_{d + 1:02d}.png"
                files[name] = png(a * 100 + c * 10 + d)
    if as_zip:
        with zipfile.ZipFile(root / "images_background.zip", "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
    return files


@pytest.mark.parametrize("as_zip", [True, False])
def test_loader_reads_generated_tree(tmp_path, as_zip):
    files = write_tree(tmp_path, as_zip)
    split = load_split(tmp_path, "background", cache_dir=tmp_path / "cache")
    assert split.images.shape == (6, 4, 1, 28, 28)
    assert split.characters[0] == "Alpha0/character01"
    first = sorted(n for n in files if "Alpha0/character01" in n)[0]
    expected = preprocess_image(Image.open(io.BytesIO(files[first])))
    np.testing.assert_allclose(split.images[0, 0].numpy(), expected)
    assert split.images.max() == 1.0 and split.images.min() == 0.0  # stroke 1, background 0
    cached = load_split(tmp_path, "background", cache_dir=tmp_path / "cache")
    torch.testing.assert_close(cached.images, split.images)
    assert cached.characters == split.characters


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="images_evaluation"):
        load_split(tmp_path, "evaluation")


def test_sampler_shapes_labels_and_rotations(tmp_path):
    write_tree(tmp_path, True, alphabets=3, chars=4, drawers=5)
    split = load_split(tmp_path, "background")
    tasks = OmniglotTasks(split, ways=3, shots=2, queries=3, rotations=True)
    b = tasks.sample(4, torch.Generator().manual_seed(0))
    assert b.support_x.shape == (4, 6, 1, 28, 28) and b.query_x.shape == (4, 9, 1, 28, 28)
    assert b.support_y[0].tolist() == [0, 0, 1, 1, 2, 2]
    assert b.ways == 3


def test_train_val_split_is_disjoint(tmp_path):
    write_tree(tmp_path, True, alphabets=4, chars=5, drawers=2)
    train, val = train_val_split(load_split(tmp_path, "background"))
    assert not set(train.characters) & set(val.characters)
    assert len(train.characters) + len(val.characters) == 20


real = pytest.mark.skipif(not (omniglot_dir() / "images_background.zip").exists(),
                          reason="Omniglot data not present")


@pytest.mark.data
@real
def test_real_omniglot_counts():
    bg = load_split(omniglot_dir(), "background", cache_dir=Path(".cache"))
    ev = load_split(omniglot_dir(), "evaluation", cache_dir=Path(".cache"))
    assert bg.images.shape[:2] == (964, 20)
    assert ev.images.shape[:2] == (659, 20)
    assert not {c.split("/")[0] for c in bg.characters} & {c.split("/")[0] for c in ev.characters}


@pytest.mark.data
@real
def test_real_lake_runs():
    runs = load_lake_runs(omniglot_dir() / "all_runs.zip")
    assert len(runs) == 20 and sum(len(r.test) for r in runs) == 400
    assert all(sorted(r.answers.tolist()) == list(range(20)) for r in runs)
