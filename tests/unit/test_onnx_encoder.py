"""The ONNX Runtime twin of the pinned sentence encoder: same embeddings as PyTorch, exported
once per cache folder, a bad cached graph exported again, the runtime bound to the manifest."""

from __future__ import annotations

import pytest
import torch

from app.meta import onnx_encoder, text_encoder
from app.meta.codec_registry import check_input_spec
from app.meta.manifest import InputSpec

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow

SENTENCES = [
    "book a table for four at the italian place tonight",
    "what's the weather like",
    "cancel my 3pm meeting with Dana and let everyone know",
    "play some jazz",
    "how many calories are in a banana?",
    "¿puedes poner una alarma a las siete?",
    "turn the lights off in the kitchen " * 40,  # longer than the encoder's 256 tokens
]


@pytest.fixture()
def fresh(monkeypatch, tmp_path):
    """No encoder loaded in this process yet, and an empty cache folder."""
    monkeypatch.setattr(text_encoder, "_loaded", {})
    monkeypatch.setenv("METASERVE_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_onnx_embeddings_agree_with_pytorch(fresh):
    ort = text_encoder.load_encoder("all-MiniLM-L6-v2", "onnx")
    pt = text_encoder.load_encoder("all-MiniLM-L6-v2", "torch")
    a, b = ort.encode(SENTENCES), pt.encode(SENTENCES)
    assert a.shape == b.shape == (len(SENTENCES), 384) and a.dtype == torch.float32
    cosine = (a * b).sum(-1)
    assert cosine.min() >= 0.999, cosine
    assert torch.allclose(a.norm(dim=-1), torch.ones(len(SENTENCES)), atol=1e-5)
    # order and batching do not change a sentence's embedding beyond float noise
    again = ort.encode(list(reversed(SENTENCES)), batch_size=2).flip(0)
    assert (again * a).sum(-1).min() >= 0.99999


def test_the_exported_graph_is_reused_from_the_cache(fresh, monkeypatch):
    first = text_encoder.load_encoder("all-MiniLM-L6-v2", "onnx").encode(SENTENCES[:3])
    graphs = list((fresh / "encoders").glob("*.onnx"))
    assert len(graphs) == 1 and graphs[0].stat().st_size > 1_000_000

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cached graph is good")

    monkeypatch.setattr(onnx_encoder, "_export", no_export)
    monkeypatch.setattr(text_encoder, "_loaded", {})
    second = text_encoder.load_encoder("all-MiniLM-L6-v2", "onnx").encode(SENTENCES[:3])
    assert torch.equal(first, second)


def test_a_corrupt_cached_graph_is_exported_again(fresh):
    text_encoder.load_encoder("all-MiniLM-L6-v2", "onnx")
    graph = next((fresh / "encoders").glob("*.onnx"))
    graph.write_bytes(b"not an onnx graph")
    text_encoder._loaded.clear()
    encoder = text_encoder.load_encoder("all-MiniLM-L6-v2", "onnx")
    reference = text_encoder.load_encoder("all-MiniLM-L6-v2", "torch").encode(SENTENCES[:2])
    assert (encoder.encode(SENTENCES[:2]) * reference).sum(-1).min() >= 0.999
    assert graph.stat().st_size > 1_000_000  # replaced by a good graph


def test_an_unwritable_cache_keeps_the_graph_in_memory(fresh, monkeypatch):
    blocked = fresh / "file-not-folder"
    blocked.write_text("x")
    monkeypatch.setenv("METASERVE_CACHE_DIR", str(blocked))
    encoder = text_encoder.load_encoder("all-MiniLM-L6-v2", "onnx")
    assert encoder.encode(["hello"]).shape == (1, 384)


def test_the_runtime_is_part_of_the_input_spec(monkeypatch):
    spec = {"kind": "text", "shape": [384], "encoder": "all-MiniLM-L6-v2", "max_chars": 512}
    assert InputSpec(**spec).runtime is None  # versions without it keep PyTorch
    assert InputSpec(**spec, runtime="onnx").runtime == "onnx"
    with pytest.raises(ValueError, match="runtime 'tensorrt' is unknown"):
        check_input_spec(InputSpec(**spec, runtime="tensorrt"))
    monkeypatch.setattr(text_encoder.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(text_encoder.EncoderUnavailable, match="needs the package onnxruntime"):
        text_encoder.check_encoder("all-MiniLM-L6-v2", "onnx")


def test_int8_embeddings_stay_close_to_pytorch_and_are_reproducible(fresh):
    int8 = text_encoder.load_encoder("all-MiniLM-L6-v2", "onnx-int8")
    pt = text_encoder.load_encoder("all-MiniLM-L6-v2", "torch")
    a = int8.encode(SENTENCES)
    cosine = (a * pt.encode(SENTENCES)).sum(-1)
    assert cosine.mean() >= 0.97 and cosine.min() >= 0.9, cosine
    assert cosine.min() < 0.9999  # it is really the quantised graph, not the float32 one
    import onnxruntime

    names = sorted(p.name for p in (fresh / "encoders").glob("*.onnx"))
    versions = f"opset17-torch{torch.__version__}-ort{onnxruntime.__version__}"
    assert names == [f"all-MiniLM-L6-v2-53aa51172d142c89-{versions}-int8.onnx"]
    # a second export (another process, an emptied cache) gives the same embeddings
    next((fresh / "encoders").glob("*.onnx")).unlink()
    text_encoder._loaded.clear()
    again = text_encoder.load_encoder("all-MiniLM-L6-v2", "onnx-int8").encode(SENTENCES)
    assert torch.equal(a, again)


def test_an_int8_embedding_depends_on_its_sentence_only(fresh):
    """int8 activations are quantised with one scale per call: a sentence batched with others
    would come out differently than alone, so each sentence is its own call."""
    encoder = text_encoder.load_encoder("all-MiniLM-L6-v2", "onnx-int8")
    together = encoder.encode(SENTENCES)
    alone = torch.cat([encoder.encode([s]) for s in SENTENCES])
    reordered = encoder.encode(SENTENCES[::-1]).flip(0)
    assert torch.equal(together, alone) and torch.equal(together, reordered)


@pytest.mark.parametrize("runtime", ["torch", "onnx-int8"])
def test_the_text_codec_embeds_a_sentence_once_per_process(fresh, monkeypatch, runtime):
    from app.meta.codecs import InputLimits
    from app.meta.text_codecs import TextCodec

    spec = InputSpec(kind="text", shape=[384], encoder="all-MiniLM-L6-v2", max_chars=2000, runtime=runtime)
    encoder = text_encoder.load_encoder("all-MiniLM-L6-v2", runtime)
    embedded: list[str] = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode",
                        lambda sentences, **kw: embedded.extend(sentences) or original(sentences))
    codec, limits = TextCodec(), InputLimits()
    first = codec.decode(SENTENCES[:3] + SENTENCES[:1], spec, "inputs", limits)  # a repeat in one request
    assert embedded == SENTENCES[:3] and torch.equal(first[0], first[3])
    second = codec.decode(SENTENCES[1:5], spec, "inputs", limits)
    assert embedded == SENTENCES[:3] + SENTENCES[3:5]  # only the new sentences were embedded
    assert torch.equal(second[:2], first[1:3])
    assert torch.allclose(second, original(SENTENCES[1:5]), atol=1e-6)  # what embedding them again gives
    off = TextCodec()
    off.decode(SENTENCES[:2], spec, "inputs", InputLimits(embedding_cache_bytes=0))
    off.decode(SENTENCES[:2], spec, "inputs", InputLimits(embedding_cache_bytes=0))
    assert embedded[-4:] == SENTENCES[:2] * 2  # no cache: embedded every time


def test_a_layered_encoder_pools_its_layers_the_same_in_pytorch_and_onnx(fresh):
    """all-MiniLM-L6-v2-layers-4-6: the same weights, layers 4-6 each mean-pooled and
    normalised, concatenated; its last third is the plain encoder's embedding."""
    spec = text_encoder.ENCODERS["all-MiniLM-L6-v2-layers-4-6"]
    assert spec.layers == (4, 5, 6) and spec.dim == 1152
    assert spec.sha256 == text_encoder.ENCODERS["all-MiniLM-L6-v2"].sha256
    layered = text_encoder.load_encoder("all-MiniLM-L6-v2-layers-4-6", "torch").encode(SENTENCES)
    plain = text_encoder.load_encoder("all-MiniLM-L6-v2", "torch").encode(SENTENCES)
    assert layered.shape == (len(SENTENCES), 1152)
    assert torch.allclose(layered.norm(dim=-1), torch.ones(len(SENTENCES)), atol=1e-5)
    last = torch.nn.functional.normalize(layered[:, 768:], dim=-1)
    assert (last * plain).sum(-1).min() >= 0.99999  # layer 6 pooled: sentence-transformers' own
    assert (torch.nn.functional.normalize(layered[:, :384], dim=-1) * plain).sum(-1).max() < 0.999
    float32 = text_encoder.load_encoder("all-MiniLM-L6-v2-layers-4-6", "onnx").encode(SENTENCES)
    assert (float32 * layered).sum(-1).min() >= 0.999
    int8 = text_encoder.load_encoder("all-MiniLM-L6-v2-layers-4-6", "onnx-int8")
    a = int8.encode(SENTENCES)
    cosine = (a * layered).sum(-1)
    assert cosine.mean() >= 0.97 and cosine.min() >= 0.9, cosine
    assert torch.equal(int8.encode(SENTENCES[:1]), a[:1])  # a sentence alone: the same embedding


def test_per_task_fine_tuning_refuses_a_layered_encoder():
    from app.meta.checkpoint import build_learner

    spec = {"algorithm": "protonet-encoder-finetune", "backbone": "embedding_adapter",
            "backbone_args": {"dim": 1152, "hidden": 8, "scale": 8.0}, "task_type": "classification",
            "hparams": {"text_encoder": "all-MiniLM-L6-v2-layers-4-6"}}
    with pytest.raises(ValueError, match="pools several layers"):
        build_learner(spec, seed=0)
