"""Start-up freezes what it loaded out of the cyclic garbage collector; shutdown releases it."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from app.main import create_app


def test_loaded_objects_are_frozen_while_serving_and_released_at_shutdown(settings):
    gc.unfreeze()
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        # the registry's learners (and everything else start-up made) are in the frozen set
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0
