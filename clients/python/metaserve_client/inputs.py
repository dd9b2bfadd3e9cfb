"""Python values -> the JSON inputs a meta-learner takes.

Lists and numbers pass through; numpy arrays become lists; file paths (``pathlib.Path``, or a
``str`` naming an existing file for an image learner) are sent as their bytes, base64 (a JPEG
stays the JPEG you have); PIL images become base64 PNG (grey, palette, transparency, or up to
256x256) or JPEG at quality 95 (larger RGB/CMYK photos, which would be several MB as PNG);
other strings pass through (text learners, or base64 you encoded yourself).
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any


def encode_input(value: Any, kind: str) -> Any:
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy array / scalar
        return value.tolist()
    if isinstance(value, os.PathLike) or (kind == "image" and isinstance(value, str) and _is_file(value)):
        return base64.b64encode(Path(value).read_bytes()).decode()
    if _is_pil_image(value):
        buf = io.BytesIO()
        photo = value.mode in ("RGB", "CMYK") and value.width * value.height > 256 * 256
        value.save(buf, format="JPEG", quality=95) if photo else value.save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def encode_inputs(values: Any, kind: str) -> list[Any]:
    if hasattr(values, "tolist") and not isinstance(values, list):
        values = list(values)
    return [encode_input(v, kind) for v in values]


def encode_targets(values: Any) -> list[Any]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [v.item() if hasattr(v, "item") else v for v in values]


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and Path(text).is_file()
    except (OSError, ValueError):
        return False


def _is_pil_image(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(value, Image.Image)
