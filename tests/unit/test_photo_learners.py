"""Photo learners: the backbone split into trunk and fine-tuned tail computes the backbone; the
shot-aware temperature; fine-tuning is deterministic for a support set and changes the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.meta.algorithms.protonet import ProtoNet
from app.meta.algorithms.protonet_backbone_finetune import ProtoNetBackboneFineTune
from app.meta.backbones import EmbeddingAdapter
from app.meta.image_backbone import load_image_backbone
from app.meta.photo_preprocess import preprocess_photo
from tests.conftest import REPO

pytestmark = pytest.mark.slow
PHOTOS = REPO / "examples" / "photos"
HPARAMS = {"temperature": 3.0, "shot_temperature": 5.0}


@pytest.fixture(scope="module")
def task():
    names = [f"{c}-{i}.jpg" for c in ("cat", "coffee") for i in (1, 2, 3)] + ["query-cat.jpg", "query-coffee.jpg"]
    x = torch.from_numpy(np.stack([preprocess_photo((PHOTOS / n).read_bytes(), 224, 1 << 30) for n in names]))
    return x[:6], torch.tensor([0, 0, 0, 1, 1, 1]), x[6:]


def learners(steps: int = 0):
    torch.manual_seed(0)
    adapter = EmbeddingAdapter(1280, 64, 8.0)
    protonet = ProtoNet(adapter, "classification", **HPARAMS)
    finetune = ProtoNetBackboneFineTune(adapter, "classification", image_backbone="efficientnet-lite0",
                                        tail_blocks=0, views=2, inner_lr=5e-4, eval_steps=steps, **HPARAMS)
    return protonet, finetune


@pytest.mark.parametrize("tail_blocks", [0, 1])
def test_trunk_and_tail_compute_the_backbone(task, tail_blocks):
    x, y, queries = task
    protonet, _ = learners()
    finetune = ProtoNetBackboneFineTune(EmbeddingAdapter(1280, 64, 8.0), "classification",
                                        image_backbone="efficientnet-lite0", tail_blocks=tail_blocks,
                                        **HPARAMS)
    finetune.load_state_dict(protonet.state_dict())
    embed = load_image_backbone("efficientnet-lite0").embed
    want = protonet.predict(protonet.adapt(embed(x), y, 2), embed(queries))
    got = finetune.predict(finetune.adapt(x, y, 2), queries)  # no steps: the backbone as it is
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_shot_temperature_divides_by_t_plus_s_over_shots_and_keeps_the_argmax():
    protonet = ProtoNet(EmbeddingAdapter(8, 4, 1.0), "classification", **HPARAMS)
    plain = ProtoNet(EmbeddingAdapter(8, 4, 1.0), "classification", temperature=1.0)
    plain.load_state_dict(protonet.state_dict())
    x, y = torch.randn(6, 8), torch.tensor([0, 0, 0, 1, 1, 1])
    q = torch.randn(4, 8)
    raw = plain.predict(plain.adapt(x, y, 2), q)
    scaled = protonet.predict(protonet.adapt(x, y, 2), q)
    torch.testing.assert_close(scaled, raw / (3.0 + 5.0 / 3))
    assert torch.equal(scaled.argmax(-1), raw.argmax(-1))


def test_fine_tuning_is_deterministic_for_a_support_set_and_moves_the_head(task):
    x, y, queries = task
    _, finetune = learners(steps=3)
    first, again = finetune.adapt(x, y, 2), finetune.adapt(x.clone(), y.clone(), 2)
    assert set(first) == set(again)
    for key in first:
        assert torch.equal(first[key], again[key]), key
    start = dict(finetune.tail.named_parameters())
    assert not torch.equal(first["tail.conv_head.weight"], start["conv_head.weight"].detach())
    assert torch.equal(finetune.predict(first, queries), finetune.predict(again, queries))
