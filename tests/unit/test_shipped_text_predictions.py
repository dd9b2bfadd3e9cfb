"""Every shipped text version adapts and predicts as it did when it shipped: a fixed support set
and queries, outputs compared with the ones recorded (``shipped_text_predictions.json``).

A change of code that moves a served version's outputs (a default, an op order that changes
more than rounding, a preprocessing step) fails here; a new behaviour ships as a new version.
The tolerance covers the CPU's float kernels only (fine-tuning amplifies their rounding a
little). The figures are this project's CPUs', to 6 decimals, computed on one thread. The
text-protonet-finetune versions draw their pseudo-episodes from a seed hashed from the support's
embedding bits, so a CPU whose float kernels round the embeddings otherwise draws other episodes
and adapts another model (same accuracy in distribution). The versions whose encoder runs with int8
weights (ONNX Runtime) embed otherwise on a CPU without int8 dot-product instructions (VNNI):
ONNX Runtime's int8 kernels for AVX2 alone round differently (logits moved by up to 0.5 here).
The records of both kinds hold one set of outputs per CPU family this project runs on, and a
run must match one of them exactly (within the tolerance), never a blend.

Record after adding a version (never to make a change pass); versions already recorded keep
their record, and on a CPU family not yet recorded ``--add-cpu`` adds its outputs for the versions
seeded by the support or on int8 embeddings (the others must already match):
``python -m tests.unit.test_shipped_text_predictions --record [--add-cpu]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from app.meta.checkpoint import load_meta_learner
from app.meta.codec_registry import codec_for
from app.meta.codecs import InputLimits
from app.meta.manifest import InputSpec
from app.meta.text_encoder import EncoderUnavailable

pytestmark = pytest.mark.slow

MODELS = Path(__file__).resolve().parents[2] / "models"
RECORDED = Path(__file__).with_name("shipped_text_predictions.json")
SUPPORT = ["I forgot my password", "I can't log in to my account", "reset my password please",
           "where is my parcel", "my order has not arrived", "track my delivery",
           "I want my money back", "refund this purchase", "how do I get a refund"]
LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2]
QUERIES = ["the password reset link does not work", "the package is late", "please give me a refund",
           "what is the weather like"]
ATOL = 2e-3


def text_versions() -> list[Path]:
    return sorted(p.parent for p in MODELS.glob("*/*/manifest.json")
                  if json.loads(p.read_text())["input"]["kind"] == "text")


def outputs(folder: Path) -> list[list[float]]:
    torch.set_num_threads(1)
    learner, manifest = load_meta_learner(folder)
    spec = InputSpec.model_validate(manifest["input"])
    codec = codec_for(spec.codec_name)

    def decode(sentences):
        return codec.decode(sentences, spec, "inputs", InputLimits())

    state = learner.adapt(decode(SUPPORT), torch.tensor(LABELS), 3)
    with torch.no_grad():
        logits = learner.predict(state, decode(QUERIES))
    return [[round(float(v), 6) for v in row] for row in logits]


def cpu_dependent(folder: Path) -> bool:
    """Whether the version's outputs depend on the CPU family (see the module's docstring)."""
    learner, manifest = load_meta_learner(folder)
    return learner.seeds_from_support or manifest["input"].get("runtime") == "onnx-int8"


def variants(entry: list) -> list[list[list[float]]]:
    """A version's recorded outputs: one set, or one per CPU family."""
    return entry if isinstance(entry[0][0], list) else [entry]


def ref(folder: Path) -> str:
    return f"{folder.parent.name}@{folder.name}"


def test_every_text_version_is_recorded():
    assert sorted(json.loads(RECORDED.read_text())) == sorted(ref(f) for f in text_versions())


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("folder", text_versions(), ids=ref)
def test_a_shipped_text_version_predicts_as_recorded(folder):
    try:
        got = torch.tensor(outputs(folder))
    except EncoderUnavailable as exc:  # an optional encoder's packages are not installed here
        pytest.skip(str(exc))
    recorded = [torch.tensor(v) for v in variants(json.loads(RECORDED.read_text())[ref(folder)])]
    assert all(got.shape == expected.shape for expected in recorded)
    nearest = min(recorded, key=lambda expected: float((got - expected).abs().max()))
    assert torch.equal(got.argmax(-1), nearest.argmax(-1))
    assert torch.allclose(got, nearest, rtol=0, atol=ATOL), (got - nearest).abs().max()


def test_a_version_with_steps_by_classes_is_its_predecessor_on_tasks_of_many_intents():
    """text-encoder-finetune-mpnet 1.2.0 scales its steps with the classes: its weights and
    hyperparameters are 1.1.0's, and tasks of 64 or 150 intents (HWU64's, CLINC150's) get 1.1.0's
    steps, so its evaluation on them is 1.1.0's arithmetic; a 10-intent task gets a quarter."""
    try:
        old, _ = load_meta_learner(MODELS / "text-encoder-finetune-mpnet" / "1.1.0")
        new, manifest = load_meta_learner(MODELS / "text-encoder-finetune-mpnet" / "1.2.0")
    except EncoderUnavailable as exc:
        pytest.skip(str(exc))
    assert manifest["weights_sha256"] == json.loads(
        (MODELS / "text-encoder-finetune-mpnet" / "1.1.0" / "manifest.json").read_text())["weights_sha256"]
    assert new.hp.episodes_per_class == 20 and dataclasses.replace(new.hp, episodes_per_class=0) == old.hp
    many = (64, 150)
    assert [new.default_steps_for(w) for w in many] == [old.default_steps_for(w) for w in many] == [80, 80]
    assert new.default_steps_for(10) == 20 and old.default_steps_for(10) == 80


def test_the_version_reading_label_names_is_its_predecessor_without_them():
    """text-protonet-head 1.2.0 is 1.1.0 (the same weights and hyperparameters) that also reads
    the labels' names; without names (this file's support has numbers for labels) it is 1.1.0's
    arithmetic, so its record holds 1.1.0's outputs on each CPU family."""
    old, _ = load_meta_learner(MODELS / "text-protonet-head" / "1.1.0")
    new, manifest = load_meta_learner(MODELS / "text-protonet-head" / "1.2.0")
    assert manifest["weights_sha256"] == json.loads(
        (MODELS / "text-protonet-head" / "1.1.0" / "manifest.json").read_text())["weights_sha256"]
    assert new.hp.label_names and dataclasses.replace(new.hp, label_names=False) == old.hp
    recorded = json.loads(RECORDED.read_text())
    assert recorded["text-protonet-head@1.2.0"] == recorded["text-protonet-head@1.1.0"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="record the shipped text versions' outputs")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--add-cpu", action="store_true",
                        help="also add this CPU's outputs of the versions seeded by their support or on "
                        "int8 embeddings")
    parser.add_argument("--out", type=Path, default=RECORDED)
    args = parser.parse_args()
    recorded = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for folder in text_versions():
        name, got = ref(folder), outputs(folder)
        print(name, json.dumps(got))
        if name not in recorded:
            recorded[name] = got
        elif args.add_cpu and cpu_dependent(folder):
            known = variants(recorded[name])
            if not any(torch.allclose(torch.tensor(got), torch.tensor(k), rtol=0, atol=ATOL) for k in known):
                recorded[name] = [*known, got]
    if args.record:
        args.out.write_text(json.dumps(recorded, indent=1) + "\n")
