"""The per-process trust in recently verified API keys: bounded in time, never for another
secret, never for a key the database did not accept, bounded in size."""

from __future__ import annotations

from app.api.auth.verified_keys import VerifiedKeys


def clocked(seconds: float, **kwargs) -> tuple[VerifiedKeys, list[float]]:
    now = [0.0]
    return VerifiedKeys(seconds, clock=lambda: now[0], **kwargs), now


def test_a_key_is_trusted_for_its_window_only():
    keys, now = clocked(5.0)
    assert keys.trusted("k1", "d1") is None
    keys.remember("k1", "d1", "acme", "tenant")
    assert keys.trusted("k1", "d1") == ("d1", "acme", "tenant", 0.0)
    now[0] = 4.999
    assert keys.trusted("k1", "d1") is not None
    now[0] = 5.0
    assert keys.trusted("k1", "d1") is None


def test_another_secret_is_not_trusted():
    keys, _ = clocked(5.0)
    keys.remember("k1", "d1", "acme", "tenant")
    assert keys.trusted("k1", "d2") is None


def test_a_zero_window_keeps_nothing():
    keys, _ = clocked(0.0)
    keys.remember("k1", "d1", "acme", "tenant")
    assert len(keys) == 0 and keys.trusted("k1", "d1") is None


def test_it_starts_over_when_full():
    keys, _ = clocked(5.0, max_keys=2)
    keys.remember("k1", "d1", "a", "tenant")
    keys.remember("k2", "d2", "b", "tenant")
    keys.remember("k2", "d2", "b", "tenant")  # known: no eviction
    assert len(keys) == 2
    keys.remember("k3", "d3", "c", "tenant")
    assert len(keys) == 1 and keys.trusted("k3", "d3") is not None and keys.trusted("k1", "d1") is None
