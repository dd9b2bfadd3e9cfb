"""METASERVE_DEVICE: the compute device of adaptation and prediction.

The CPU tests run everywhere: a CUDA device that is not there is refused at start-up (never a
silent CPU fallback), and moving a learner moves every tensor it computes with. The tests
marked ``gpu`` need a CUDA device (CI has none; they run on a lent GPU machine): every
shipped meta-learner adapts and predicts on the GPU as it does on the CPU, directly and
through the HTTP service.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.core.config import Settings
from app.engine.build import DeviceUnavailable, resolve_device
from app.engine.registry import load_registry
from app.engine.types import batching_pays
from app.main import create_app
from tests.api.helpers import image_support, sine_support
from tests.conftest import REPO

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cpu_is_the_default_and_resolves():
    assert Settings().device == "cpu"
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "mps", "cuda0"])
def test_unknown_device_names_are_refused(name):
    with pytest.raises(ValidationError, match="device"):
        Settings(device=name)


def test_missing_cuda_is_refused_not_replaced_by_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailable, match="METASERVE_DEVICE=cuda.*no CUDA device"):
        resolve_device("cuda")


def test_a_cuda_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceUnavailable, match="1 CUDA device"):
        resolve_device("cuda:3")


def test_the_service_does_not_start_on_a_missing_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = Settings(data_dir=tmp_path / "var", models_dir=REPO / "models", device="cuda",
                        auth_enabled=False, warm_up=False)
    from app.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True)
    upgrade(settings.resolved_database_url)
    with pytest.raises(DeviceUnavailable), TestClient(create_app(settings)):
        pass


def test_moving_a_learner_moves_every_tensor_it_computes_with():
    """The meta device holds no data: anything left behind on the CPU would show here."""
    registry = load_registry(REPO / "models", "meta")
    assert registry.all() and not [k for k in registry.refused if not k.startswith("text")]
    for reg in registry.all():
        learner = reg.learner
        assert learner.device.type == "meta", reg.ref
        assert all(v.is_leaf and v.requires_grad and v.is_meta for v in learner.params.values())
        modules = [v for v in vars(learner).values() if isinstance(v, torch.nn.Module)]
        for module in modules:
            assert all(t.is_meta for t in module.state_dict().values()), reg.ref


def test_moving_to_the_cpu_keeps_outputs(tmp_path):
    registry = load_registry(REPO / "models")
    reg = registry.resolve("sinusoid-maml")
    x = torch.linspace(-4, 4, 5)[:, None]
    before = reg.learner.predict(reg.learner.adapt(x, torch.sin(x)), x)
    after = reg.learner.to("cpu").predict(reg.learner.adapt(x, torch.sin(x)), x)
    assert torch.equal(before, after)


# ----- on a GPU ---------------------------------------------------------------------------
def _support(reg, n_per_class: int = 2) -> tuple[torch.Tensor, torch.Tensor, int]:
    gen = torch.Generator().manual_seed(0)
    from app.meta.codec_registry import codec_for

    shape = codec_for(reg.spec.input.codec_name).model_shape(reg.input_spec)  # what the learner takes
    if reg.spec.task_type == "classification":
        ways = 5
        y = torch.arange(ways).repeat_interleave(n_per_class)
        return torch.rand(len(y), *shape, generator=gen), y, ways
    x = torch.rand(10, *shape, generator=gen) * 10 - 5
    return x, torch.sin(x), 0


@gpu
@pytest.mark.parametrize("ref", [r.ref for r in load_registry(REPO / "models").all()])
def test_every_learner_adapts_and_predicts_on_the_gpu_as_on_the_cpu(ref):
    cpu = load_registry(REPO / "models").resolve(ref)
    gpu_reg = load_registry(REPO / "models", "cuda").resolve(ref)
    x, y, ways = _support(cpu)
    want = cpu.learner.adapt(x, y, ways)
    got = gpu_reg.learner.adapt(x.cuda(), y.cuda(), ways)
    assert set(got) == set(want)
    for key in want:
        assert got[key].is_cuda
        if cpu.learner.batchable:
            torch.testing.assert_close(got[key].cpu(), want[key], rtol=2e-3, atol=2e-3)
        # per-task Adam (the fine-tuning learners) normalises near-zero gradients into steps of
        # the full learning rate whose sign rounding decides: photo-finetune's states after 10
        # steps differ by up to 0.04 between an H200 and the CPU while the probabilities served
        # differ by 3e-6 with the same argmax (2026-12-04). What a client is served is compared.
    # what a client is served: probabilities (classification) or values (regression). cuDNN's
    # float32 convolutions round differently from the CPU's; ten inner steps amplify that to
    # about 0.5% of ANIL's logits, well inside these tolerances once turned into probabilities
    out_cpu = cpu.task.outputs(cpu.learner.predict(want, x))
    out_gpu = gpu_reg.task.outputs(gpu_reg.learner.predict(got, x.cuda())).cpu()
    if cpu.spec.task_type == "classification":
        assert torch.equal(out_gpu.argmax(-1), out_cpu.argmax(-1))
        torch.testing.assert_close(out_gpu, out_cpu, rtol=0, atol=2e-3)
    else:
        torch.testing.assert_close(out_gpu, out_cpu, rtol=2e-3, atol=2e-3)


@gpu
def test_the_service_on_the_gpu_answers_as_on_the_cpu(tmp_path):
    from app.db.migrate import upgrade

    cases = [("sinusoid-maml", sine_support(), {"inputs": [[-1.0], [0.25], [2.5]]}),
             ("omniglot-protonet", image_support(), {"inputs": image_support()["inputs"]}),
             ("omniglot-maml", image_support(), {"inputs": image_support()["inputs"]})]
    answers: dict[str, list] = {}
    for device in ("cpu", "cuda"):
        settings = Settings(data_dir=tmp_path / device, models_dir=REPO / "models", device=device,
                            auth_enabled=False, warm_up=True, batching="on", torch_threads=1)
        settings.data_dir.mkdir(parents=True)
        upgrade(settings.resolved_database_url)
        with TestClient(create_app(settings)) as client:
            for name, support, query in cases:
                made = client.post("/v1/adapted-models", json={"meta_learner": name, "support": support})
                assert made.status_code == 201, made.text
                served = client.post(f"/v1/adapted-models/{made.json()['id']}/predictions", json=query)
                assert served.status_code == 200, served.text
                answers.setdefault(name, []).append(served.json()["predictions"])
    for name, (on_cpu, on_gpu) in answers.items():
        if name.startswith("sinusoid"):
            assert on_gpu == pytest.approx(on_cpu, rel=2e-3, abs=2e-3), name
        else:
            assert [p["label"] for p in on_gpu] == [p["label"] for p in on_cpu], name
            for a, b in zip(on_gpu, on_cpu, strict=True):
                assert a["probabilities"] == pytest.approx(b["probabilities"], abs=2e-3), name


def test_auto_batching_starts_batched_for_per_task_convolutions_on_a_gpu_only():
    """The static rule of ``auto``: per-task convolution kernels (omniglot-maml) start
    unbatched on the CPU and batched on a GPU (vmapped, 7x a loop on an H200)."""
    reg = load_registry(REPO / "models").resolve("omniglot-maml")
    assert not batching_pays(reg)
    on_gpu = SimpleNamespace(batchable=True, has_steps=True, initial_state=reg.learner.initial_state,
                             device=torch.device("cuda", 0))
    assert batching_pays(SimpleNamespace(learner=on_gpu))
    not_batchable = SimpleNamespace(batchable=False, has_steps=True, device=torch.device("cuda", 0),
                                    initial_state=reg.learner.initial_state)
    assert not batching_pays(SimpleNamespace(learner=not_batchable))
    # learners without per-task convolutions batch on either device
    assert batching_pays(load_registry(REPO / "models").resolve("omniglot-anil"))


@gpu
def test_the_service_on_the_gpu_starts_batching_per_task_convolutions(tmp_path):
    from app.db.migrate import upgrade

    settings = Settings(data_dir=tmp_path / "var", models_dir=REPO / "models", device="cuda",
                        auth_enabled=False, batching="auto")
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as c:
        batched = {ref.split("@")[0]: on for ref, on in c.app.state.engine.batched.items()}
    assert batched["omniglot-maml"] and batched["sinusoid-maml"]
