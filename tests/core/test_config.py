"""Thread counts derived from the cores this process may use."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import config
from app.core.config import Settings, available_cores


@pytest.fixture
def cores(monkeypatch):
    def set_cores(n: int) -> None:
        monkeypatch.setattr(config, "available_cores", lambda: n)
    return set_cores


def test_job_threads_in_a_serving_process_default_to_the_request_pools_count(cores):
    cores(8)
    settings = Settings(workers=2, job_threads=1)
    assert settings.resolved_torch_threads == 4
    assert settings.resolved_job_torch_threads(only_jobs=False) == 4


def test_job_threads_in_a_worker_process_share_every_core(cores):
    cores(8)
    assert Settings(workers=2, job_threads=1).resolved_job_torch_threads(only_jobs=True) == 8
    assert Settings(workers=2, job_threads=3).resolved_job_torch_threads(only_jobs=True) == 2
    assert Settings(job_threads=16).resolved_job_torch_threads(only_jobs=True) == 1


def test_a_set_job_thread_count_wins(cores):
    cores(8)
    settings = Settings(job_torch_threads=3)
    assert settings.resolved_job_torch_threads(only_jobs=True) == 3
    assert settings.resolved_job_torch_threads(only_jobs=False) == 3


def test_a_containers_cpu_quota_bounds_the_cores(monkeypatch, tmp_path):
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda _pid: set(range(64)))
    quota = tmp_path / "cpu.max"
    real_path = Path

    def path(p: str | Path) -> Path:
        return quota if str(p) == "/sys/fs/cgroup/cpu.max" else real_path(p)

    monkeypatch.setattr(config, "Path", path)
    quota.write_text("150000 100000\n")  # 1.5 CPUs: two threads
    assert available_cores() == 2
    quota.write_text("max 100000\n")
    assert available_cores() == 64
    quota.unlink()  # no cgroup v2 file: the affinity mask alone
    assert available_cores() == 64
