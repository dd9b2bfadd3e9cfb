"""The one photo preprocessing: orientation, colour modes, resize + crop, and every refusal."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.meta.photo_preprocess import (
    PhotoError,
    PhotoTooLarge,
    decode_photo,
    photo_pixels,
    preprocess_photo,
)

SIZE, LIMIT = 224, 4096 * 4096


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def halves(width: int = 60, height: int = 30) -> Image.Image:
    """Left half red, right half blue."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2, 0] = 255
    arr[:, width // 2 :, 2] = 255
    return Image.fromarray(arr)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90 degrees clockwise
    image = decode_photo(encode(halves(), exif=exif), SIZE, LIMIT)
    assert image.size == (30, 60)
    arr = np.asarray(image)
    assert arr[5, 15, 0] > 200 and arr[5, 15, 2] < 60  # red now on top
    assert arr[55, 15, 2] > 200 and arr[55, 15, 0] < 60  # blue below


@pytest.mark.parametrize("mode, fmt, extra", [
    ("L", "PNG", {}), ("LA", "PNG", {}), ("RGBA", "PNG", {}), ("P", "PNG", {}), ("CMYK", "JPEG", {}),
    ("I;16", "PNG", {}), ("1", "PNG", {}), ("RGB", "WEBP", {"quality": 90}), ("RGBA", "WEBP", {}),
])
def test_every_colour_mode_becomes_rgb(mode, fmt, extra):
    image = Image.new(mode, (40, 30))
    image = decode_photo(encode(image, fmt, **extra), SIZE, LIMIT)
    assert image.mode == "RGB" and image.size == (40, 30)
    assert preprocess_photo(encode(Image.new(mode, (40, 30)), fmt, **extra), SIZE, LIMIT).shape == (3, SIZE, SIZE)


def test_transparency_is_composited_on_white():
    clear = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    assert np.asarray(decode_photo(encode(clear, "PNG"), SIZE, LIMIT)).min() == 255
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([255, 0, 0] * 256)
    assert np.asarray(decode_photo(encode(palette, "PNG", transparency=0), SIZE, LIMIT)).min() == 255


def test_resize_and_centre_crop():
    """Shorter side to 256, centre 224x224 crop, scaled to [-1, 1]: a wide photo keeps its middle."""
    arr = np.zeros((300, 900, 3), np.uint8)
    arr[:, 300:600] = 255  # a white band in the middle third
    pixels = photo_pixels(Image.fromarray(arr), SIZE)
    assert pixels.shape == (3, SIZE, SIZE) and pixels.dtype == np.float32
    assert pixels.min() >= -1.0 and pixels.max() <= 1.0
    # the band spans 256/300 * 300 = 256 pixels around the centre of the 768-wide resized photo,
    # wider than the crop: the whole crop is white
    assert pixels.min() > 0.99


def test_large_jpeg_is_decoded_at_a_reduced_scale_to_the_same_size():
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (2048, 3072, 3), np.uint8))
    image = decode_photo(encode(big, quality=80), SIZE, LIMIT)
    assert min(image.size) >= 256 and image.size[0] < 3072
    assert preprocess_photo(encode(big, quality=80), SIZE, LIMIT).shape == (3, SIZE, SIZE)


def test_the_same_bytes_give_the_same_pixels():
    data = encode(halves(400, 300))
    assert np.array_equal(preprocess_photo(data, SIZE, LIMIT), preprocess_photo(data, SIZE, LIMIT))


@pytest.mark.parametrize("data, error, contains", [
    (b"", PhotoError, "not a JPEG"),
    (b"hello, not an image", PhotoError, "not a JPEG"),
    (encode(Image.new("RGB", (20, 20)), "GIF"), PhotoError, "unsupported image format 'GIF'"),
    (encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 300, 3), np.uint8)))[:4000],
     PhotoError, "cannot decode"),
    (encode(Image.new("RGB", (15, 40)), "PNG"), PhotoError, "15x40"),
    (encode(Image.new("L", (4097, 16)), "PNG"), PhotoError, "4097x16"),
    (encode(Image.new("L", (5000, 5000)), "PNG"), PhotoTooLarge, "exceeds the limit"),
])
def test_refusals(data, error, contains):
    with pytest.raises(error, match=contains):
        preprocess_photo(data, SIZE, LIMIT)


def test_pixel_limit_is_checked_before_decoding():
    data = encode(Image.new("RGB", (300, 300)), "PNG")
    with pytest.raises(PhotoTooLarge, match="300x300 pixels exceeds the limit of 1000"):
        preprocess_photo(data, SIZE, 1000)
