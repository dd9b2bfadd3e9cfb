"""Serving never imports training code: no module of ``app`` names the training package, and a served
adaptation and prediction (and the service's own CLI) leave it, and its plotting library, unloaded."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

TRAINING = ("metaserve_train", "matplotlib")


def imported_modules(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value))
    return names


def test_no_app_module_imports_the_training_package():
    offenders = {str(p.relative_to(REPO)): sorted(m for m in imported_modules(p) if m.startswith(TRAINING))
                 for p in (REPO / "app").rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


SERVE_AND_CHECK = """
import sys, tempfile
from pathlib import Path
from fastapi.testclient import TestClient
from app.cli import build_parser
from app.core.config import Settings
from app.db.migrate import upgrade
from app.main import create_app

build_parser(with_plugins=False).parse_args(["serve"])
root = Path(tempfile.mkdtemp())
url = f"sqlite:///{root}/t.db"
upgrade(url)
settings = Settings(data_dir=root, database_url=url, models_dir=Path("models"), auth_enabled=False,
                    warm_up=False, workers=1, torch_threads=1)
with TestClient(create_app(settings)) as client:
    made = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml", "support": {
        "inputs": [[-4.0], [-2.0], [0.0], [1.5], [3.0]], "targets": [1.96, -1.2, -0.96, 1.68, 1.2]}})
    assert made.status_code == 201, made.text
    assert client.post(f"/v1/adapted-models/{made.json()['id']}/predictions",
                       json={"inputs": [[0.5]]}).status_code == 200
    client.get("/openapi.json")
print(sorted({m.split(".")[0] for m in sys.modules if m.startswith(("metaserve_train", "matplotlib"))}))
"""


def test_serving_loads_no_training_code():
    done = subprocess.run([sys.executable, "-c", SERVE_AND_CHECK], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
