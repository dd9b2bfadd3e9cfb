"""Support sets and queries for each shipped meta-learner, drawn from its own task family.

Omniglot requests carry real **evaluation-alphabet** PNGs (the native 105x105 files) when the
data is present, otherwise synthetic glyphs of the same size.
"""

from __future__ import annotations

import base64
import io
import math
import random
import zipfile

import numpy as np
from PIL import Image

from metaserve_train.config import omniglot_dir


def sine_task(rng: random.Random, shots: int = 5, queries: int = 10) -> tuple[dict, dict]:
    amp, phase = rng.uniform(0.1, 5.0), rng.uniform(0, math.pi)
    xs = [rng.uniform(-5, 5) for _ in range(shots + queries)]
    support = {"inputs": [[x] for x in xs[:shots]], "targets": [amp * math.sin(x - phase) for x in xs[:shots]]}
    return support, {"inputs": [[x] for x in xs[shots:]]}


class OmniglotPngs:
    """Raw PNGs of the evaluation alphabets, grouped by character."""

    def __init__(self) -> None:
        self.by_char: list[list[str]] = []
        path = omniglot_dir() / "images_evaluation.zip"
        if path.exists():
            groups: dict[str, list[str]] = {}
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    if name.endswith(".png"):
                        key = name.rsplit("/", 1)[0]
                        groups.setdefault(key, []).append(base64.b64encode(zf.read(name)).decode())
            self.by_char = list(groups.values())
        else:
            rng = np.random.default_rng(0)
            for _ in range(50):
                strokes = rng.integers(10, 90, (3, 2))
                imgs = []
                for d in range(20):
                    img = np.full((105, 105), 255, np.uint8)
                    for r, c in strokes:
                        img[r + d % 3 : r + 8 + d % 3, c : c + 12] = 0
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, "PNG")
                    imgs.append(base64.b64encode(buf.getvalue()).decode())
                self.by_char.append(imgs)

    def task(self, rng: random.Random, ways: int, shots: int, queries: int = 5) -> tuple[dict, dict]:
        chars = rng.sample(range(len(self.by_char)), ways)
        support, query = {"inputs": [], "targets": []}, {"inputs": []}
        for k, c in enumerate(chars):
            drawings = rng.sample(self.by_char[c], shots + queries)
            support["inputs"] += drawings[:shots]
            support["targets"] += [f"class-{k}"] * shots
            query["inputs"] += drawings[shots:]
        return support, query


WORKLOADS = {  # meta-learner -> (ways, shots) for the benchmark's tasks
    "sinusoid-maml": (0, 5), "sinusoid-maml@1.0.0": (0, 5),  # newest: auto steps; 1.0.0: 10
    "sinusoid-metasgd": (0, 5), "sinusoid-hypernet": (0, 5),
    "omniglot-protonet": (5, 1), "omniglot-maml": (5, 1), "omniglot-anil": (5, 1),
    "omniglot-reptile": (5, 5),
}


def make_task(name: str, rng: random.Random, pngs: OmniglotPngs | None) -> tuple[dict, dict]:
    ways, shots = WORKLOADS[name]
    if name.startswith("sinusoid"):
        return sine_task(rng, shots)
    assert pngs is not None
    return pngs.task(rng, ways, shots)
