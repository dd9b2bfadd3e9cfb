"""Turn JSON inputs into tensors in the meta-learner's own shape, with precise errors.

``vector`` learners take a list of numbers per input (or a bare number when the vector has
one element). ``image`` learners take nested lists in the model's shape (``[1, 28, 28]`` or
``[28, 28]``, values in the model's range) or a base64 PNG/JPEG string of any size in the
dataset's native form, which goes through :func:`app.meta.preprocess.preprocess_image`.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from app.core.problems import InvalidInputs, LimitExceeded
from app.meta.preprocess import ImageTooLarge, decode_image, preprocess_image


def _decode_base64_image(text: str, where: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    if len(text) > 4 * (max_bytes // 3 + 1):
        raise LimitExceeded(f"{where}: image larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputs(f"{where}: not valid base64 ({exc})") from exc
    if len(data) > max_bytes:
        raise LimitExceeded(f"{where}: image of {len(data)} bytes exceeds {max_bytes}")
    try:
        image = decode_image(data, max_pixels)
    except ImageTooLarge as exc:
        raise LimitExceeded(f"{where}: {exc}") from exc
    except (ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InvalidInputs(f"{where}: cannot decode the image ({exc})") from exc
    return preprocess_image(image)


def _as_array(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InvalidInputs(f"{where}: expected numbers in a regular nested list") from exc
    if arr.dtype == object:
        raise InvalidInputs(f"{where}: expected numbers in a regular nested list")
    if not np.isfinite(arr).all():
        raise InvalidInputs(f"{where}: NaN or infinite values are not allowed")
    if np.abs(arr).max(initial=0.0) > 3.0e38:
        raise InvalidInputs(f"{where}: values exceed the float32 range")
    return arr


def to_tensor(
    inputs: list[Any], spec: dict[str, Any], field: str, max_image_bytes: int, max_image_pixels: int
) -> Tensor:
    """A ``[n, *shape]`` float32 tensor from a list of JSON inputs."""
    shape = tuple(spec["shape"])
    rows = []
    for i, item in enumerate(inputs):
        where = f"{field}[{i}]"
        if isinstance(item, bool):
            raise InvalidInputs(f"{where}: booleans are not inputs")
        if spec["kind"] == "vector":
            if isinstance(item, str):
                raise InvalidInputs(f"{where}: this meta-learner takes numbers, not strings")
            arr = _as_array([item] if isinstance(item, int | float) else item, where)
            if arr.shape != shape:
                raise InvalidInputs(f"{where}: expected a vector of shape {list(shape)}, "
                                    f"got {list(arr.shape)}")
        else:
            if isinstance(item, str):
                arr = _decode_base64_image(item, where, max_image_bytes, max_image_pixels)
            else:
                arr = _as_array(item, where)
                if arr.shape == shape[1:]:
                    arr = arr[None]
                if arr.shape != shape:
                    raise InvalidInputs(
                        f"{where}: expected an image of shape {list(shape)} (or "
                        f"{list(shape[1:])}) or a base64 PNG/JPEG string, got shape {list(arr.shape)}")
                low, high = spec.get("value_range", [-math.inf, math.inf])
                if arr.min() < low or arr.max() > high:
                    raise InvalidInputs(f"{where}: pixel values must lie in [{low}, {high}] "
                                        "(stroke = 1.0); send a PNG to have it preprocessed")
        rows.append(arr)
    if not rows:
        raise InvalidInputs(f"{field}: at least one input is required")
    return torch.from_numpy(np.stack(rows).astype(np.float32))
