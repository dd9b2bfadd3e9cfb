"""Tiny labelled data sets for meta-training tests: a folder of synthetic photos and a CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTO_CLASSES = 8
PHOTOS_PER_CLASS = 6


def synthetic_photo(label: int, index: int) -> bytes:
    """A 64x64 PNG: stripes whose angle, period and colour depend on the class, shifted and noisy
    per photo (so that classes are learnable but not identical photos)."""
    rng = np.random.default_rng(1000 * label + index)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    angle = np.pi * label / PHOTO_CLASSES
    period = 6 + 2 * (label % 4)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period + phase)
    colour = np.array([(label * 53) % 256, (label * 97) % 256, (label * 151) % 256], np.float32)
    pixels = 128 + 0.4 * wave[..., None] * colour[None, None] + rng.normal(0, 12, (64, 64, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """8 classes of 6 photos, a class of 2 (skipped at --min-examples 5), a file that is not an
    image, and a hidden file (ignored)."""
    root = tmp_path_factory.mktemp("photos") / "parts"
    for label in range(PHOTO_CLASSES):
        folder = root / f"class-{label}"
        folder.mkdir(parents=True)
        for index in range(PHOTOS_PER_CLASS):
            (folder / f"{index}.png").write_bytes(synthetic_photo(label, index))
    (root / "class-0" / "broken.jpg").write_bytes(b"this is not a photo")
    (root / "class-0" / ".DS_Store").write_bytes(b"\0\0")
    (root / "rare").mkdir()
    for index in range(2):
        (root / "rare" / f"{index}.png").write_bytes(synthetic_photo(3, 50 + index))
    return root


INTENTS = {
    "weather": ["will it rain {}", "what is the weather {}", "is it sunny {}", "how cold is it {}",
                "forecast for {}", "do I need an umbrella {}"],
    "alarm": ["wake me up {}", "set an alarm {}", "alarm for {}", "cancel my alarm {}",
              "snooze the alarm {}", "ring me {}"],
    "music": ["play some jazz {}", "put on a song {}", "play my playlist {}", "skip this track {}",
              "music please {}", "turn the music up {}"],
    "taxi": ["book a taxi {}", "get me a cab {}", "I need a ride {}", "call an uber {}",
             "order a car {}", "taxi to the airport {}"],
    "recipe": ["how do I cook pasta {}", "recipe for pancakes {}", "what can I bake {}",
               "how long to boil an egg {}", "ingredients for soup {}", "cook dinner ideas {}"],
    "balance": ["what is my balance {}", "how much money do I have {}", "check my account {}",
                "show my savings {}", "bank balance {}", "funds available {}"],
    "translate": ["translate hello {}", "how do you say thanks in french {}", "say this in german {}",
                  "translate this sentence {}", "what is cat in spanish {}", "translation please {}"],
    "timer": ["set a timer {}", "start a countdown {}", "timer for ten minutes {}", "stop the timer {}",
              "how long is left on the timer {}", "pause my timer {}"],
}
WHEN = ["today", "tomorrow", "tonight", "this morning", "now", "later"]


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    """8 intents of 6 sentences, an intent of 2 (skipped), and bad rows: no text, no label, a
    field too many."""
    path = tmp_path_factory.mktemp("text") / "tickets.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    for intent, templates in INTENTS.items():
        for i, template in enumerate(templates):
            writer.writerow([template.format(WHEN[i]), intent])
    writer.writerow(["tell me a joke", "joke"])
    writer.writerow(["another joke please", "joke"])
    writer.writerow(["", "weather"])
    writer.writerow(["a sentence without a label", ""])
    buffer.write("too,many,fields\n")
    path.write_text(buffer.getvalue())
    return path
