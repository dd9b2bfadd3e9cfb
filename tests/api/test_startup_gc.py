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


def test_a_shut_down_app_and_its_engine_are_collected(settings):
    """Nothing process-wide keeps an app alive after its shutdown (FastAPI caches endpoint
    dependency models in a module-level LRU: a route closing over ``app`` kept every app, its
    engine and every loaded learner, about 50 MB an app)."""
    import weakref

    with TestClient(create_app(settings)) as client:
        assert client.get("/docs").status_code == 200 and client.get("/redoc").status_code == 200
        engine = weakref.ref(client.app.state.engine)
    del client
    gc.collect()
    assert engine() is None
