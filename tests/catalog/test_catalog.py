"""The catalog in a running deployment: publish, alias, retire and purge with the
``metaserve meta-learners`` commands while a server runs; it converges without a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from app.cli import main
from app.core.config import Settings, get_settings
from app.db.migrate import upgrade
from app.main import create_app
from app.meta.checkpoint import file_sha256
from tests.api.test_versions import NAME, QUERIES, SUPPORT, install

CONVERGED_WITHIN = 10.0  # seconds


@pytest.fixture
def deployment(tmp_path, database_url, monkeypatch):
    """Settings for the server and the same configuration in the environment for the CLI."""
    upgrade(database_url)
    models, staging = tmp_path / "models", tmp_path / "staging"
    install(models, "1.0.0", seed=None)
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, models_dir=models, workers=1,
                        torch_threads=1, auth_enabled=False, warm_up=False, registry_poll_seconds=0.2)
    for key, value in {"DATA_DIR": tmp_path / "var", "DATABASE_URL": database_url, "MODELS_DIR": models}.items():
        monkeypatch.setenv(f"METASERVE_{key}", str(value))
    get_settings.cache_clear()
    yield settings, staging
    get_settings.cache_clear()


def cli(capsys, *args: str) -> tuple[int, dict | list]:
    """The exit status and what the command printed: its one JSON object (a refusal goes to
    stderr, after the server's log lines), or the list of history events."""
    code = main(["meta-learners", *args])
    out = capsys.readouterr()
    if args[0] == "history":
        return code, [json.loads(line) for line in out.out.splitlines() if line.strip()]
    text = (out.out if code == 0 else out.err).strip()
    return code, json.loads(text.splitlines()[-1])


def until(check, within: float = CONVERGED_WITHIN):
    """Poll ``check()`` until it returns something truthy; the value and the seconds it took."""
    start = time.monotonic()
    while True:
        value = check()
        if value:
            return value, time.monotonic() - start
        assert time.monotonic() - start < within, "the deployment did not converge in time"
        time.sleep(0.05)


def staged(staging: Path, version: str, seed: int) -> Path:
    install(staging, version, seed=seed)
    return staging / NAME / version


def test_publish_alias_retire_purge_while_serving(deployment, capsys):
    settings, staging = deployment
    with TestClient(create_app(settings)) as c:
        assert c.get(f"/v1/meta-learners/{NAME}").json()["version"] == "1.0.0"
        old = c.post("/v1/adapted-models", json={"meta_learner": NAME, "support": SUPPORT}).json()["id"]

        code, out = cli(capsys, "publish", str(staged(staging, "2.0.0", seed=1)), "--alias", "canary")
        assert code == 0 and out["outcome"] == "published" and out["ref"] == f"{NAME}@2.0.0"
        described, seconds = until(lambda: (r := c.get(f"/v1/meta-learners/{NAME}")).json()["version"] == "2.0.0"
                                   and r.json())
        assert described["aliases"] == {"canary": "2.0.0"}
        assert [(v["version"], v["state"]) for v in described["versions"]] == [("1.0.0", "active"),
                                                                                ("2.0.0", "active")]
        made = c.post("/v1/adapted-models", json={"meta_learner": f"{NAME}@canary", "support": SUPPORT})
        assert made.status_code == 201 and made.json()["meta_learner_version"] == "2.0.0"  # never the alias
        new = made.json()["id"]

        # the same folder again changes nothing; other bytes under the same version are refused
        assert cli(capsys, "publish", str(staging / NAME / "2.0.0"))[1]["outcome"] == "unchanged"
        other = staged(staging / "other", "2.0.0", seed=2)
        code, out = cli(capsys, "publish", str(other))
        assert code == 3 and "versions are immutable" in out["conflict"]

        # stable pins the bare name back to 1.0.0 although 2.0.0 is newer
        code, out = cli(capsys, "alias", NAME, "stable", "1.0.0")
        assert code == 0 and out == {"alias": f"{NAME}@stable", "from": None, "to": "1.0.0"}
        until(lambda: c.get(f"/v1/meta-learners/{NAME}").json()["version"] == "1.0.0")

        # retiring what an alias points at is refused; once moved, 2.0.0 retires everywhere
        code, out = cli(capsys, "retire", f"{NAME}@2.0.0")
        assert code == 2 and "@canary" in out["refused"]
        assert cli(capsys, "alias", NAME, "canary", "1.0.0")[0] == 0
        assert cli(capsys, "retire", f"{NAME}@2.0.0")[0] == 0
        predict_new = f"/v1/adapted-models/{new}/predictions"
        gone, _ = until(lambda: (r := c.post(predict_new, json=QUERIES)).status_code == 410 and r.json())
        assert "retired" in gone["detail"] and f"{NAME}@1.0.0" in gone["detail"]
        refused = c.post("/v1/adapted-models", json={"meta_learner": f"{NAME}@2.0.0", "support": SUPPORT})
        assert refused.status_code == 410 and refused.headers["content-type"] == "application/problem+json"
        assert c.post(f"/v1/adapted-models/{old}/predictions", json=QUERIES).status_code == 200
        assert c.get(f"/v1/meta-learners/{NAME}@2.0.0").json()["state"] == "retired"

        # purge waits until no adapted model references the version
        code, out = cli(capsys, "purge", f"{NAME}@2.0.0")
        assert code == 2 and "1 adapted model(s) still reference" in out["refused"]
        assert c.delete(f"/v1/adapted-models/{new}").status_code == 204
        code, out = cli(capsys, "purge", f"{NAME}@2.0.0")
        assert code == 0 and out["deleted_files"] == 2  # its manifest and weights
        until(lambda: [v["version"] for v in c.get(f"/v1/meta-learners/{NAME}").json()["versions"]] == ["1.0.0"])

    code, events = cli(capsys, "history", NAME)
    assert [(e["action"], e["version"]) for e in events] == [
        ("seed", "1.0.0"), ("publish", "2.0.0"), ("alias", "2.0.0"), ("alias", "1.0.0"), ("alias", "1.0.0"),
        ("retire", "2.0.0"), ("purge", "2.0.0")]
    assert all(e["actor"].startswith("cli:") for e in events[1:]) and events[0]["actor"] == "seed"
    assert events[4]["detail"] == {"alias": "canary", "from": "2.0.0", "to": "1.0.0"}


@pytest.mark.parametrize("damage", ["tampered-weights", "wrong-shapes", "bad-manifest"])
def test_a_bad_folder_is_refused_naming_the_check_and_leaves_nothing(deployment, capsys, damage):
    settings, staging = deployment
    folder = staged(staging, "3.0.0", seed=3)
    weights = folder / "weights.safetensors"
    manifest = json.loads((folder / "manifest.json").read_text())
    if damage == "tampered-weights":
        tensors = load_file(str(weights))
        key = sorted(tensors)[0]
        tensors[key] = tensors[key] + 1.0
        save_file(tensors, str(weights))  # the manifest's sha256 now lies
        check = "weights-checksum"
    elif damage == "wrong-shapes":
        tensors = {k: torch.zeros(3, 3) for k in load_file(str(weights))}
        save_file(tensors, str(weights))
        manifest["weights_sha256"] = file_sha256(weights)
        check = "tensors"
    else:
        manifest["model"]["hparams"]["no_such_hparam"] = 1
        check = "manifest"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, out = cli(capsys, "publish", str(folder))
    assert code == 2 and out["refused"] == check, out
    code, events = cli(capsys, "history", NAME)
    assert code == 0 and events == []  # nothing published
    assert not list((settings.data_dir / "registry").glob("*/*.safetensors"))


def test_convergence_time_over_publishes(deployment, capsys):
    """Each publish is served within the limit (the seconds are printed for the report)."""
    settings, staging = deployment
    seconds = []
    with TestClient(create_app(settings)) as c:
        for i in range(5):
            version = f"4.{i}.0"
            assert cli(capsys, "publish", str(staged(staging, version, seed=10 + i)))[0] == 0
            _, took = until(lambda v=version: c.get(f"/v1/meta-learners/{NAME}@{v}").status_code == 200)
            seconds.append(took)
    print("convergence seconds", [round(s, 2) for s in seconds])
    assert max(seconds) < CONVERGED_WITHIN


def test_on_postgresql_a_notification_beats_the_poll_period(deployment, capsys):
    settings, staging = deployment
    if not settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite polls")
    slow_poll = settings.model_copy(update={"registry_poll_seconds": 30.0})
    with TestClient(create_app(slow_poll)) as c:
        time.sleep(0.5)  # the watcher is listening
        assert cli(capsys, "publish", str(staged(staging, "5.0.0", seed=5)))[0] == 0
        _, took = until(lambda: c.get(f"/v1/meta-learners/{NAME}@5.0.0").status_code == 200, within=5.0)
    assert took < 5.0
