"""protonet-encoder-finetune and the text-tokens codec: the split encoder computes the pinned
encoder's embeddings, fine-tuning is deterministic and fits the support set, padding and
batching do not change a prediction, length-sorted chunks of a step fine-tune as whole episodes
do, bad sentences are refused like the text codec's."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from app.meta.checkpoint import build_learner
from app.meta.codec_registry import check_input_spec, codec_for
from app.meta.codecs import InputError, InputLimits
from app.meta.manifest import InputSpec
from app.meta.text_encoder import ENCODERS, load_encoder

pytestmark = pytest.mark.slow

SPEC = {"kind": "text", "codec": "text-tokens", "encoder": "all-MiniLM-L6-v2", "max_chars": 512, "shape": [2, 64]}
MODEL = {"algorithm": "protonet-encoder-finetune", "backbone": "embedding_adapter",
         "backbone_args": {"dim": 384, "hidden": 32, "scale": 8.0}, "task_type": "classification",
         "hparams": {"text_encoder": "all-MiniLM-L6-v2", "top_layers": 2, "inner_lr": 1e-4, "eval_steps": 8,
                     "temperature": 6.4, "episode_ways": 2}}
SUPPORT = ["I forgot my password", "I can't log in to my account", "reset my password please",
           "where is my parcel", "my order has not arrived", "track my delivery",
           "I want my money back", "refund this purchase", "how do I get a refund"]
LABELS = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
QUERIES = ["the password reset link does not work", "the package is late", "please give me a refund"]


def tokens(sentences, encoder="all-MiniLM-L6-v2"):
    return codec_for("text-tokens").decode(sentences, InputSpec(**{**SPEC, "encoder": encoder}), "inputs",
                                           InputLimits())


class Learner:
    """A learner over one encoder, and its tokens (the encoders tokenise differently)."""

    def __init__(self, encoder: str, **hparams) -> None:
        self.encoder = encoder
        backbone = {**MODEL["backbone_args"], "dim": ENCODERS[encoder].dim}
        self.learner = build_learner({**MODEL, "backbone_args": backbone,
                                      "hparams": {**MODEL["hparams"], "text_encoder": encoder, **hparams}}, seed=0)

    def tokens(self, sentences):
        return tokens(sentences, self.encoder)


# MPNet's layers also take the relative position bias its encoder computes once
@pytest.fixture(scope="module", params=sorted(name for name, spec in ENCODERS.items() if not spec.layers))
def encoder_learner(request):
    return Learner(request.param)


def test_the_codec_gives_padded_token_ids_and_masks():
    x = tokens(["hello world", "a much longer sentence " * 20])
    assert x.shape == (2, 2, 64) and x.dtype == torch.float32
    ids, mask = x[:, 0].long(), x[:, 1].long()
    assert mask[0].sum() == 4 and mask[1].sum() == 64  # [CLS] hello world [SEP]; truncated
    tokenizer = load_encoder("all-MiniLM-L6-v2").model[0].tokenizer
    assert ids[0, :4].tolist() == tokenizer("hello world")["input_ids"]
    with pytest.raises(InputError, match="empty"):
        tokens(["ok", "  "])
    with pytest.raises(ValueError, match=r"shape \[2, max_tokens\]"):
        check_input_spec(InputSpec(**{**SPEC, "shape": [384]}))


def test_without_steps_it_is_the_frozen_encoders_protonet(encoder_learner):
    """Lower layers + top layers + pooling reproduce the pinned encoder's embeddings."""
    learner = encoder_learner.learner
    states, mask = learner.lower_states(encoder_learner.tokens(QUERIES + SUPPORT))
    z = learner._embed_all({**learner.frozen(), **learner._top_params()}, states, mask)
    # the adapter starts at the identity, scaled by 8
    assert torch.allclose(z.norm(dim=-1), torch.full((len(z),), 8.0), atol=1e-4)
    reference = load_encoder(encoder_learner.encoder).encode(QUERIES + SUPPORT)
    assert (torch.nn.functional.normalize(z, dim=-1) * reference).sum(-1).min() > 0.99999


def test_fine_tuning_is_deterministic_and_moves_the_top_layers(encoder_learner):
    learner, tokens = encoder_learner.learner, encoder_learner.tokens
    first = learner.adapt(tokens(SUPPORT), LABELS, 3)
    again = learner.adapt(tokens(SUPPORT), LABELS, 3)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    frozen = learner._top_params()
    assert any(not torch.equal(first[k], frozen[k]) for k in frozen)
    assert {"prototypes", "counts"} <= set(first)
    assert not any(k.startswith("encoder.") for k in first)  # the adapter is not part of the state
    logits = learner.predict(first, tokens(QUERIES))
    assert logits.argmax(-1).tolist() == [0, 1, 2]
    # a support set without a class of two examples has nothing to hold out: no steps taken
    single = learner.adapt(tokens(SUPPORT[::3]), torch.tensor([0, 1, 2]), 3)
    assert all(torch.equal(single[k], frozen[k]) for k in frozen)


def test_padding_and_batch_company_do_not_change_a_prediction(encoder_learner):
    learner, tokens = encoder_learner.learner, encoder_learner.tokens
    state = learner.adapt(tokens(SUPPORT), LABELS, 3)
    alone = learner.predict(state, tokens(QUERIES[:1]))
    crowded = learner.predict(state, tokens(QUERIES[:1] + ["a very long and winding sentence " * 15] * 70))
    assert torch.allclose(alone[0], crowded[0], atol=1e-4)


def test_length_sorted_chunks_fine_tune_as_whole_episodes_do(encoder_learner):
    """``step_chunk`` only removes padding from a step's forward pass: the fine-tuned state is
    the whole-episode one up to rounding, deterministic, and the default keeps whole episodes."""
    learner, tokens = encoder_learner.learner, encoder_learner.tokens
    assert learner.hp.step_chunk == 0
    support = SUPPORT + ["could you tell me, in as much detail as you can, why my parcel has not arrived yet"]
    labels = torch.cat([LABELS, torch.tensor([1])])
    whole = learner.adapt(tokens(support), labels, 3)
    chunked_learner = Learner(encoder_learner.encoder, step_chunk=2).learner
    assert chunked_learner.hp == dataclasses.replace(learner.hp, step_chunk=2)
    chunked = chunked_learner.adapt(tokens(support), labels, 3)
    again = chunked_learner.adapt(tokens(support), labels, 3)
    assert chunked.keys() == whole.keys()
    assert all(torch.equal(chunked[k], again[k]) for k in chunked)
    for key in whole:
        assert torch.allclose(chunked[key], whole[key], atol=1e-4), key
    moved = [k for k in whole if k.startswith("top.") and not torch.equal(whole[k], learner._top_params()[k])]
    assert moved  # the comparison is of fine-tuned layers, not of two copies of the pretrained ones


def test_a_negative_step_chunk_is_refused():
    with pytest.raises(ValueError, match="step_chunk"):
        Learner("all-MiniLM-L6-v2", step_chunk=-1)


def test_a_negative_episodes_per_class_is_refused():
    with pytest.raises(ValueError, match="episodes_per_class"):
        Learner("all-MiniLM-L6-v2", episodes_per_class=-1)


def test_default_steps_scale_with_the_classes():
    """Each class takes part in ``episodes_per_class`` pseudo-episodes of up to ``episode_ways``
    classes, at most ``eval_steps``; without the rule every task gets ``eval_steps``."""
    scaled = Learner("all-MiniLM-L6-v2", eval_steps=80, episode_ways=16, episodes_per_class=20).learner
    assert [scaled.default_steps_for(w) for w in (2, 10, 16, 17, 32, 64, 150)] == [20, 20, 20, 22, 40, 80, 80]
    assert scaled.default_steps_for(0) == scaled.default_steps() == 80  # no classes known: the most
    assert "min(80, ceil(20 x classes / min(16, classes)))" in scaled.steps_rule
    fixed = Learner("all-MiniLM-L6-v2", eval_steps=80, episode_ways=16).learner
    assert {fixed.default_steps_for(w) for w in (2, 10, 64, 150)} == {80} and fixed.steps_rule is None


def test_an_adaptation_without_steps_takes_the_steps_of_its_classes():
    from app.meta.algorithms import AdaptOptions

    learner = Learner("all-MiniLM-L6-v2", eval_steps=8, episode_ways=2, episodes_per_class=2).learner
    x = tokens(SUPPORT)
    assert learner.default_steps_for(3) == 3  # ceil(2 x 3 / 2)
    default = learner.adapt(x, LABELS, 3)
    assert all(torch.equal(v, learner.adapt(x, LABELS, 3, AdaptOptions(steps=3))[k]) for k, v in default.items())
    eight = learner.adapt(x, LABELS, 3, AdaptOptions(steps=8))
    assert not torch.equal(default["prototypes"], eight["prototypes"])
