"""glibc allocator thresholds (``METASERVE_MALLOC_TRIM_THRESHOLD_BYTES``)."""

from __future__ import annotations

import platform

import pytest

from app.core.config import Settings
from app.core.metrics import Metrics
from app.engine import allocator, build
from tests.conftest import REPO


class FakeMallopt:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def __call__(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return self.answer


def test_thresholds_are_set_with_the_mmap_threshold_capped_at_glibcs_maximum(monkeypatch):
    fake = FakeMallopt()
    monkeypatch.setattr(allocator, "_mallopt", lambda: fake)
    assert allocator.keep_freed_memory(128 * 2**20)
    assert fake.calls == [(allocator.M_MMAP_THRESHOLD, 32 * 2**20), (allocator.M_TRIM_THRESHOLD, 128 * 2**20)]
    fake.calls.clear()
    assert allocator.keep_freed_memory(8 * 2**20)
    assert fake.calls == [(allocator.M_MMAP_THRESHOLD, 8 * 2**20), (allocator.M_TRIM_THRESHOLD, 8 * 2**20)]


def test_zero_leaves_the_allocator_alone_and_refusals_are_reported(monkeypatch, caplog):
    fake = FakeMallopt(answer=0)
    monkeypatch.setattr(allocator, "_mallopt", lambda: fake)
    assert not allocator.keep_freed_memory(0)
    assert fake.calls == []
    assert not allocator.keep_freed_memory(2**20)  # glibc answered 0: refused
    assert "refused" in caplog.text
    monkeypatch.setattr(allocator, "_mallopt", lambda: None)  # not glibc
    assert not allocator.keep_freed_memory(2**20)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc only")
def test_glibc_takes_the_default_setting():
    assert allocator.keep_freed_memory(Settings().malloc_trim_threshold_bytes)


def test_the_engine_applies_the_setting_before_loading_learners(tmp_path, monkeypatch):
    seen: list[int] = []
    monkeypatch.setattr(build, "keep_freed_memory", seen.append)
    loaded = []
    real_load = build.load_registry
    monkeypatch.setattr(build, "load_registry", lambda *a, **k: loaded.append(list(seen)) or real_load(*a, **k))
    settings = Settings(data_dir=tmp_path, models_dir=REPO / "models", malloc_trim_threshold_bytes=12345)
    engine = build.build_engine(settings, Metrics())
    build.shutdown_engine(engine)
    assert seen == [12345] and loaded == [[12345]]


def test_the_setting_is_bounded():
    with pytest.raises(ValueError):
        Settings(malloc_trim_threshold_bytes=-1)
    with pytest.raises(ValueError):
        Settings(malloc_trim_threshold_bytes=2**31)
