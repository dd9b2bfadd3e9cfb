"""Input codecs: JSON inputs -> tensors in a meta-learner's own shape, keyed by input kind.

``vector`` learners take a list of numbers per input (or a bare number when the vector has
one element). ``image`` learners take nested lists in the model's shape (``[1, 28, 28]`` or
``[28, 28]``, values in the model's range) or a base64 PNG/JPEG string of any size in the
dataset's native form, which goes through :func:`app.meta.preprocess.preprocess_image`.
``photo`` is the codec of image learners over a pinned ImageNet backbone (``input.kind =
"image"``, ``input.codec = "photo"``): base64 JPEG/PNG/WebP photographs, preprocessed by
:mod:`app.meta.photo_preprocess` and embedded once per distinct image (an LRU cache).
``text`` learners take sentences (``app.meta.text_codecs``).
A new kind of input is one class registered in ``app.meta.codec_registry.CODECS`` (named by
``input.codec``, else ``input.kind``).
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

from app.meta.embedding_cache import EmbeddingCache
from app.meta.input_spec import InputSpec
from app.meta.preprocess import ImageTooLarge, decode_image, preprocess_image


class InputError(ValueError):
    """An input that cannot be decoded for this meta-learner."""


class InputLimitExceeded(ValueError):
    """An input over a size limit (bytes, pixels)."""


@dataclass(frozen=True)
class InputLimits:
    max_image_bytes: int = 4 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    embedding_cache_bytes: int = 64 * 1024 * 1024  # photo / sentence embeddings kept per process and kind
    device: str = "cpu"  # where encoders that decoding runs (the photo backbone) compute
    reuse_embeddings: bool = True  # False: every input embedded afresh in this call's batch


class InputCodec(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def decode_one(self, item: Any, spec: InputSpec, where: str, limits: InputLimits) -> np.ndarray:
        """One JSON input -> an array of the spec's shape."""

    def decode(self, inputs: list[Any], spec: InputSpec, field: str, limits: InputLimits) -> Tensor:
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

    def label_inputs(self, labels: list[Any], spec: InputSpec) -> list[Any] | None:
        """The class labels as inputs of this kind, for learners that read label names (row k:
        label k), or None where labels say nothing in this kind (the default)."""
        return None

    def warm(self, spec: InputSpec) -> None:  # noqa: B027 - most codecs need nothing
        """Load what decoding needs (e.g. a text encoder) before the first request."""

    def check_spec(self, spec: InputSpec) -> None:  # noqa: B027 - most codecs need nothing
        """Refuse a manifest's input spec this codec cannot serve (``ValueError``)."""

    def model_shape(self, spec: InputSpec) -> tuple[int, ...]:
        """The shape of one decoded input as the meta-learner receives it."""
        return tuple(spec.shape)

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


def check_range(arr: np.ndarray, spec: InputSpec, where: str, what: str, hint: str = "") -> None:
    """Refuse values outside the range the meta-learner declares (it never saw them)."""
    low, high = spec.value_range or [-math.inf, math.inf]
    if arr.size and (arr.min() < low or arr.max() > high):
        raise InputError(f"{where}: {what} must lie in [{low}, {high}], the range this "
                         f"meta-learner was trained on{hint}")


class VectorCodec(InputCodec):
    kind = "vector"

    def decode(self, inputs: list[Any], spec: InputSpec, field: str, limits: InputLimits) -> Tensor:
        """One numpy conversion for a well-formed list; anything else goes item by item, which
        names the first bad input precisely."""
        fast = self._decode_all(inputs, tuple(spec.shape), spec)
        return fast if fast is not None else super().decode(inputs, spec, field, limits)

    @staticmethod
    def _decode_all(inputs: list[Any], shape: tuple[int, ...], spec: InputSpec) -> Tensor | None:
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
        low, high = spec.value_range or [-math.inf, math.inf]
        if (arr.shape != (len(inputs), *shape) or not np.isfinite(arr).all()
                or np.abs(arr).max(initial=0.0) > 3.0e38 or arr.min() < low or arr.max() > high):
            return None
        return torch.from_numpy(arr.astype(np.float32))

    def decode_one(self, item: Any, spec: InputSpec, where: str, limits: InputLimits) -> np.ndarray:
        shape = tuple(spec.shape)
        if isinstance(item, str):
            raise InputError(f"{where}: this meta-learner takes numbers, not strings")
        arr = as_array([item] if isinstance(item, int | float) else item, where)
        if arr.shape != shape:
            raise InputError(f"{where}: expected a vector of shape {list(shape)}, got {list(arr.shape)}")
        check_range(arr, spec, where, "values")
        return arr


class ImageCodec(InputCodec):
    kind = "image"

    def decode_one(self, item: Any, spec: InputSpec, where: str, limits: InputLimits) -> np.ndarray:
        shape = tuple(spec.shape)
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
        data = image_bytes(text, where, limits)
        try:
            image = decode_image(data, limits.max_image_pixels)
        except ImageTooLarge as exc:
            raise InputLimitExceeded(f"{where}: {exc}") from exc
        except (ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise InputError(f"{where}: cannot decode the image ({exc})") from exc
        return preprocess_image(image)


def image_bytes(text: str, where: str, limits: InputLimits) -> bytes:
    """The bytes of a base64 image (a ``data:`` URL prefix allowed), within the byte limit."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    max_bytes = limits.max_image_bytes
    if len(text) > 4 * (max_bytes // 3 + 1):
        raise InputLimitExceeded(f"{where}: image larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{where}: not valid base64 ({exc})") from exc
    if not data:
        raise InputError(f"{where}: empty image")
    if len(data) > max_bytes:
        raise InputLimitExceeded(f"{where}: image of {len(data)} bytes exceeds {max_bytes}")
    return data


class PhotoCodec(InputCodec):
    """Photographs for learners over a pinned ImageNet backbone (``input.backbone``): base64
    JPEG/PNG/WebP strings, or nested lists ``[3, S, S]`` already preprocessed (values in
    [-1, 1]). The learner receives the backbone's embeddings ``[n, dim]``; the same image bytes
    are embedded once per process (least recently used dropped beyond the cache's bytes)."""

    kind = "photo"

    def __init__(self) -> None:
        self.cache = EmbeddingCache(InputLimits().embedding_cache_bytes)

    def check_spec(self, spec: InputSpec) -> None:
        from app.meta.image_backbone import IMAGE_BACKBONES

        backbone = IMAGE_BACKBONES.get(spec.backbone or "")
        if backbone is None:
            raise ValueError(f"photo inputs need a backbone, one of {sorted(IMAGE_BACKBONES)}")
        if list(spec.shape) != [3, backbone.image_size, backbone.image_size]:
            raise ValueError(f"photo inputs of {backbone.name} have shape "
                             f"[3, {backbone.image_size}, {backbone.image_size}]")

    def model_shape(self, spec: InputSpec) -> tuple[int, ...]:
        from app.meta.image_backbone import backbone_spec

        return (backbone_spec(spec.backbone).dim,)

    def warm(self, spec: InputSpec) -> None:
        from app.meta.image_backbone import load_image_backbone

        backbone = load_image_backbone(spec.backbone)
        backbone.embed(torch.zeros(1, 3, backbone.image_size, backbone.image_size))

    def decode_one(self, item: Any, spec: InputSpec, where: str, limits: InputLimits) -> np.ndarray:
        """One photo -> its preprocessed pixels ``[3, S, S]``."""
        if isinstance(item, str):
            return self.preprocess(image_bytes(item, where, limits), spec, where, limits)
        if item is None or isinstance(item, int | float):  # bool is an int
            raise InputError(f"{where}: expected a base64 JPEG/PNG/WebP string")
        shape = tuple(spec.shape)
        arr = as_array(item, where)
        if arr.shape != shape:
            raise InputError(f"{where}: expected a base64 JPEG/PNG/WebP string or preprocessed "
                             f"pixels of shape {list(shape)}, got shape {list(arr.shape)}")
        if arr.size and (arr.min() < -1.0 or arr.max() > 1.0):
            raise InputError(f"{where}: preprocessed pixels must lie in [-1, 1] (send the photo "
                             "itself as base64 to have it preprocessed)")
        return arr.astype(np.float32)

    @staticmethod
    def preprocess(data: bytes, spec: InputSpec, where: str, limits: InputLimits) -> np.ndarray:
        """Photo bytes -> pixels ``[3, S, S]`` (S from the spec's shape), refusals named ``where``."""
        from app.meta.photo_preprocess import PhotoError, PhotoTooLarge, preprocess_photo

        try:
            return preprocess_photo(data, int(spec.shape[-1]), limits.max_image_pixels)
        except PhotoTooLarge as exc:
            raise InputLimitExceeded(f"{where}: {exc}") from exc
        except PhotoError as exc:
            raise InputError(f"{where}: {exc}") from exc

    def decode(self, inputs: list[Any], spec: InputSpec, field: str, limits: InputLimits) -> Tensor:
        from app.meta.image_backbone import load_image_backbone

        if not inputs:
            raise InputError(f"{field}: at least one input is required")
        if self.cache.max_bytes != limits.embedding_cache_bytes:
            self.cache = EmbeddingCache(limits.embedding_cache_bytes)
        backbone = load_image_backbone(spec.backbone).on(limits.device)
        # photo bytes are keyed by their sha256; preprocessed pixels are embedded, never cached
        data = [image_bytes(item, f"{field}[{i}]", limits) if isinstance(item, str) else None
                for i, item in enumerate(inputs)]
        keys = [None if d is None else self.cache.key(backbone.spec.name, d) for d in data]

        def pixels(i: int) -> np.ndarray:
            where = f"{field}[{i}]"
            if data[i] is None:
                return self.decode_one(inputs[i], spec, where, limits)
            return self.preprocess(data[i], spec, where, limits)

        return self.cache.embed(keys, lambda rows: backbone.embed(
            torch.from_numpy(np.stack([pixels(i) for i in rows]))), read=limits.reuse_embeddings)


class PhotoPixelCodec(PhotoCodec):
    """The photo codec for learners that run the backbone themselves (per-task fine-tuning of
    its last stage): they receive the preprocessed pixels ``[n, 3, S, S]``, not embeddings."""

    kind = "photo-pixels"

    def model_shape(self, spec: InputSpec) -> tuple[int, ...]:
        return tuple(spec.shape)

    def warm(self, spec: InputSpec) -> None:
        """Nothing to embed: the learner loads the backbone it fine-tunes."""

    def decode(self, inputs: list[Any], spec: InputSpec, field: str, limits: InputLimits) -> Tensor:
        if not inputs:
            raise InputError(f"{field}: at least one input is required")
        rows = [self.decode_one(item, spec, f"{field}[{i}]", limits) for i, item in enumerate(inputs)]
        return torch.from_numpy(np.stack(rows).astype(np.float32))
