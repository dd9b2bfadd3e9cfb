"""Atomic, durable file writes (temp file, fsync, rename, fsync of the folder).

Shared by checkpoints and manifests (``app.meta``) and by the artifact store: a reader sees
either nothing or the whole file, and after a crash the file is either there whole or absent.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def fsync_directory(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    if not path.parent.is_dir():
        missing = [p for p in (path.parent, *path.parent.parents) if not p.is_dir()]
        path.parent.mkdir(parents=True, exist_ok=True)
        # new folders' own entries must be durable too, or a power loss can take a folder,
        # and the file in it, away after the write was acknowledged
        for folder in missing:
            fsync_directory(folder.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    fsync_directory(path.parent)
