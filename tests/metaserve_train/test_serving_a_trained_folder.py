"""A meta-trained folder is published to a running server and served like a shipped learner
(or copied under the models directory), and the server never imports the training package."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time

from fastapi.testclient import TestClient

from app.cli import main
from app.core.config import Settings, get_settings
from app.db.migrate import upgrade
from app.main import create_app
from tests.conftest import REPO
from tests.metaserve_train.conftest import synthetic_photo


def adapt_and_predict(client, name: str) -> None:
    described = client.get(f"/v1/meta-learners/{name}").json()
    assert described["input"]["codec"] == "photo"
    photos = {label: [base64.b64encode(synthetic_photo(label, 100 + i)).decode() for i in range(4)]
              for label in (2, 6)}
    support = {"inputs": photos[2][:3] + photos[6][:3], "targets": ["two"] * 3 + ["six"] * 3}
    adapted = client.post("/v1/adapted-models", json={"meta_learner": name, "support": support})
    assert adapted.status_code == 201, adapted.text
    body = adapted.json()
    assert body["meta_learner_version"] == "1.0.0"
    predicted = client.post(f"/v1/adapted-models/{body['id']}/predictions",
                            json={"inputs": [photos[6][3], photos[2][3]]})
    assert predicted.status_code == 200, predicted.text
    assert [p["label"] for p in predicted.json()["predictions"]] == ["six", "two"]


def meta_train(photo_folder, out) -> None:
    assert main(["meta-train", "--data", str(photo_folder), "--base", str(REPO / "models" / "photo-protonet"),
                 "--out", str(out), "--iterations", "30", "--eval-tasks", "10", "--views", "1",
                 "--no-progress"]) == 0


def test_published_to_a_running_server_it_adapts_and_predicts(photo_folder, tmp_path, database_url, monkeypatch,
                                                               capsys):
    monkeypatch.setenv("METASERVE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "trained" / "my-parts" / "1.0.0"
    meta_train(photo_folder, out)
    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "photo-protonet", models / "photo-protonet")
    upgrade(database_url)
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, models_dir=models, workers=1,
                        torch_threads=1, auth_enabled=False, warm_up=False, registry_poll_seconds=0.2)
    for key, value in {"DATA_DIR": settings.data_dir, "DATABASE_URL": database_url, "MODELS_DIR": models}.items():
        monkeypatch.setenv(f"METASERVE_{key}", str(value))
    get_settings.cache_clear()
    try:
        with TestClient(create_app(settings)) as client:
            assert client.get("/v1/meta-learners/my-parts").status_code == 404
            capsys.readouterr()
            assert main(["meta-learners", "publish", str(out), "--alias", "stable"]) == 0
            assert json.loads(capsys.readouterr().out)["outcome"] == "published"
            deadline = time.monotonic() + 10
            while client.get("/v1/meta-learners/my-parts").status_code != 200:
                assert time.monotonic() < deadline, "not served within 10 s"
                time.sleep(0.05)
            adapt_and_predict(client, "my-parts")
    finally:
        get_settings.cache_clear()


def test_copied_under_models_it_adapts_and_predicts(photo_folder, tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("METASERVE_CACHE_DIR", str(tmp_path / "cache"))
    models = tmp_path / "models"
    out = tmp_path / "trained" / "my-parts" / "1.0.0"
    meta_train(photo_folder, out)
    shutil.copytree(out.parent, models / "my-parts")
    upgrade(database_url)
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, models_dir=models, workers=1,
                        torch_threads=1, auth_enabled=False, warm_up=False)
    with TestClient(create_app(settings)) as client:
        adapt_and_predict(client, "my-parts")


def test_the_server_imports_nothing_from_the_training_package():
    code = ("import sys, app.main, app.cli; app.main.create_app; "
            "leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'metaserve_train'); "
            "print(leaked); sys.exit(1 if leaked else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
