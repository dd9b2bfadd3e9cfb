"""protonet-softmax-head: a softmax head fitted per task, started from and pulled toward the
prototypes' linear layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from app.meta.algorithms import ALGORITHMS
from app.meta.algorithms.protonet_softmax_head import fit_softmax_head, names_informative
from app.meta.backbones import build_backbone


def head_learner(**hparams):
    torch.manual_seed(0)
    model = build_backbone("embedding_adapter", dim=16, hidden=8, scale=8.0)
    return ALGORITHMS["protonet-softmax-head"](model, "classification", **hparams)


def overlapping_task(seed: int = 0, ways: int = 4, shots: int = 5):
    """Classes whose sentences-like vectors overlap: the prototypes misclassify some of the
    support, a fitted head fewer."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(ways, 16, generator=g)
    y = torch.arange(ways).repeat_interleave(shots)
    x = centres[y] + 1.2 * torch.randn(len(y), 16, generator=g)
    return x, y


def prototype_predictions(learner, x, y, ways, queries):
    unit = F.normalize(learner.embed(learner.frozen(), x), dim=-1)
    protos = learner.prototypes_of(unit, y, ways)["prototypes"]
    q = F.normalize(learner.embed(learner.frozen(), queries), dim=-1)
    return (2 * q @ protos.T - (protos * protos).sum(-1)).argmax(-1)


def test_a_strong_pull_gives_back_the_prototype_classifier():
    learner = head_learner(head_l2=1e3)
    x, y = overlapping_task()
    queries = torch.randn(40, 16, generator=torch.Generator().manual_seed(9))
    state = learner.adapt(x, y, 4)
    assert torch.equal(learner.predict(state, queries).argmax(-1),
                       prototype_predictions(learner, x, y, 4, queries))


def test_the_head_reaches_the_minimum_of_its_objective_and_fits_the_support_better():
    learner = head_learner(head_l2=1e-3, head_scale=4.0)
    x, y = overlapping_task()
    z = F.normalize(learner.embed(learner.frozen(), x), dim=-1) * 4.0
    head = fit_softmax_head(z, y, 4, 4.0, 1e-3, iterations=100)
    start = fit_softmax_head(z, y, 4, 4.0, 1e-3, iterations=1)  # one L-BFGS iteration from the start
    protos = learner.prototypes_of(z, y, 4)["prototypes"]
    w0, b0 = 2 * protos / 16, -(protos * protos).sum(-1) / 16
    weight, bias = head["weight"].clone().requires_grad_(True), head["bias"].clone().requires_grad_(True)
    pull = ((weight - w0) ** 2).sum() + ((bias - b0) ** 2).sum()
    objective = F.cross_entropy(z @ weight.T + bias, y) + 1e-3 * pull
    objective.backward()
    assert float(weight.grad.norm()) < 1e-4 and float(bias.grad.norm()) < 1e-4  # a stationary point
    prototype_loss = float(F.cross_entropy(z @ w0.T + b0, y))
    assert float(F.cross_entropy(z @ head["weight"].T + head["bias"], y)) < prototype_loss
    assert not torch.equal(start["weight"], head["weight"])
    assert torch.equal(head["counts"], torch.full((4,), 5.0))


def test_the_same_support_set_gives_the_same_head_and_the_temperature_only_scales_outputs():
    x, y = overlapping_task(seed=3)
    learner = head_learner()
    first, again = learner.adapt(x, y, 4), learner.adapt(x, y, 4)
    assert first.keys() == {"weight", "bias", "counts"}
    assert all(torch.equal(first[k], again[k]) for k in first)
    hot = head_learner(temperature=2.5)
    hot_state = hot.adapt(x, y, 4)
    assert all(torch.equal(first[k], hot_state[k]) for k in first)  # the fit ignores the temperature
    queries = torch.randn(7, 16)
    torch.testing.assert_close(hot.predict(hot_state, queries) * 2.5, learner.predict(first, queries))


def test_support_outputs_come_from_the_one_embedding_and_equal_predict():
    learner = head_learner()
    x, y = overlapping_task(seed=4)
    state, outputs = learner.adapt_with_support_outputs(x, y, 4)
    expected = learner.adapt(x, y, 4)
    assert state.keys() == expected.keys()
    for key in expected:
        assert torch.equal(state[key], expected[key]), key
    torch.testing.assert_close(outputs, learner.predict(state, x))


def test_states_cannot_grow_and_nothing_is_meta_trained():
    learner = head_learner()
    x, y = overlapping_task()
    state = learner.adapt(x, y, 4)
    assert not learner.can_extend(state) and not learner.extends and not learner.batchable
    assert not learner.has_steps
    with pytest.raises(NotImplementedError):
        learner.extend(state, x[:2], y[:2], 4)
    with pytest.raises(NotImplementedError):
        learner.meta_gradient(None)


@pytest.mark.parametrize("bad", [{"head_l2": 0.0}, {"head_scale": -1.0}, {"head_iterations": 0}])
def test_hyperparameters_that_cannot_work_are_refused(bad):
    with pytest.raises(ValueError, match="protonet-softmax-head"):
        head_learner(**bad)


def names_task(seed: int = 0, ways: int = 8, shots: int = 5):
    """A task whose classes' names are near their centres (informative) or anywhere (not)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(ways, 16, generator=g)
    y = torch.arange(ways).repeat_interleave(shots)
    x = centres[y] + 1.2 * torch.randn(len(y), 16, generator=g)
    return x, y, centres + 0.3 * torch.randn(ways, 16, generator=g), torch.randn(ways, 16, generator=g)


def test_names_count_only_when_the_prototypes_place_them_clearly_better_than_chance():
    learner = head_learner()
    x, y, near, anywhere = names_task()
    z = F.normalize(learner.embed(learner.frozen(), x), dim=-1)
    unit = lambda v: F.normalize(learner.embed(learner.frozen(), v), dim=-1)  # noqa: E731
    assert names_informative(unit(near), z, y, 8)
    assert not names_informative(unit(anywhere), z, y, 8)
    # one name per class, every class's name beside its prototype: still too few classes
    protos = learner.prototypes_of(z[:10], y[:10], 2)["prototypes"]
    assert not names_informative(protos, z[:10], y[:10], 2)
    assert not names_informative(learner.prototypes_of(z[:15], y[:15], 3)["prototypes"], z[:15], y[:15], 3)


def test_informative_names_join_the_support_and_uninformative_ones_change_nothing():
    from app.meta.algorithms import AdaptOptions

    reading, plain = head_learner(label_names=True), head_learner()
    assert reading.reads_label_names and not plain.reads_label_names
    x, y, near, anywhere = names_task()
    alone = reading.adapt(x, y, 8)
    with_near = reading.adapt(x, y, 8, AdaptOptions(label_inputs=near))
    with_anywhere = reading.adapt(x, y, 8, AdaptOptions(label_inputs=anywhere))
    assert all(torch.equal(alone[k], with_anywhere[k]) for k in alone)
    assert not torch.equal(alone["weight"], with_near["weight"])
    assert torch.equal(with_near["counts"], alone["counts"])  # names are not support examples
    # a version that does not read names ignores them
    assert all(torch.equal(plain.adapt(x, y, 8)[k], v)
               for k, v in plain.adapt(x, y, 8, AdaptOptions(label_inputs=near)).items())
    # the names were fitted: the head classifies them with a lower cross-entropy than the
    # head fitted without them
    z, own = reading.features(reading.frozen(), near), torch.arange(8)
    assert float(F.cross_entropy(reading.head_logits(z, with_near), own)) < float(
        F.cross_entropy(reading.head_logits(z, alone), own))
    # the same support and names, the same head
    again = reading.adapt(x, y, 8, AdaptOptions(label_inputs=near))
    assert all(torch.equal(with_near[k], again[k]) for k in again)


@pytest.mark.parametrize("label, phrase", [("alarm_query", "alarm query"), ("CardArrival", "Card Arrival"),
                                           ("iot-hue/light.off", "iot hue light off"), ("  refund  ", "refund"),
                                           ("17", None), (17, None), ("__", None)])
def test_a_label_is_read_as_words(label, phrase):
    from app.meta.text_codecs import label_phrase

    assert label_phrase(label) == phrase


def test_the_text_codec_reads_labels_only_when_every_label_has_words_and_others_never():
    from app.meta.codec_registry import codec_for
    from app.meta.input_spec import InputSpec

    spec = InputSpec(kind="text", shape=[384], encoder="all-MiniLM-L6-v2", max_chars=8)
    text = codec_for("text")
    assert text.label_inputs(["alarm_query", "weather"], spec) == ["alarm qu", "weather"]  # cut to max_chars
    assert text.label_inputs(["alarm_query", 3], spec) is None
    assert codec_for("vector").label_inputs(["up", "down"], spec) is None
