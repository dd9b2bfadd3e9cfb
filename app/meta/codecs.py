"""Input codecs: JSON inputs -> tensors in a meta-learner's own shape, keyed by input kind.

``vector`` learners take a list of numbers per input (or a bare number when the vector has
one element). ``image`` learners take nested lists in the model's shape (``[1, 28, 28]`` or
``[28, 28]``, values in the model's range) or a base64 PNG/JPEG string of any size in the
dataset's native form, which goes through :func:`app.meta.preprocess.preprocess_image`.
A new kind of input is one class registered in ``CODECS``.
"""

from __future__ import annotations

import base64
import binascii
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from app.meta.preprocess import ImageTooLarge, decode_image, preprocess_image


class InputError(ValueError):
    """An input that cannot be decoded for this meta-learner."""


class InputLimitExceeded(ValueError):
    """An input over a size limit (bytes, pixels)."""


@dataclass(frozen=True)
class InputLimits:
    max_image_bytes: int = 1024 * 1024
    max_image_pixels: int = 1024 * 1024


class InputCodec(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def decode_one(self, item: Any, spec: dict[str, Any], where: str, limits: InputLimits) -> np.ndarray:
        """One JSON input -> an array of the spec's shape."""

    def decode(self, inputs: list[Any], spec: dict[str, Any], field: str, limits: InputLimits) -> Tensor:
        """A ``[n, *shape]`` float32 tensor from a list of JSON inputs."""
        if not inputs:
            raise InputError(f"{field}: at least one input is required")
        rows = []
        for i, item in enumerate(inputs):
            where = f"{field}[{i}]"
            if isinstance(item, bool):
                raise InputError(f"{where}: booleans are not inputs")
            rows.append(self.decode_one(item, spec, where, limits))
        return torch.from_numpy(np.stack(rows).astype(np.float32))

    def warm(self, spec: dict[str, Any]) -> None:  # noqa: B027 - most codecs need nothing
        """Load what decoding needs (e.g. a text encoder) before the first request."""

    def batch_key(self, x: Tensor) -> tuple:
        """What must be equal for two requests' inputs to share one batched call."""
        return tuple(x.shape)


def as_array(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{where}: expected numbers in a regular nested list") from exc
    if arr.dtype == object:
        raise InputError(f"{where}: expected numbers in a regular nested list")
    if not np.isfinite(arr).all():
        raise InputError(f"{where}: NaN or infinite values are not allowed")
    if np.abs(arr).max(initial=0.0) > 3.0e38:
        raise InputError(f"{where}: values exceed the float32 range")
    return arr


def check_range(arr: np.ndarray, spec: dict[str, Any], where: str, what: str, hint: str = "") -> None:
    """Refuse values outside the range the meta-learner declares (it never saw them)."""
    low, high = spec.get("value_range") or [-math.inf, math.inf]
    if arr.size and (arr.min() < low or arr.max() > high):
        raise InputError(f"{where}: {what} must lie in [{low}, {high}], the range this "
                         f"meta-learner was trained on{hint}")


class VectorCodec(InputCodec):
    kind = "vector"

    def decode(self, inputs: list[Any], spec: dict[str, Any], field: str, limits: InputLimits) -> Tensor:
        """One numpy conversion for a well-formed list; anything else goes item by item, which
        names the first bad input precisely."""
        fast = self._decode_all(inputs, tuple(spec["shape"]), spec)
        return fast if fast is not None else super().decode(inputs, spec, field, limits)

    @staticmethod
    def _decode_all(inputs: list[Any], shape: tuple[int, ...], spec: dict[str, Any]) -> Tensor | None:
        if not inputs or len(shape) != 1:
            return None
        numbers = (int, float)  # exactly: bool is an int subclass, str is not a number
        for item in inputs:
            values = item if type(item) is list else (item,)
            if not all(type(v) in numbers for v in values):
                return None
        try:
            arr = np.asarray(inputs, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            return None
        if arr.ndim == 1 and shape == (1,):
            arr = arr[:, None]
        low, high = spec.get("value_range") or [-math.inf, math.inf]
        if (arr.shape != (len(inputs), *shape) or not np.isfinite(arr).all()
                or np.abs(arr).max(initial=0.0) > 3.0e38 or arr.min() < low or arr.max() > high):
            return None
        return torch.from_numpy(arr.astype(np.float32))

    def decode_one(self, item: Any, spec: dict[str, Any], where: str, limits: InputLimits) -> np.ndarray:
        shape = tuple(spec["shape"])
        if isinstance(item, str):
            raise InputError(f"{where}: this meta-learner takes numbers, not strings")
        arr = as_array([item] if isinstance(item, int | float) else item, where)
        if arr.shape != shape:
            raise InputError(f"{where}: expected a vector of shape {list(shape)}, got {list(arr.shape)}")
        check_range(arr, spec, where, "values")
        return arr


class ImageCodec(InputCodec):
    kind = "image"

    def decode_one(self, item: Any, spec: dict[str, Any], where: str, limits: InputLimits) -> np.ndarray:
        shape = tuple(spec["shape"])
        if isinstance(item, str):
            return self._decode_base64(item, where, limits)
        arr = as_array(item, where)
        if arr.shape == shape[1:]:
            arr = arr[None]
        if arr.shape != shape:
            raise InputError(
                f"{where}: expected an image of shape {list(shape)} (or {list(shape[1:])}) or a "
                f"base64 PNG/JPEG string, got shape {list(arr.shape)}")
        check_range(arr, spec, where, "pixel values", " (stroke = 1.0); send a PNG to have it preprocessed")
        return arr

    @staticmethod
    def _decode_base64(text: str, where: str, limits: InputLimits) -> np.ndarray:
        if text.startswith("data:"):
            _, _, text = text.partition(",")
        max_bytes = limits.max_image_bytes
        if len(text) > 4 * (max_bytes // 3 + 1):
            raise InputLimitExceeded(f"{where}: image larger than {max_bytes} bytes")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"{where}: not valid base64 ({exc})") from exc
        if len(data) > max_bytes:
            raise InputLimitExceeded(f"{where}: image of {len(data)} bytes exceeds {max_bytes}")
        try:
            image = decode_image(data, limits.max_image_pixels)
        except ImageTooLarge as exc:
            raise InputLimitExceeded(f"{where}: {exc}") from exc
        except (ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise InputError(f"{where}: cannot decode the image ({exc})") from exc
        return preprocess_image(image)


class TextCodec(InputCodec):
    """UTF-8 sentences, embedded by the meta-learner's pinned sentence encoder (``encoder``
    in the input spec), at most ``max_chars`` characters each."""

    kind = "text"

    def decode_one(self, item: Any, spec: dict[str, Any], where: str, limits: InputLimits) -> Any:
        if not isinstance(item, str):
            raise InputError(f"{where}: this meta-learner takes strings (sentences)")
        if not item.strip():
            raise InputError(f"{where}: empty or whitespace-only text")
        max_chars = int(spec.get("max_chars") or 1000)
        if len(item) > max_chars:
            raise InputLimitExceeded(f"{where}: text of {len(item)} characters exceeds {max_chars}")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{where}: not valid Unicode (a lone surrogate)") from None
        return item

    def warm(self, spec: dict[str, Any]) -> None:
        from app.meta.text_encoder import load_encoder

        load_encoder(spec["encoder"]).encode(["warm up"])

    def decode(self, inputs: list[Any], spec: dict[str, Any], field: str, limits: InputLimits) -> Tensor:
        if not inputs:
            raise InputError(f"{field}: at least one input is required")
        sentences = [self.decode_one(item, spec, f"{field}[{i}]", limits) for i, item in enumerate(inputs)]
        from app.meta.text_encoder import load_encoder

        return load_encoder(spec["encoder"]).encode(sentences)


CODECS: dict[str, InputCodec] = {c.kind: c for c in (VectorCodec(), ImageCodec(), TextCodec())}


def codec_for(kind: str) -> InputCodec:
    try:
        return CODECS[kind]
    except KeyError:
        raise ValueError(f"unknown input kind {kind!r}; known: {sorted(CODECS)}") from None
