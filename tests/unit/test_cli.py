"""The ``metaserve`` command's service sub-commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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


@pytest.mark.slow
def test_fit_strategy_writes_a_new_version_that_the_registry_serves(tmp_path, capsys):
    import shutil

    from app.cli import main
    from app.engine.registry import load_registry

    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "sinusoid-maml" / "1.0.0", models / "sinusoid-maml" / "1.0.0")
    assert main(["fit-strategy", str(models / "sinusoid-maml" / "1.0.0"), "--version", "1.0.1",
                 "--candidates", "1,5,10,20", "--train-shapes", "0x3,0x10", "--test-shapes", "0x5",
                 "--train-tasks", "24", "--val-tasks", "12", "--test-tasks", "8", "--queries", "20",
                 "--no-progress"]) == 0
    assert "5-shot" in capsys.readouterr().out
    written = models / "sinusoid-maml" / "1.0.1"
    assert {"weights.safetensors", "manifest.json", "strategy.safetensors", "strategy.json",
            "strategy.png"} <= {p.name for p in written.iterdir()}
    registry = load_registry(models)
    assert not registry.refused
    served = registry.resolve("sinusoid-maml")
    assert served.version == "1.0.1" and served.strategy is not None
    assert served.strategy.candidates == [1, 5, 10, 20] and served.strategy.default == 10
    with pytest.raises(SystemExit):  # a malformed shape list is a usage error
        main(["fit-strategy", str(written), "--version", "9", "--candidates", "1",
              "--train-shapes", "5by1", "--test-shapes", "5x1"])


def test_db_reconcile_usage_recounts_and_says_to_migrate_first(tmp_path):
    from sqlalchemy import text

    from app.db.models import AdaptedModelRow
    from app.db.session import make_engine, make_session_factory
    from app.lifecycle import now_utc
    from tests.db.test_migrations import META_LEARNER

    env = {"METASERVE_DATA_DIR": str(tmp_path / "var"), "METASERVE_DATABASE_URL": ""}
    (tmp_path / "var").mkdir()
    r = metaserve("db", "reconcile-usage", env=env)
    assert r.returncode == 2 and "metaserve db upgrade" in r.stdout and "Traceback" not in r.stderr
    assert metaserve("db", "upgrade", env=env).returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'metaserve.db'}")
    with make_session_factory(engine)() as session:  # a row inserted as a pre-0010 replica did
        session.execute(text(META_LEARNER), {"version": "1", "w": "a" * 64})
        session.add(AdaptedModelRow(id="x1", tenant="t", meta_learner="m", meta_learner_version="1",
                                    task_type="regression", created_at=now_utc(), expires_at=now_utc()))
        session.commit()
    engine.dispose()
    r = metaserve("db", "reconcile-usage", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tenant t: no counter -> 1" in r.stdout and "reconciled: 1 counter(s) changed" in r.stdout
    r = metaserve("db", "reconcile-usage", env=env)
    assert r.returncode == 0 and "reconciled: 0 counter(s) changed" in r.stdout


def test_evaluate_on_a_folder_of_photos_lists_what_it_could_not_read(tmp_path, monkeypatch, capsys):
    import shutil

    from app.cli import main

    photos = tmp_path / "photos"
    for label in ("cat", "coffee"):
        (photos / label).mkdir(parents=True)
        for i in (1, 2, 3):
            shutil.copy(REPO / "examples" / "photos" / f"{label}-{i}.jpg", photos / label)
    (photos / "cat" / "broken.jpg").write_bytes(b"not a photo")
    monkeypatch.setenv("METASERVE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "reports"
    main(["evaluate", str(REPO / "models" / "photo-protonet"), "--photos", str(photos), "--ways", "2",
          "--shots", "1", "--queries", "2", "--tasks", "8", "--out", str(out)])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["protocol"] == "photos-2-way-1-shot" and row["tasks"] == 8 and 0 <= row["ece"] <= 1
    report = json.loads((out / "evaluations" / "photos-2-way-1-shot.json").read_text())
    assert report["result"]["classes"] == ["cat", "coffee"]
    assert report["result"]["unreadable"] == [
        "cat/broken.jpg: not a JPEG, PNG or WebP image (UnidentifiedImageError)"]
    assert (out / "evaluation.png").is_file()
    main(["evaluate", str(REPO / "models" / "photo-protonet"), "--photos", str(photos), "--ways", "2",
          "--shots", "1", "--queries", "2", "--tasks", "8", "--out", str(out)])  # embeddings from the cache
    again = json.loads((out / "evaluations" / "photos-2-way-1-shot.json").read_text())
    assert again["result"]["unreadable"] == report["result"]["unreadable"]
    assert again["result"]["mean"] == report["result"]["mean"]
    with pytest.raises(SystemExit, match="photos per class: {'cat': 3, 'coffee': 3}"):
        main(["evaluate", str(REPO / "models" / "photo-protonet"), "--photos", str(photos), "--out", str(out)])
