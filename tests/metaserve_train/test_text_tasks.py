"""Text tasks: loaders, episodes, supports, and the shipped text learner's recorded number."""

from __future__ import annotations

import json

import pytest
import torch

from app.meta.runtime import cache_dir
from metaserve_train.config import text_dir
from metaserve_train.evaluation import evaluate_text_support
from metaserve_train.tasks.text import TextSplit, TextTasks, draw_support, load_split, subset
from tests.conftest import REPO

HAVE_DATA = (text_dir() / "hwu64" / "test" / "seq.in").is_file()


def synthetic(n_intents: int = 6, per: int = 12, dim: int = 8) -> TextSplit:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(n_intents, dim, generator=gen) * 5
    intents = [f"i{k}" for k in range(n_intents) for _ in range(per)]
    emb = torch.cat([centres[k] + 0.1 * torch.randn(per, dim, generator=gen) for k in range(n_intents)])
    return TextSplit("synthetic", [f"s{i}" for i in range(len(intents))], intents, "0" * 64, emb)


def test_episodes_have_the_asked_shape_and_held_out_intents_stay_out():
    split = synthetic()
    train = subset(split, lambda intent: intent != "i5")
    tasks = TextTasks([train], ways=3, shots=2, queries=4).sample(5, torch.Generator().manual_seed(1))
    assert tasks.support_x.shape == (5, 6, 8) and tasks.query_x.shape == (5, 12, 8)
    held = split.embeddings[[i for i, intent in enumerate(split.intents) if intent == "i5"]]
    drawn = torch.cat([tasks.support_x.reshape(-1, 8), tasks.query_x.reshape(-1, 8)])
    assert not any(torch.equal(row, h) for row in drawn for h in held)


def test_draw_support_takes_k_of_every_intent_and_prototypes_separate_clear_intents():
    from app.meta.checkpoint import build_learner

    split = synthetic()
    support = draw_support(split, 3, torch.Generator().manual_seed(2))
    assert len(support.intents) == 18 and all(support.intents.count(f"i{k}") == 3 for k in range(6))
    learner = build_learner({"algorithm": "protonet", "backbone": "embedding_adapter",
                             "backbone_args": {"dim": 8, "hidden": 16, "scale": 1.0},
                             "task_type": "classification", "hparams": {}})
    assert evaluate_text_support(learner, support, split)["accuracy"] == 1.0


@pytest.mark.data
@pytest.mark.skipif(not HAVE_DATA, reason="text data not present")
def test_loaders_read_the_published_splits():
    hwu_test, hwu_10 = load_split(text_dir(), "hwu64", "test"), load_split(text_dir(), "hwu64", "train_10")
    assert len(hwu_test.intents) == 1076 and len(hwu_10.classes) == 64
    clinc = load_split(text_dir(), "clinc150", "train")
    assert len(clinc.intents) == 15000 and len(clinc.classes) == 150
    assert len(load_split(text_dir(), "clinc150", "oos_test").intents) == 1000


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DATA, reason="text data not present")
def test_the_shipped_text_learner_reproduces_its_fixed_support_number():
    from app.meta.checkpoint import load_meta_learner
    from metaserve_train.tasks.text import embed

    folder = REPO / "models" / "text-protonet" / "1.0.0"
    learner, manifest = load_meta_learner(folder)
    recorded = json.loads((folder / "evaluations" / "hwu64-10-shot.json").read_text())
    encoder = manifest["input"]["encoder"]
    support = embed(load_split(text_dir(), "hwu64", "train_10"), encoder, cache_dir())
    test = embed(load_split(text_dir(), "hwu64", "test"), encoder, cache_dir())
    got = evaluate_text_support(learner, support, test)["accuracy"]
    assert got == pytest.approx(recorded["result"]["fixed_support"]["accuracy"], abs=2e-3)
