"""``/v1/admin``: the catalog's operations over HTTP for admin-scope keys only; off unless enabled."""

from __future__ import annotations

import base64
import json
import time

from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from app.api.auth.service import create_key
from app.db.session import make_engine, make_session_factory
from app.main import create_app
from tests.api.test_errors import check_problem as problem_body
from tests.api.test_versions import NAME, SUPPORT, install

PUBLISH = "/v1/admin/meta-learners"


def check_problem(r, status: int, slug: str) -> dict:
    body = problem_body(r, status)
    assert body["type"].endswith(slug), body
    return body


def keys(settings) -> dict[str, str]:
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        made = {scope: create_key(session=session, tenant="ops", scope=scope)[1] for scope in ("tenant", "admin")}
    engine.dispose()
    return {scope: {"Authorization": f"Bearer {key}"} for scope, key in made.items()}


def upload(folder) -> dict[str, str]:
    return {name: base64.b64encode((folder / name).read_bytes()).decode()
            for name in ("manifest.json", "weights.safetensors")}


def test_off_unless_enabled_and_only_for_admin_keys(settings, tmp_path):
    models = tmp_path / "models"
    install(models, "1.0.0", seed=None)
    body = {"files": upload(models / NAME / "1.0.0")}
    base = settings.model_copy(update={"models_dir": models, "auth_enabled": True})
    headers = keys(base)
    with TestClient(create_app(base)) as c:
        assert c.post(PUBLISH, json=body, headers=headers["admin"]).status_code == 404
    with TestClient(create_app(base.model_copy(update={"admin_api_enabled": True}))) as c:
        check_problem(c.post(PUBLISH, json=body), 401, "unauthorized")
        check_problem(c.post(PUBLISH, json=body, headers=headers["tenant"]), 403, "admin-scope-required")
        check_problem(c.get(f"{PUBLISH}/{NAME}/history", headers=headers["tenant"]), 403, "admin-scope-required")
    off = base.model_copy(update={"admin_api_enabled": True, "auth_enabled": False})
    with TestClient(create_app(off)) as c:
        check_problem(c.post(PUBLISH, json=body), 403, "admin-scope-required")


def test_publish_alias_retire_purge_over_http(settings, tmp_path):
    models, staging = tmp_path / "models", tmp_path / "staging"
    install(models, "1.0.0", seed=None)
    install(staging, "2.0.0", seed=1)
    install(staging / "other", "2.0.0", seed=2)
    s = settings.model_copy(update={"models_dir": models, "auth_enabled": True, "admin_api_enabled": True,
                                    "registry_poll_seconds": 0.2})
    headers = keys(s)
    admin, tenant = headers["admin"], headers["tenant"]
    with TestClient(create_app(s)) as c:
        made = c.post(PUBLISH, json={"files": upload(staging / NAME / "2.0.0"), "alias": "canary"}, headers=admin)
        assert made.status_code == 201, made.text
        assert made.json()["outcome"] == "published" and made.json()["ref"] == f"{NAME}@2.0.0"
        again = c.post(PUBLISH, json={"files": upload(staging / NAME / "2.0.0")}, headers=admin)
        assert again.status_code == 200 and again.json()["outcome"] == "unchanged"
        check_problem(c.post(PUBLISH, json={"files": upload(staging / "other" / NAME / "2.0.0")}, headers=admin),
                      409, "catalog-conflict")

        # a tampered upload names the failed check; bad names and bad base64 are 422 too
        folder = staging / "other" / NAME / "2.0.0"
        tensors = load_file(str(folder / "weights.safetensors"))
        key = sorted(tensors)[0]
        save_file({**tensors, key: tensors[key] + 1}, str(folder / "weights.safetensors"))
        tampered = c.post(PUBLISH, json={"files": upload(folder)}, headers=admin)
        check_problem(tampered, 422, "publish-check-failed")
        assert tampered.json()["check"] == "weights-checksum"
        check_problem(c.post(PUBLISH, json={"files": {"../manifest.json": "e30="}}, headers=admin), 422,
                      "invalid-inputs")
        check_problem(c.post(PUBLISH, json={"files": {"manifest.json": "not base64!"}}, headers=admin), 422,
                      "invalid-inputs")

        deadline = time.monotonic() + 10
        while c.get(f"/v1/meta-learners/{NAME}@canary", headers=tenant).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        adapted = c.post("/v1/adapted-models", json={"meta_learner": f"{NAME}@canary", "support": SUPPORT},
                         headers=tenant)
        assert adapted.status_code == 201 and adapted.json()["meta_learner_version"] == "2.0.0"

        moved = c.put(f"{PUBLISH}/{NAME}/aliases/canary", json={"version": "1.0.0"}, headers=admin)
        assert moved.json() == {"alias": f"{NAME}@canary", "previous": "2.0.0", "version": "1.0.0"}
        check_problem(c.put(f"{PUBLISH}/{NAME}/aliases/canary", json={"version": "7.7.7"}, headers=admin),
                      404, "unknown-meta-learner")
        retired = c.post(f"{PUBLISH}/{NAME}/versions/2.0.0/retire", headers=admin)
        assert retired.status_code == 200 and retired.json()["state"] == "retired"
        check_problem(c.delete(f"{PUBLISH}/{NAME}/versions/2.0.0", headers=admin), 409, "catalog-conflict")
        assert c.delete(f"/v1/adapted-models/{adapted.json()['id']}", headers=tenant).status_code == 204
        purged = c.delete(f"{PUBLISH}/{NAME}/versions/2.0.0", headers=admin)
        assert purged.status_code == 200 and purged.json()["deleted_files"] == 2

        events = c.get(f"{PUBLISH}/{NAME}/history", headers=admin).json()["events"]
        assert [e["action"] for e in events] == ["seed", "publish", "alias", "alias", "retire", "purge"]
        assert {e["actor"] for e in events[1:]} == {f"key:{admin['Authorization'].split('_')[1]}"}
        assert json.dumps(events)  # plain JSON
