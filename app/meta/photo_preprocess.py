"""The one photo preprocessing used by training, evaluation and the service.

A photo (JPEG, PNG or WebP bytes, 16x16 to 4096x4096 pixels) is decoded with its EXIF
orientation applied, converted to RGB (grey, palette, CMYK and 16-bit images converted;
transparency composited on white), resized so that its shorter side is ``size / 0.875``
(bilinear, antialiased) and centre-cropped to ``size x size`` — the ImageNet evaluation
transform of the backbone. Pixels become float32 ``[3, size, size]`` in ``[-1, 1]``
(mean = std = 0.5 per channel), as the EfficientNet-Lite weights expect.

Large JPEGs are decoded at a reduced scale (``Image.draft``: 1/2, 1/4 or 1/8, never below
the resize target), which is what makes a 4096x4096 photo cheap; the same function runs
everywhere, so training, evaluation and serving see identical pixels.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

PHOTO_FORMATS = ("JPEG", "PNG", "WEBP")
MIN_SIDE, MAX_SIDE = 16, 4096
CROP_FRACTION = 0.875


def photo_preprocessing(size: int) -> str:
    """What a user should know about how a photo is seen (the meta-learner's description)."""
    return (f"JPEG, PNG or WebP photo of {MIN_SIDE}x{MIN_SIDE} to {MAX_SIDE}x{MAX_SIDE} pixels, "
            "any colour mode; EXIF orientation applied, converted to RGB (transparency on white), "
            f"shorter side resized to {round(size / CROP_FRACTION)} and centre-cropped to "
            f"{size}x{size}, scaled to [-1, 1]. Keep the object centred and filling most of the frame: "
            "the border outside the central square is cut off.")


class PhotoTooLarge(ValueError):
    """A photo over the pixel limit (checked from its header, before its pixels are decoded)."""


class PhotoError(ValueError):
    """Bytes that are not a photo this service reads (format, truncation, size)."""


def decode_photo(data: bytes, size: int, max_pixels: int) -> Image.Image:
    """Decode and orient photo bytes into an RGB image at least ``size / 0.875`` on its shorter
    side (or its own size when smaller); every refusal is a :class:`PhotoError` or
    :class:`PhotoTooLarge` with a reason a client can act on."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoTooLarge(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bytes that are not images
        raise PhotoError(f"not a JPEG, PNG or WebP image ({exc.__class__.__name__})") from exc
    if image.format not in PHOTO_FORMATS:
        raise PhotoError(f"unsupported image format {image.format!r}; send JPEG, PNG or WebP")
    width, height = image.size
    if width * height > max_pixels:
        raise PhotoTooLarge(f"image of {width}x{height} pixels exceeds the limit of {max_pixels}")
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise PhotoError(f"image of {width}x{height} pixels; each side must lie in "
                         f"[{MIN_SIDE}, {MAX_SIDE}]")
    target = round(size / CROP_FRACTION)
    try:
        if image.format == "JPEG":
            scale = min(width, height) / target
            if scale >= 2:  # decode at 1/2, 1/4 or 1/8 scale, never below the target
                image.draft("RGB", (width / scale, height / scale))
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoTooLarge(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data surfaces as many types
        raise PhotoError(f"cannot decode the image ({exc.__class__.__name__}: {exc})") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited on white, high bit depths rescaled."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(image, dtype=np.float64)
        low, high = float(arr.min()), float(arr.max())
        arr = (arr - low) / (high - low) * 255.0 if high > low else np.zeros_like(arr)
        image = Image.fromarray(arr.astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def photo_pixels(image: Image.Image, size: int) -> np.ndarray:
    """An RGB image -> float32 ``[3, size, size]`` in [-1, 1]: shorter side resized to
    ``size / 0.875``, centre crop, (x - 0.5) / 0.5."""
    image = to_rgb(image)
    target = round(size / CROP_FRACTION)
    width, height = image.size
    scale = target / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    if new != image.size:
        image = image.resize(new, Image.Resampling.BILINEAR)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return ((pixels - 0.5) / 0.5).transpose(2, 0, 1).copy()


def augmented_view(image: Image.Image, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random view of an RGB photo for training and per-task fine-tuning: a crop of 35-100% of
    the area (aspect 3/4-4/3), a mirror image half of the time, brightness, contrast and
    saturation each scaled by 0.7-1.3; then :func:`photo_pixels`."""
    from PIL import ImageEnhance

    width, height = image.size
    for _ in range(10):
        area = width * height * rng.uniform(0.35, 1.0)
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        w, h = round((area * aspect) ** 0.5), round((area / aspect) ** 0.5)
        if w <= width and h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            image = image.crop((left, top, left + w, top + h))
            break
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhance(image).enhance(float(rng.uniform(0.7, 1.3)))
    return photo_pixels(image, size)


def preprocess_photo(data: bytes, size: int, max_pixels: int) -> np.ndarray:
    """Photo bytes -> the backbone's input ``[3, size, size]`` (see the module docstring)."""
    return photo_pixels(decode_photo(data, size, max_pixels), size)
