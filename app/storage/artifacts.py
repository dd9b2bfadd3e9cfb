"""Content-addressed storage of adapted states.

An artifact's key is the sha256 of its bytes, so artifacts are immutable and identical states
are stored once. :class:`ArtifactStore` is the small interface the service uses; the local
filesystem implementation writes atomically (temp file, fsync, rename, fsync of the folder).
An S3-compatible store implements the same three methods.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load, save
from torch import Tensor

from app.atomic_io import atomic_write_bytes


class ArtifactMissing(Exception):
    pass


class ArtifactCorrupted(Exception):
    pass


class ArtifactStoreUnavailable(Exception):
    """The store did not answer (network, 5xx after retries): try again later."""


class ArtifactStore(Protocol):
    def put(self, data: bytes) -> str: ...
    def get(self, sha256: str) -> bytes: ...
    def delete(self, sha256: str) -> None: ...
    def exists(self, sha256: str) -> bool: ...
    def age_seconds(self, sha256: str) -> float: ...
    def keys(self) -> Iterator[str]: ...
    def remove_stale_temporaries(self, older_than_seconds: float) -> int: ...
    def identity(self) -> str: ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# safetensors' names of the dtypes adapted states hold, and the order in which its writer lays
# tensors out (rank, then name); other dtypes go through safetensors itself
_LAYOUT = {torch.int64: ("I64", 0), torch.float64: ("F64", 1), torch.float32: ("F32", 2),
           torch.int32: ("I32", 3), torch.float16: ("F16", 5), torch.int16: ("I16", 6),
           torch.int8: ("I8", 7), torch.uint8: ("U8", 8), torch.bool: ("BOOL", 9)}


def encode_state(state: dict[str, Tensor]) -> bytes:
    """safetensors bytes of a state (deterministic for equal tensors), byte for byte what
    ``safetensors.torch.save`` writes (a test holds them equal) without its per-tensor Python
    work: a small state is encoded several times faster."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if any(v.dtype not in _LAYOUT for v in tensors.values()):
        return save(tensors)
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors, key=lambda k: (_LAYOUT[tensors[k].dtype][1], k)):
        tensor = tensors[name]
        blob = tensor.numpy().tobytes()
        header[name] = {"dtype": _LAYOUT[tensor.dtype][0], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def decode_state(data: bytes) -> dict[str, Tensor]:
    return load(data)


IDENTITY_FILE = "STORE_ID"


class LocalArtifactStore:
    """``<root>/<sha[:2]>/<sha>.safetensors`` on a local (or shared) filesystem, and
    ``<root>/STORE_ID``: this store's identity, written once at first use."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("artifact keys are lowercase sha256 hex digests")
        return self.root / sha256[:2] / f"{sha256}.safetensors"

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        target = self.path(sha)
        if target.exists():
            os.utime(target)  # young again: garbage collection spares it for the grace period
            return sha
        atomic_write_bytes(target, data)
        return sha

    def get(self, sha256: str) -> bytes:
        try:
            data = self.path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactMissing(sha256) from exc
        if sha256_hex(data) != sha256:
            raise ArtifactCorrupted(sha256)
        return data

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        for p in self.root.glob("*/*.safetensors"):
            yield p.stem

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def age_seconds(self, sha256: str) -> float:
        return time.time() - self.path(sha256).stat().st_mtime

    def identity(self) -> str:
        """This store's identity: created once (exclusively, even with several processes
        starting together), then read. The database records which store it belongs to."""
        marker = self.root / IDENTITY_FILE
        for _ in range(2):
            try:
                text = marker.read_text().strip()
                if len(text) == 32:
                    return text
            except FileNotFoundError:
                pass
            tmp = self.root / f".{IDENTITY_FILE}.{uuid.uuid4().hex}.tmp"
            atomic_write_bytes(tmp, uuid.uuid4().hex.encode())
            try:
                os.link(tmp, marker)  # fails if another process made it first
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return marker.read_text().strip()

    def remove_stale_temporaries(self, older_than_seconds: float) -> int:
        """Delete half-written temp files left by a crash."""
        removed = 0
        for tmp in self.root.glob("*/.*.tmp"):
            try:
                age = time.time() - tmp.stat().st_mtime
            except FileNotFoundError:  # a write in progress renamed it since the listing
                continue
            if age >= older_than_seconds:
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed
