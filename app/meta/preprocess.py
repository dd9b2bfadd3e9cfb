"""The one image preprocessing used by training, evaluation and the service.

Omniglot images are 105x105 1-bit PNGs with black strokes on white. The meta-learners see
28x28 float32 images in [0, 1] with the **stroke = 1** and background = 0, resized with a
box filter (area average), as in the MAML and ProtoNet papers' 28x28 Omniglot.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

IMAGE_SIZE = 28
PREPROCESSING = "grey, box-resize to 28x28, invert so that stroke = 1.0 and background = 0.0"
MAX_IMAGE_PIXELS = 4096 * 4096


def preprocess_image(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """A PIL image of any size and mode -> float32 array ``[1, size, size]``, stroke = 1."""
    grey = image.convert("L")
    if grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float32) / 255.0
    return (1.0 - pixels)[None]


class ImageTooLarge(ValueError):
    """An image with more pixels than allowed (checked before decoding the pixels)."""


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode PNG/JPEG bytes, refusing images larger than ``max_pixels`` before decoding."""
    image = Image.open(io.BytesIO(data))
    if image.format not in ("PNG", "JPEG"):
        raise ValueError(f"unsupported image format {image.format!r}; send PNG or JPEG")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image of {width}x{height} pixels exceeds the limit of {max_pixels}")
    image.load()
    return image
