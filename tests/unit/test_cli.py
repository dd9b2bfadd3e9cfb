"""The ``metaserve`` command's service sub-commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from app.cli import build_parser
from tests.conftest import REPO


def metaserve(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=120)


def test_serve_takes_host_and_port_flags():
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "9001"])
    assert (args.host, args.port) == ("0.0.0.0", 9001)


def test_keys_create_on_a_fresh_data_directory_says_to_migrate(tmp_path):
    r = metaserve("keys", "create", "--tenant", "t", env={"METASERVE_DATA_DIR": str(tmp_path / "var"),
                                                            "METASERVE_DATABASE_URL": ""})
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert "metaserve db upgrade" in r.stdout
    (tmp_path / "var").mkdir()  # the folder exists, the database has no tables
    r = metaserve("keys", "list", env={"METASERVE_DATA_DIR": str(tmp_path / "var")})
    assert r.returncode == 2 and "no tables yet" in r.stdout and "Traceback" not in r.stderr
    assert metaserve("db", "upgrade", env={"METASERVE_DATA_DIR": str(tmp_path / "var")}).returncode == 0
    made = metaserve("keys", "create", "--tenant", "t", env={"METASERVE_DATA_DIR": str(tmp_path / "var")})
    assert made.returncode == 0 and "key (shown once): ms_" in made.stdout


def test_meta_learners_list_names_versions_and_metrics():
    r = metaserve("meta-learners", "list")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and rows
    for row in rows:
        assert {"name", "version", "newest"} <= set(row)
        for result in row["evaluation"].values():
            assert result["metric"] in {"accuracy", "mse", "error_rate"}
    assert sum(row["newest"] for row in rows) == len({row["name"] for row in rows})
