from __future__ import annotations

import itertools

import pytest
import torch
from safetensors.torch import save

from app.engine.cache import StateCache, state_bytes
from app.storage.artifacts import (
    ArtifactCorrupted,
    LocalArtifactStore,
    decode_state,
    encode_state,
    sha256_hex,
)


def test_artifacts_are_content_addressed_and_verified(tmp_path):
    store = LocalArtifactStore(tmp_path)
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    data = encode_state(state)
    sha = store.put(data)
    assert sha == sha256_hex(data) and store.put(encode_state(state)) == sha
    torch.testing.assert_close(decode_state(store.get(sha))["w"], state["w"])
    assert list(store.keys()) == [sha]
    path = store.path(sha)
    path.write_bytes(data[:-1] + b"\x00")
    try:
        store.get(sha)
        raise AssertionError("a corrupted artifact was served")
    except ArtifactCorrupted:
        pass
    assert not list(tmp_path.rglob("*.tmp"))


DTYPES = [torch.float64, torch.int64, torch.float32, torch.int32, torch.bfloat16, torch.float16,
          torch.int16, torch.uint8, torch.int8, torch.bool]


@pytest.mark.parametrize("state", [
    {},
    {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor(1.5), "counts": torch.tensor([3, 3])},
    {"prototypes": torch.randn(5, 8).t(), "empty": torch.zeros(0, 4), "flag": torch.tensor([True, False])},
    {"top.layers.0.weight": torch.randn(3, 3, dtype=torch.float64), "é\"q": torch.ones(1, dtype=torch.int8)},
], ids=["empty", "mixed", "views", "names"])
def test_states_encode_byte_for_byte_as_safetensors_writes_them(state):
    data = encode_state(state)
    assert data == save({k: v.contiguous() for k, v in state.items()})
    assert decode_state(data).keys() == state.keys()


def test_every_pair_of_dtypes_is_laid_out_as_safetensors_lays_it_out():
    for first, second in itertools.permutations(DTYPES, 2):
        for a, b in (("a", "b"), ("b", "a")):
            state = {a: torch.ones(3, dtype=first), b: torch.zeros(2, 2, dtype=second)}
            assert encode_state(state) == save(state), (first, second, a)


def test_cache_is_bounded_in_bytes_and_lru():
    s = {"w": torch.zeros(100)}  # 400 bytes
    cache = StateCache(max_bytes=2 * state_bytes(s))
    cache.put("a", s)
    cache.put("b", s)
    assert cache.get("a") is s  # a is now most recent
    cache.put("c", s)
    assert cache.get("b") is None and cache.get("a") is s and cache.get("c") is s
    assert cache.size_bytes == 800 and len(cache) == 2
    cache.put("huge", {"w": torch.zeros(1000)})
    assert cache.get("huge") is None


def test_concurrent_misses_load_once():
    import threading
    import time

    cache = StateCache(max_bytes=10_000)
    calls = []

    def load():
        calls.append(1)
        time.sleep(0.05)
        return {"w": torch.ones(3)}

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_load("k", load)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and cache.loads == 1
    assert all(torch.equal(r[0]["w"], torch.ones(3)) for r in results)
    assert sum(1 for _, hit in results if not hit) >= 1


def test_stale_temporaries_vanishing_during_the_sweep_are_skipped(tmp_path, monkeypatch):
    """A write in progress renames its temp file between the listing and the age check: the
    sweep skips it instead of failing (it did: 'expiry sweep failed', FileNotFoundError)."""
    import pathlib

    from app.storage.artifacts import LocalArtifactStore

    store = LocalArtifactStore(tmp_path / "artifacts")
    folder = tmp_path / "artifacts" / "ab"
    folder.mkdir(parents=True)
    (folder / ".abc.safetensors.1.2.tmp").write_bytes(b"half")
    real_stat = pathlib.Path.stat

    def renamed_meanwhile(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if self.name.endswith(".tmp"):
            raise FileNotFoundError(self)
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "stat", renamed_meanwhile)
    assert store.remove_stale_temporaries(0) == 0
    monkeypatch.undo()
    assert store.remove_stale_temporaries(0) == 1
    assert not list(folder.glob(".*.tmp"))
