"""Numeric tests of the meta-learning algorithms on tiny problems."""

from __future__ import annotations

import itertools
from dataclasses import fields

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.meta.algorithms import ALGORITHMS, AdaptOptions
from app.meta.algorithms.inner_loop import recording_steps
from app.meta.backbones import Conv4, SineMLP, max_pool_2x2
from app.meta.checkpoint import build_learner
from app.meta.types import TaskBatch
from metaserve_train.tasks.sinusoid import SinusoidTasks


def sine_batch(n_tasks: int = 3, shots: int = 5, queries: int = 7, seed: int = 0) -> TaskBatch:
    return SinusoidTasks(shots, queries).sample(n_tasks, torch.Generator().manual_seed(seed))


def image_batch(n_tasks: int = 2, ways: int = 3, shots: int = 2, queries: int = 2) -> TaskBatch:
    """Class c is a bright bar in band c of the image, plus noise."""
    g = torch.Generator().manual_seed(0)

    def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(ways).repeat_interleave(per_class)
        x = 0.2 * torch.rand(n_tasks, len(y), 1, 28, 28, generator=g)
        for i, c in enumerate(y.tolist()):
            x[:, i, 0, 8 * c : 8 * c + 6, 4:24] += 0.8
        return x, y.expand(n_tasks, -1)

    (sx, sy), (qx, qy) = draw(shots), draw(queries)
    return TaskBatch(sx, sy, qx, qy, ways)


def learner(algorithm: str, task: str = "sine", **hparams):
    """``algorithm`` with those of ``hparams`` it reads (the tests loop over algorithms)."""
    own = {f.name for f in fields(ALGORITHMS[algorithm].hyperparameters)}
    spec = {"algorithm": algorithm, "backbone": "sine_mlp" if task == "sine" else "conv4",
            "task_type": "regression" if task == "sine" else "classification",
            "hparams": {k: v for k, v in hparams.items() if k in own}}
    return build_learner(spec, seed=0)


def test_a_hyperparameter_the_algorithm_does_not_read_is_refused():
    spec = {"algorithm": "protonet", "backbone": "conv4", "task_type": "classification",
            "hparams": {"inner_lr": 0.1}}
    with pytest.raises(ValueError, match="protonet has no hyperparameter inner_lr"):
        build_learner(spec, seed=0)
    with pytest.raises(ValueError, match="needs reference_ways"):
        learner("maml", inner_loss_scale="ways")
    defaults = learner("anil").hp
    assert (defaults.inner_lr, defaults.first_order, defaults.inner_steps) == (0.1, False, 0)


@pytest.mark.parametrize("algorithm,hparams", [
    ("maml", {"inner_lr": 0.01, "inner_steps": 5}),
    ("metasgd", {"inner_lr": 0.01, "inner_steps": 5}),
    ("reptile", {"inner_lr": 0.01, "inner_steps": 5}),
    ("anil", {"inner_lr": 0.01, "inner_steps": 5}),
])
def test_gradient_adaptation_lowers_support_loss_regression(algorithm, hparams):
    lrn = learner(algorithm, **hparams)
    b = sine_batch(1)
    x, y = b.support_x[0], b.support_y[0]
    before = lrn.support_loss(lrn.initial_state(0), x, y)
    after = lrn.support_loss(lrn.adapt(x, y), x, y)
    assert after < before * 0.99


@pytest.mark.parametrize("algorithm,lr", [
    ("maml", 0.05), ("anil", 0.05), ("reptile", 0.05), ("metasgd", 0.05)])
def test_gradient_adaptation_lowers_support_loss_classification(algorithm, lr):
    lrn = learner(algorithm, task="image", inner_lr=lr, inner_steps=5)
    b = image_batch(1)
    x, y = b.support_x[0], b.support_y[0]
    before = lrn.support_loss(lrn.initial_state(3), x, y)
    after = lrn.support_loss(lrn.adapt(x, y, 3), x, y)
    assert after < before * 0.9


def explicit_maml_meta_gradient(model: nn.Module, params, b: TaskBatch, lr: float, steps: int,
                                first_order: bool):
    """MAML's meta-gradient the slow way: torch.autograd with create_graph, task by task."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    total = 0.0
    for t in range(len(b)):
        fast = dict(leaves)
        for _ in range(steps):
            loss = F.mse_loss(torch.func.functional_call(model, fast, (b.support_x[t],)),
                              b.support_y[t])
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {k: v - lr * g for (k, v), g in zip(fast.items(), grads)}
        total = total + F.mse_loss(torch.func.functional_call(model, fast, (b.query_x[t],)),
                                   b.query_y[t])
    mean = total / len(b)
    return dict(zip(leaves, torch.autograd.grad(mean, list(leaves.values())))), mean.item()


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_meta_gradient_matches_explicit_reference(first_order):
    lrn = learner("maml", inner_lr=0.05, inner_steps=2, first_order=first_order)
    b = sine_batch(4)
    loss, grads = lrn.meta_gradient(b)
    ref, ref_loss = explicit_maml_meta_gradient(lrn.model, lrn.frozen(), b, 0.05, 2, first_order)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for k in ref:
        torch.testing.assert_close(grads[k], ref[k], rtol=1e-4, atol=1e-6)


def test_second_order_differs_from_first_order():
    b = sine_batch(4)
    _, g2 = learner("maml", inner_lr=0.05, inner_steps=2).meta_gradient(b)
    _, g1 = learner("maml", inner_lr=0.05, inner_steps=2, first_order=True).meta_gradient(b)
    assert any(not torch.allclose(g1[k], g2[k]) for k in g1)


@pytest.mark.parametrize("algorithm", ["maml", "metasgd", "reptile", "anil", "hypernet"])
def test_vmapped_batch_equals_loop_regression(algorithm):
    lrn = learner(algorithm, inner_lr=0.02, inner_steps=3)
    b = sine_batch(4)
    states = lrn.adapt_batch(b.support_x, b.support_y)
    out = lrn.predict_batch(states, b.query_x)
    for t in range(len(b)):
        single = lrn.adapt(b.support_x[t], b.support_y[t])
        for k in single:
            torch.testing.assert_close(states[k][t], single[k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[t], lrn.predict(single, b.query_x[t]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["maml", "metasgd", "anil"])
def test_serving_adaptation_updates_copies_and_records_every_step(algorithm):
    """The single-task path updates its tensors in place: never the meta-parameters, and the
    recorded step states are snapshots (each equals an adaptation of that many steps)."""
    lrn = learner(algorithm, inner_lr=0.02, inner_steps=3)
    before = {k: v.detach().clone() for k, v in lrn.params.items()}
    b = sine_batch(1)
    x, y = b.support_x[0], b.support_y[0]
    with recording_steps() as trace:
        lrn.adapt(x, y, 0, AdaptOptions(steps=3))
    for k, v in before.items():
        assert torch.equal(lrn.params[k].detach(), v), k
    assert len(trace) == 4
    assert any(not torch.equal(trace[0][k], trace[3][k]) for k in trace[0])
    for steps, recorded in enumerate(trace):
        state = lrn.adapt(x, y, 0, AdaptOptions(steps=steps))
        for k in recorded.keys() & state.keys():
            torch.testing.assert_close(recorded[k], state[k], rtol=0, atol=0)


@pytest.mark.parametrize("algorithm", ["maml", "protonet", "anil"])
def test_vmapped_batch_equals_loop_images(algorithm):
    lrn = learner(algorithm, task="image", inner_lr=0.1, inner_steps=2)
    b = image_batch(2)
    out = lrn.predict_batch(lrn.adapt_batch(b.support_x, b.support_y, 3), b.query_x)
    for t in range(len(b)):
        single = lrn.predict(lrn.adapt(b.support_x[t], b.support_y[t], 3), b.query_x[t])
        torch.testing.assert_close(out[t], single, rtol=1e-4, atol=1e-4)


def test_protonet_exact_on_hand_made_case():
    lrn = learner("protonet", task="image")
    feats = {
        "a": torch.tensor([0.0, 0.0]), "b": torch.tensor([2.0, 0.0]), "c": torch.tensor([4.0, 2.0]),
        "q": torch.tensor([1.0, 1.0]),
    }
    lrn.embed = lambda params, x: x.reshape(x.shape[0], -1)  # identity embedding, by hand
    x = torch.stack([feats["a"], feats["b"], feats["c"]])
    y = torch.tensor([0, 0, 1])
    state = lrn.adapt(x, y, 2)
    torch.testing.assert_close(state["prototypes"], torch.tensor([[1.0, 0.0], [4.0, 2.0]]))
    logits = lrn.predict(state, feats["q"][None])
    torch.testing.assert_close(logits, torch.tensor([[-1.0, -10.0]]))


def test_hypernet_is_invariant_to_support_order():
    lrn = learner("hypernet")
    with torch.no_grad():  # make the generator non-trivial so the test can fail
        last = lrn.params["hyper.generate.4.weight"]
        last.copy_(torch.randn(last.shape, generator=torch.Generator().manual_seed(1)) * 0.01)
    b = sine_batch(1)
    x, y = b.support_x[0], b.support_y[0]
    base = lrn.predict(lrn.adapt(x, y), b.query_x[0])
    for perm in itertools.islice(itertools.permutations(range(len(x))), 1, 6):
        p = torch.tensor(perm)
        torch.testing.assert_close(lrn.predict(lrn.adapt(x[p], y[p]), b.query_x[0]), base,
                                   rtol=1e-5, atol=1e-5)
    shuffled_targets = lrn.predict(lrn.adapt(x, y.flip(0)), b.query_x[0])
    assert not torch.allclose(shuffled_targets, base)


def test_hypernet_adapts_with_zero_gradient_steps():
    lrn = learner("hypernet")
    assert not lrn.has_steps and lrn.default_steps() == 0


def test_metasgd_uses_its_learned_rates():
    lrn = learner("metasgd", inner_lr=0.01, inner_steps=1)
    b = sine_batch(1)
    x, y = b.support_x[0], b.support_y[0]
    before = lrn.adapt(x, y)
    with torch.no_grad():
        for k, v in lrn.params.items():
            if k.startswith("lr."):
                v.mul_(3.0)
    after = lrn.adapt(x, y)
    assert not torch.allclose(before["head.weight"], after["head.weight"])


def test_meta_training_steps_improve_query_loss():
    """A few hundred outer steps of MAML on sinusoids lower the post-adaptation query loss."""
    torch.manual_seed(0)
    lrn = learner("maml", inner_lr=0.01, inner_steps=1)
    opt = torch.optim.Adam(lrn.meta_parameters(), lr=1e-3)
    sampler, g = SinusoidTasks(5, 10), torch.Generator().manual_seed(0)
    fixed = sampler.sample(50, torch.Generator().manual_seed(99))
    start, _ = lrn.meta_gradient(fixed)
    for _ in range(300):
        _, grads = lrn.meta_gradient(sampler.sample(10, g))
        for k, p in lrn.params.items():
            p.grad = grads[k]
        opt.step()
    end, _ = lrn.meta_gradient(fixed)
    assert end < start * 0.8


def test_every_algorithm_is_registered():
    assert set(ALGORITHMS) == {"maml", "metasgd", "reptile", "anil", "protonet", "protonet-finetune",
                               "protonet-softmax-head", "protonet-backbone-finetune", "protonet-encoder-finetune",
                               "matchingnet", "neural-process", "hypernet"}


def test_adapt_options_steps_changes_adaptation():
    lrn = learner("maml", inner_lr=0.01, inner_steps=1)
    b = sine_batch(1)
    x, y = b.support_x[0], b.support_y[0]
    one = lrn.support_loss(lrn.adapt(x, y, options=AdaptOptions(steps=1)), x, y)
    ten = lrn.support_loss(lrn.adapt(x, y, options=AdaptOptions(steps=10)), x, y)
    assert ten < one


def test_backbone_shapes():
    assert Conv4().encoder(torch.zeros(2, 1, 28, 28)).shape == (2, 64)
    assert SineMLP()(torch.zeros(3, 1)).shape == (3, 1)


@pytest.mark.parametrize("shape", [(3, 4, 28, 28), (2, 5, 7, 7), (1, 2, 3, 6), (4, 2, 3, 9, 9)])
def test_strided_max_pool_equals_max_pool2d(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    x[..., 0, 0] = x[..., 0, 1]  # ties
    want = F.max_pool2d(x.reshape(-1, *shape[-3:]), 2).reshape(*shape[:-2], shape[-2] // 2, shape[-1] // 2)
    assert torch.equal(max_pool_2x2(x, 2), want)
    batched = torch.vmap(lambda t: max_pool_2x2(t, 2))(x)
    assert torch.equal(batched, want)


def test_conv4_functional_encoder_equals_the_module_with_and_without_autograd():
    net = Conv4()
    params = dict(net.named_parameters())
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        module_out = net.encoder(x)
        assert torch.equal(net.functional_encoder(params, x), module_out)  # strided pooling
    grad_out = net.functional_encoder(params, x)  # max_pool2d, differentiable as trained
    assert grad_out.requires_grad and torch.equal(grad_out.detach(), module_out)


@pytest.mark.parametrize("algorithm", ["maml", "hypernet"])
def test_concurrent_adaptations_equal_sequential(algorithm):
    """functional_call swaps tensors into a module: each thread needs its own copy."""
    from concurrent.futures import ThreadPoolExecutor

    lrn = learner(algorithm, inner_lr=0.05, inner_steps=5)
    b = sine_batch(12)
    sequential = [lrn.adapt(b.support_x[i], b.support_y[i]) for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda i: lrn.adapt(b.support_x[i], b.support_y[i]), range(12)))
    for s, p in zip(sequential, parallel):
        for k in s:
            torch.testing.assert_close(p[k], s[k], rtol=1e-5, atol=1e-6)


def test_thread_copies_share_the_weights_and_nothing_else():
    """A thread's module copy costs no weights, and the calls of one thread never show in another's."""
    import threading

    lrn = learner("maml", inner_lr=0.05, inner_steps=5)
    copies = []
    thread = threading.Thread(target=lambda: copies.append(lrn.local()))
    thread.start()
    thread.join()
    mine, theirs = lrn.local(), copies[0]
    assert mine is not theirs and mine is lrn.local()
    for (name, a), (_, b), (_, t) in zip(mine.named_parameters(), theirs.named_parameters(),
                                         lrn.model.named_parameters(), strict=True):
        assert a is b is t, name
    assert not any(a is b for a, b in zip(mine.modules(), theirs.modules()))
    b = sine_batch(1)
    before = {k: v.clone() for k, v in lrn.model.state_dict().items()}
    lrn.adapt(b.support_x[0], b.support_y[0])
    assert all(torch.equal(v, before[k]) for k, v in lrn.model.state_dict().items())


def test_inner_loss_weight_rules():
    support = learner("maml", inner_lr=0.1, inner_steps=1, inner_loss_scale="support",
                      reference_support=20)
    assert support.inner_loss_weight(20, 20) == 1.0 and support.inner_loss_weight(5, 5) == 0.25
    assert support.inner_loss_weight(25, 5) == 1.25  # the 1.0.0 rule: more shots, bigger steps
    ways = learner("maml", inner_lr=0.1, inner_steps=1, inner_loss_scale="ways", reference_ways=20)
    assert ways.inner_loss_weight(20, 20) == 1.0 and ways.inner_loss_weight(5, 5) == 0.25
    assert ways.inner_loss_weight(25, 5) == ways.inner_loss_weight(50, 5) == 0.25  # shots: no change
    assert learner("maml").inner_loss_weight(5, 5) == 1.0 == learner("maml").inner_loss_weight(50, 5)
    with pytest.raises(ValueError):
        learner("maml", inner_loss_scale="nonsense").inner_loss_weight(5, 5)


def finetune_pair(seed: int = 0):
    from app.meta.algorithms.protonet_finetune import ProtoNetFineTune
    from app.meta.backbones import build_backbone

    torch.manual_seed(seed)
    model = build_backbone("embedding_adapter", dim=16, hidden=8, scale=1.0)
    base = ALGORITHMS["protonet"](model, "classification", temperature=2.0)
    tuned = ProtoNetFineTune(model, "classification", temperature=2.0, eval_steps=20, inner_lr=1e-2)
    tuned.load_state_dict(base.state_dict())
    x = torch.randn(12, 16)
    y = torch.arange(3).repeat_interleave(4)
    return base, tuned, x, y


def test_protonet_finetune_without_steps_is_protonet():
    base, tuned, x, y = finetune_pair()
    state = tuned.adapt(x, y, 3, AdaptOptions(steps=0))
    queries = torch.randn(5, 16)
    assert torch.allclose(tuned.predict(state, queries), base.predict(base.adapt(x, y, 3), queries),
                          atol=1e-5)


def test_protonet_finetune_is_deterministic_fits_the_support_and_reports_progress():
    base, tuned, x, y = finetune_pair()
    seen = []
    first = tuned.adapt(x, y, 3, AdaptOptions(progress=seen.append))
    again = tuned.adapt(x, y, 3)
    assert all(torch.equal(first[k], again[k]) for k in first)  # same support, same state
    assert seen == [pytest.approx((i + 1) / 20) for i in range(20)]
    before = base.support_loss(base.adapt(x, y, 3), x, y)
    assert tuned.support_loss(first, x, y) < before
    assert not any(torch.equal(first[k], tuned.params[k]) for k in tuned.params)
    assert not tuned.batchable and tuned.has_steps


def test_protonet_finetune_with_one_shot_classes_is_protonet():
    base, tuned, _, _ = finetune_pair()
    x, y = torch.randn(3, 16), torch.arange(3)
    state = tuned.adapt(x, y, 3)
    assert torch.allclose(state["prototypes"], base.adapt(x, y, 3)["prototypes"], atol=1e-6)


def test_protonet_finetune_served_temperature_does_not_change_the_fine_tuning():
    """A refitted output temperature (calibration) leaves the fine-tuned state and the argmax
    alone when the loss keeps its own inner_temperature."""
    from app.meta.algorithms.protonet_finetune import ProtoNetFineTune

    base, tuned, x, y = finetune_pair()
    recalibrated = ProtoNetFineTune(tuned.model, "classification", temperature=5.0,
                                    inner_temperature=2.0, eval_steps=20, inner_lr=1e-2)
    recalibrated.load_state_dict(tuned.state_dict())
    a, b = tuned.adapt(x, y, 3), recalibrated.adapt(x, y, 3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    queries = torch.randn(6, 16)
    assert torch.equal(tuned.predict(a, queries).argmax(-1), recalibrated.predict(b, queries).argmax(-1))
    assert torch.allclose(recalibrated.predict(b, queries) * 5.0, tuned.predict(a, queries) * 2.0, atol=1e-5)


@pytest.mark.parametrize("algorithm,task", [("protonet", "image"), ("hypernet", "sine"),
                                            ("matchingnet", "image"), ("neural-process", "sine"),
                                            ("maml", "sine")])
def test_serving_adaptation_without_steps_skips_autograd_and_gives_the_same_state(algorithm, task):
    """Families without inner steps adapt with a forward pass: ``adapt`` runs it without
    autograd (as prediction does) and gives what ``adapt_params`` gives with autograd on;
    families with steps keep autograd for their inner loop."""
    if algorithm == "neural-process":
        lrn = build_learner({"algorithm": algorithm, "backbone": "neural_process",
                             "backbone_args": {"width": 16}, "task_type": "regression", "hparams": {}})
    else:
        lrn = learner(algorithm, task=task, inner_lr=0.1, inner_steps=2)
    b = image_batch(2) if task == "image" else sine_batch(2)
    ways = b.ways if task == "image" else 0
    seen: list[bool] = []
    real = lrn.adapt_params

    def spy(*args, **kwargs):
        seen.append(torch.is_grad_enabled())
        return real(*args, **kwargs)

    lrn.adapt_params = spy
    state = lrn.adapt(b.support_x[0], b.support_y[0], ways)
    assert seen == [lrn.has_steps]
    if not lrn.has_steps:
        with torch.enable_grad():
            reference = real(lrn.frozen(), b.support_x[0], b.support_y[0], ways, 0)
        for key, value in reference.items():
            assert torch.equal(state[key], value.detach()), key
        batched = lrn.adapt_batch(b.support_x, b.support_y, ways)
        assert not any(t.requires_grad for t in batched.values())
        for key, value in state.items():
            torch.testing.assert_close(batched[key][0], value, rtol=1e-5, atol=1e-6)


def test_anil_serves_with_constant_support_features_and_still_meta_learns_the_encoder():
    """Serving: the support features are computed without autograd (a constant of the inner
    loop, the same values), so the adapted head equals the head computed with autograd on.
    Meta-training: the encoder still gets its gradient through the features."""
    lrn = learner("anil", task="image", inner_lr=0.1, inner_steps=3)
    b = image_batch(2)
    state = lrn.adapt(b.support_x[0], b.support_y[0], b.ways)
    with_autograd = lrn.support_features
    lrn.support_features = lrn.features  # the encoder's features with autograd recording
    reference = lrn.adapt(b.support_x[0], b.support_y[0], b.ways)
    lrn.support_features = with_autograd
    for key in state:
        assert torch.equal(state[key], reference[key]), key
    loss, grads = lrn.meta_gradient(b)
    lrn.support_features = lrn.features
    ref_loss, ref_grads = lrn.meta_gradient(b)  # through the support features, unconditionally
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for key in ref_grads:
        torch.testing.assert_close(grads[key], ref_grads[key], rtol=1e-5, atol=1e-7)
    assert all(float(grads[k].abs().sum()) > 0 for k in grads if k.startswith("encoder."))


def test_protonet_gives_its_support_outputs_from_the_one_embedding_it_adapts_with():
    """The service's report takes the support loss from these outputs: they must be exactly
    ``predict(state, x)``, and the state exactly ``adapt``'s. Fine-tuning adapts the default way."""
    lrn = learner("protonet", task="image")
    b = image_batch(1, ways=3, shots=3)
    x, y = b.support_x[0], b.support_y[0]
    state, outputs = lrn.adapt_with_support_outputs(x, y, 3)
    expected = lrn.adapt(x, y, 3)
    assert state.keys() == expected.keys()
    for key in expected:
        assert torch.equal(state[key], expected[key]), key
    assert torch.equal(outputs, lrn.predict(state, x))
    assert float(lrn.loss(outputs, y)) == lrn.support_loss(state, x, y)
    base, tuned, tx, ty = finetune_pair()
    assert base.adapt_with_support_outputs(tx, ty, 3)[1] is not None
    tuned_state, tuned_outputs = tuned.adapt_with_support_outputs(tx, ty, 3)
    assert tuned_outputs is None
    for key, value in tuned.adapt(tx, ty, 3).items():
        torch.testing.assert_close(tuned_state[key], value)
    # other families: no outputs, the plain adaptation
    maml = learner("maml", inner_lr=0.1, inner_steps=2)
    sb = sine_batch(1)
    assert maml.adapt_with_support_outputs(sb.support_x[0], sb.support_y[0])[1] is None
