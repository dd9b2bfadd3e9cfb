"""A client generated from /openapi.json by openapi-python-client runs the walk-through."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys

import httpx
import pytest

from app.api.auth.service import create_key
from app.main import create_app
from tests.api.helpers import sine_support
from tests.live_server import serve_in_thread

pytestmark = pytest.mark.slow


@pytest.fixture
def server(settings):
    app = create_app(settings.model_copy(update={"auth_enabled": True}))
    with serve_in_thread(app) as url:
        with app.state.session_factory() as session:
            _, key = create_key(session=session, tenant="generated")
        yield url, key


def test_generated_client_walks_through_with_typed_problems(server, tmp_path):
    base, key = server
    generator = shutil.which("openapi-python-client") or str(
        __import__("pathlib").Path(sys.executable).parent / "openapi-python-client")
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(httpx.get(f"{base}/openapi.json").json()))
    subprocess.run([generator, "generate", "--path", str(spec), "--output-path",
                    str(tmp_path / "metaserve_generated"), "--meta", "none"], check=True,
                   capture_output=True)
    sys.path.insert(0, str(tmp_path))
    try:
        name = "metaserve_generated"
        api = importlib.import_module(name)
        client_mod = importlib.import_module(f"{name}.client")
        models = importlib.import_module(f"{name}.models")
        ops = importlib.import_module(f"{name}.api.adapted_models")
        ml_ops = importlib.import_module(f"{name}.api.meta_learners")
        assert api
        create = importlib.import_module(f"{ops.__name__}.create_adapted_model")
        predict = importlib.import_module(f"{ops.__name__}.predict")
        get_one = importlib.import_module(f"{ops.__name__}.get_adapted_model")
        delete = importlib.import_module(f"{ops.__name__}.delete_adapted_model")
        list_ml = importlib.import_module(f"{ml_ops.__name__}.list_meta_learners")

        anonymous = client_mod.Client(base_url=base)
        denied = list_ml.sync_detailed(client=anonymous)
        assert denied.status_code == 401 and isinstance(denied.parsed, models.ProblemDetails)

        client = client_mod.AuthenticatedClient(base_url=base, token=key)
        listed = list_ml.sync(client=client)
        assert "sinusoid-maml" in {m.name for m in listed.items}

        body = models.AdaptedModelCreate.from_dict({"meta_learner": "sinusoid-maml",
                                                    "support": sine_support()})
        made = create.sync(client=client, body=body)
        assert made.status == "ready" and made.meta_learner_version
        preds = predict.sync(made.id, client=client,
                             body=models.PredictionRequest.from_dict({"inputs": [[0.5], [1.0]]}))
        assert isinstance(preds, models.RegressionPredictions)
        assert len(preds.predictions) == 2 and all(isinstance(v, float) for v in preds.predictions)

        missing = get_one.sync_detailed("0" * 32, client=client)
        assert missing.status_code == 404 and isinstance(missing.parsed, models.ProblemDetails)
        assert missing.parsed.type_.endswith("adapted-model-not-found")
        bad = create.sync_detailed(client=client, body=models.AdaptedModelCreate.from_dict(
            {"meta_learner": "sinusoid-maml", "support": {"inputs": [[1.0]], "targets": [1.0, 2.0]}}))
        assert bad.status_code == 422 and isinstance(bad.parsed, models.ProblemDetails)
        assert delete.sync_detailed(made.id, client=client).status_code == 204
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m.startswith("metaserve_generated")]:
            del sys.modules[module]
