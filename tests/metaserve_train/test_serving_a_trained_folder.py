"""A meta-trained folder copied under the models directory is served like a shipped learner,
and the server never imports the training package."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys

from fastapi.testclient import TestClient

from app.cli import main
from app.core.config import Settings
from app.db.migrate import upgrade
from app.main import create_app
from tests.conftest import REPO
from tests.metaserve_train.conftest import synthetic_photo


def test_copied_under_models_it_adapts_and_predicts(photo_folder, tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("METASERVE_CACHE_DIR", str(tmp_path / "cache"))
    models = tmp_path / "models"
    out = tmp_path / "trained" / "my-parts" / "1.0.0"
    assert main(["meta-train", "--data", str(photo_folder), "--base", str(REPO / "models" / "photo-protonet"),
                 "--out", str(out), "--iterations", "30", "--eval-tasks", "10", "--views", "1",
                 "--no-progress"]) == 0
    shutil.copytree(out.parent, models / "my-parts")
    upgrade(database_url)
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, models_dir=models, workers=1,
                        torch_threads=1, auth_enabled=False, warm_up=False)
    with TestClient(create_app(settings)) as client:
        described = client.get("/v1/meta-learners/my-parts").json()
        assert described["input"]["codec"] == "photo"
        photos = {label: [base64.b64encode(synthetic_photo(label, 100 + i)).decode() for i in range(4)]
                  for label in (2, 6)}
        support = {"inputs": photos[2][:3] + photos[6][:3], "targets": ["two"] * 3 + ["six"] * 3}
        adapted = client.post("/v1/adapted-models", json={"meta_learner": "my-parts", "support": support})
        assert adapted.status_code == 201, adapted.text
        body = adapted.json()
        assert body["meta_learner_version"] == "1.0.0"
        predicted = client.post(f"/v1/adapted-models/{body['id']}/predictions",
                                json={"inputs": [photos[6][3], photos[2][3]]})
        assert predicted.status_code == 200, predicted.text
        assert [p["label"] for p in predicted.json()["predictions"]] == ["six", "two"]


def test_the_server_imports_nothing_from_the_training_package():
    code = ("import sys, app.main, app.cli; app.main.create_app; "
            "leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'metaserve_train'); "
            "print(leaked); sys.exit(1 if leaked else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
