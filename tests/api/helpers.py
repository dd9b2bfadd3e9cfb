from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image

SINE_X = [[-4.0], [-2.0], [0.0], [1.5], [3.0]]


def sine_support(amplitude: float = 2.0, phase: float = 0.5) -> dict:
    return {"inputs": SINE_X, "targets": [amplitude * math.sin(x[0] - phase) for x in SINE_X]}


def glyph(kind: int, size: int = 105, jitter: int = 0) -> np.ndarray:
    """A white image with a black glyph: 0 vertical bar, 1 horizontal bar, 2 box, 3 diagonal."""
    img = np.full((size, size), 255, np.uint8)
    s = size // 105 or 1
    o = jitter * s
    if kind == 0:
        img[20 * s + o : 85 * s + o, 48 * s : 58 * s] = 0
    elif kind == 1:
        img[48 * s : 58 * s, 20 * s + o : 85 * s + o] = 0
    elif kind == 2:
        img[25 * s : 80 * s, 25 * s + o : 35 * s + o] = 0
        img[25 * s : 80 * s, 70 * s + o : 80 * s + o] = 0
        img[25 * s : 35 * s, 25 * s : 80 * s] = 0
        img[70 * s : 80 * s, 25 * s : 80 * s] = 0
    else:
        for i in range(15 * s, 90 * s):
            img[i, max(0, i - 6 * s + o) : i + 6 * s + o] = 0
    return img


def png_b64(pixels: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return base64.b64encode(buf.getvalue()).decode()


def image_support(labels=("a", "b", "c"), shots: int = 1) -> dict:
    inputs, targets = [], []
    for k, label in enumerate(labels):
        for s in range(shots):
            inputs.append(png_b64(glyph(k, jitter=s)))
            targets.append(label)
    return {"inputs": inputs, "targets": targets}
