"""A team's labelled examples: a folder with one subfolder of photos per class, or a CSV /
JSONL file of ``text,label`` rows.

Nothing unreadable is fatal: a photo that does not decode or a row without a text or a label is
listed (where, why) and left out; classes with too few examples are reported and skipped by
:func:`class_pools`. The fingerprint is the sha256 of what was read (photos: each relative path
and the sha256 of its bytes, in sorted order; text: the file's bytes).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

TEXT_SUFFIXES = {".csv", ".jsonl"}


class DataError(ValueError):
    """Data that cannot be meta-trained on at all (no such folder, no readable example...)."""


@dataclass
class LabelledData:
    """Examples (photo paths or sentences) with their class labels, before embedding."""

    kind: str  # "photos" or "text"
    source: Path
    items: list  # Path (photos) or str (text)
    labels: list[str]
    fingerprint: str
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> Counter:
        return Counter(self.labels)


def read_labelled(source: Path) -> LabelledData:
    """Photos from a class-folder tree, or sentences from a ``.csv`` / ``.jsonl`` file."""
    source = Path(source)
    if source.is_dir():
        return _read_photo_folder(source)
    if source.is_file():
        if source.suffix.lower() not in TEXT_SUFFIXES:
            raise DataError(f"{source.name}: expected a folder of class subfolders of photos, "
                            f"or a .csv or .jsonl file of text,label rows")
        return _read_text_file(source)
    raise DataError(f"{source} does not exist")


def _read_photo_folder(root: Path) -> LabelledData:
    from metaserve_train.tasks.photos import scan_photo_folder

    try:
        folder = scan_photo_folder(root)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    return LabelledData("photos", root, list(folder.files), list(folder.labels), folder.sha256)


def _read_text_file(path: Path) -> LabelledData:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path.name} is not UTF-8 text: {exc}") from exc
    rows = _csv_rows(text, path.name) if path.suffix.lower() == ".csv" else _jsonl_rows(text)
    items, labels, unreadable = [], [], []
    for where, row in rows:
        if isinstance(row, str):  # a problem with the row itself
            unreadable.append((where, row))
            continue
        sentence, label = row.get("text"), row.get("label")
        if not isinstance(sentence, str) or not sentence.strip():
            unreadable.append((where, "no text"))
        elif label is None or (isinstance(label, str) and not label.strip()) or isinstance(label, dict | list):
            unreadable.append((where, "no label"))
        else:
            items.append(sentence.strip())
            labels.append(str(label).strip())
    if not items:
        raise DataError(f"{path.name}: no row with both a text and a label")
    return LabelledData("text", path, items, labels, hashlib.sha256(data).hexdigest(), unreadable)


def _csv_rows(text: str, name: str) -> list[tuple[str, dict | str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or not {"text", "label"} <= {f.strip() for f in reader.fieldnames}:
        raise DataError(f"{name}: the first line must name the columns text and label "
                        f"(found {reader.fieldnames})")
    rows = []
    for row in reader:
        where = f"line {reader.line_num}"
        if None in row:
            rows.append((where, "more fields than the header"))
        else:
            rows.append((where, {k.strip(): v for k, v in row.items()}))
    return rows


def _jsonl_rows(text: str) -> list[tuple[str, dict | str]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append((f"line {number}", f"not JSON: {exc.msg}"))
            continue
        rows.append((f"line {number}", value if isinstance(value, dict) else "not a JSON object"))
    return rows


def class_pools(embeddings: Tensor, labels: list[str],
                min_examples: int) -> tuple[dict[str, Tensor], dict[str, int]]:
    """Each class's rows of ``embeddings`` (classes in sorted order), and the classes skipped
    for having fewer than ``min_examples`` examples (with their counts)."""
    index: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        index.setdefault(label, []).append(i)
    pools = {c: embeddings[torch.tensor(rows)] for c, rows in sorted(index.items()) if len(rows) >= min_examples}
    skipped = {c: len(rows) for c, rows in sorted(index.items()) if len(rows) < min_examples}
    return pools, skipped
