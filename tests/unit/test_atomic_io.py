"""Atomic, durable writes: whole or absent, and every new folder's entry synced."""

from __future__ import annotations

import os

from app import atomic_io
from app.atomic_io import atomic_write_bytes


def test_new_folders_entries_are_synced_with_the_file(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(atomic_io.os, "fsync", record)
    target = tmp_path / "ab" / "cd" / "x.bin"
    atomic_write_bytes(target, b"data")
    assert target.read_bytes() == b"data"
    # the file, its folder (the rename), and the entries of the two new folders
    folders = [p for p in synced if not p.endswith(".tmp")]
    assert len(synced) - len(folders) == 1
    assert sorted(folders) == sorted([str(target.parent), str(tmp_path / "ab"), str(tmp_path)])
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    synced.clear()
    atomic_write_bytes(target.with_name("y.bin"), b"more")  # folders exist: file + folder only
    assert [p for p in synced if not p.endswith(".tmp")] == [str(target.parent)]
