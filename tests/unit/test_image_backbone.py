"""The pinned ImageNet backbone: its weights checked, its outputs pinned on a fixture photo."""

from __future__ import annotations

import pytest
import torch

from app.meta import image_backbone
from app.meta.embedding_cache import EmbeddingCache
from app.meta.image_backbone import (
    BackboneUnavailable,
    ImageBackboneSpec,
    check_backbone,
    load_image_backbone,
)
from app.meta.photo_preprocess import preprocess_photo
from tests.conftest import REPO

CAT = REPO / "examples" / "photos" / "cat-1.jpg"


@pytest.fixture(scope="module")
def lite0():
    return load_image_backbone("efficientnet-lite0")


def cat_pixels() -> torch.Tensor:
    return torch.from_numpy(preprocess_photo(CAT.read_bytes(), 224, 4096 * 4096))[None]


def test_outputs_pinned_on_a_fixture_photo(lite0):
    """Pooled features of the walk-through's cat, L2-normalised (values read once, on this
    release of the weights and preprocessing); the ImageNet head still says 'Egyptian cat'."""
    x = cat_pixels()
    embedding = lite0.embed(x)[0]
    assert embedding.shape == (1280,)
    assert float(embedding.norm()) == pytest.approx(1.0, abs=1e-5)
    expected = torch.tensor([0.00294, 0.01188, 0.0, 0.02025, 0.15601, 0.02242])
    assert torch.allclose(embedding[:6], expected, atol=2e-4)
    assert int(embedding.argmax()) == 112 and float(embedding.max()) == pytest.approx(0.25997, abs=2e-4)
    with torch.no_grad():
        assert int(lite0.network(x).argmax()) == 285  # ImageNet class 285: Egyptian cat


def test_embeddings_do_not_depend_on_the_batch(lite0):
    x = cat_pixels()
    alone = lite0.embed(x)
    together = lite0.embed(torch.cat([torch.zeros_like(x), x, -x]))[1:2]
    assert torch.allclose(alone, together, atol=1e-5)


def test_wrong_input_shape_is_refused(lite0):
    with pytest.raises(ValueError, match=r"\[n, 3, 224, 224\]"):
        lite0.embed(torch.zeros(1, 3, 200, 200))


def test_loaded_once_per_process(lite0):
    assert load_image_backbone("efficientnet-lite0") is lite0


def test_weights_that_do_not_match_the_pin_are_refused(monkeypatch):
    spec = image_backbone.IMAGE_BACKBONES["efficientnet-lite0"]
    forged = ImageBackboneSpec(**{**spec.__dict__, "name": "forged", "sha256": "0" * 64})
    monkeypatch.setitem(image_backbone.IMAGE_BACKBONES, "forged", forged)
    with pytest.raises(BackboneUnavailable, match="does not match the pinned"):
        check_backbone("forged")
    with pytest.raises(BackboneUnavailable, match="unknown image backbone"):
        check_backbone("resnet-9000")


def test_embedding_cache_is_bounded_by_bytes():
    cache = EmbeddingCache(max_bytes=3 * 1280 * 4)
    keys = [cache.key("b", bytes([i])) for i in range(5)]
    for i, key in enumerate(keys):
        cache.put(key, torch.full((1280,), float(i)))
    assert len(cache) == 3
    assert cache.get(keys[0]) is None and cache.get(keys[1]) is None
    assert float(cache.get(keys[4])[0]) == 4.0
    cache.get(keys[2])  # now most recently used
    cache.put(cache.key("b", b"new"), torch.zeros(1280))
    assert cache.get(keys[2]) is not None and cache.get(keys[3]) is None
    off = EmbeddingCache(max_bytes=0)
    off.put(keys[0], torch.zeros(1280))
    assert len(off) == 0


def test_an_embedding_cache_asked_not_to_read_computes_every_input_once():
    cache = EmbeddingCache(max_bytes=1 << 20)
    a, b = cache.key("m", b"a"), cache.key("m", b"b")
    cache.put(a, torch.zeros(4))
    calls = []

    def compute(rows):
        calls.append(rows)
        return torch.ones(len(rows), 4)

    out = cache.embed([a, b, a], compute, read=False)
    assert calls == [[0, 1]] and torch.equal(out, torch.ones(3, 4))  # a computed afresh, once
    assert torch.equal(cache.get(a), torch.zeros(4))  # what was kept stays; b is kept now
    assert torch.equal(cache.embed([b], compute), torch.ones(1, 4)) and len(calls) == 1


def test_the_photo_codec_embeds_the_same_bytes_once():
    import base64

    from app.meta.codecs import InputLimits, PhotoCodec
    from app.meta.manifest import InputSpec

    codec = PhotoCodec()
    spec = InputSpec(kind="image", codec="photo", backbone="efficientnet-lite0", shape=[3, 224, 224])
    photo = base64.b64encode(CAT.read_bytes()).decode()
    other = base64.b64encode((CAT.parent / "coffee-1.jpg").read_bytes()).decode()
    limits = InputLimits()
    first = codec.decode([photo, other, photo], spec, "inputs", limits)  # the repeat within a request too
    assert codec.cache.misses == 2 and len(codec.cache) == 2
    again = codec.decode([other, photo], spec, "inputs", limits)
    assert codec.cache.hits == 2 and codec.cache.misses == 2
    assert torch.equal(first[0], first[2]) and torch.equal(again[1], first[0]) and torch.equal(again[0], first[1])
    off = PhotoCodec()
    off.decode([photo], spec, "inputs", InputLimits(embedding_cache_bytes=0))
    assert len(off.cache) == 0
