"""A pinned sentence encoder run by ONNX Runtime, in float32 (``onnx``) or with int8 weights
(``onnx-int8``, about three times as fast on CPUs with int8 dot products; one sentence per call,
so that a sentence's embedding does not depend on the others).

The graph is exported from the packaged PyTorch weights (no download) the first time a process
needs it (the int8 graph: quantised from it, weights per output channel, activations per
batch) and kept in ``$METASERVE_CACHE_DIR/encoders/`` for the next start (in memory only where
that folder cannot be written). Every load checks the graph against PyTorch on fixed probe
sentences, so a stale, truncated or foreign cached file is exported again, never served:
float32 must agree to cosine >= 0.999 on every probe; int8 embeddings move further (about 0.99
on average), so its bound is looser, and a learner served on int8 embeddings is meta-trained
and evaluated on them. The meta-learner's manifest chooses the runtime (``input.runtime``), so
a version measured on one runtime's embeddings keeps them.
"""

from __future__ import annotations

import copy
import io
import logging
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from app.atomic_io import atomic_write_bytes

log = logging.getLogger(__name__)

# runtime -> (least cosine to PyTorch on any probe, least mean cosine over the probes)
AGREEMENT = {"onnx": (0.999, 0.999), "onnx-int8": (0.9, 0.97)}
OPSET = 17
PROBES = [
    "what is my account balance",
    "Wake me up at 7am tomorrow, please!",
    "is it going to rain in Paris this weekend",
    "x",
    "I'd like to transfer two hundred dollars from checking to savings before Friday's rent is due",
]


class OnnxUnavailable(Exception):
    """onnxruntime is missing or the exported graph disagrees with PyTorch."""


class _Pooled(torch.nn.Module):
    """Token states -> mean over the attention mask -> L2-normalised (the sentence-transformers
    pooling of the pinned encoders), or with ``layers`` the spec's pooling of those layers
    (``app.meta.text_encoder.pool_layers``)."""

    def __init__(self, transformer: torch.nn.Module, layers: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.transformer, self.layers = transformer, layers

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        if self.layers:
            from app.meta.text_encoder import pool_layers

            states = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                      output_hidden_states=True).hidden_states
            return pool_layers(states, attention_mask, self.layers)
        states = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def _export(transformer: torch.nn.Module, tokenizer, layers: tuple[int, ...] = ()) -> bytes:
    sample = tokenizer(PROBES[:2], padding=True, return_tensors="pt")
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python branches
        torch.onnx.export(
            _Pooled(transformer, layers).eval(), (sample["input_ids"], sample["attention_mask"]), buffer,
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
            opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


class OnnxSentenceEncoder:
    """``encode(sentences) -> [n, dim]`` float32, L2-normalised, computed by ONNX Runtime.

    ``per_sentence`` (the int8 graph): every sentence is its own call. That graph quantises its
    activations with one scale per call, so a sentence batched with others came out differently
    from the same sentence alone (cosine down to 0.98): its embedding, and a prediction, would
    depend on the other inputs of the request. The calls run on ``encoder_threads()`` threads of
    one intra-op thread each; measured on 2 cores against length-sorted batches on 2 intra-op
    threads: 70.5 vs 72.7 ms for 32 sentences, 148 vs 212 ms for 100, and a sentence's embedding
    is a function of the sentence only, which also makes embeddings safe to cache."""

    def __init__(self, spec, graph: bytes, tokenizer, max_tokens: int, per_sentence: bool = False) -> None:
        from app.meta.runtime import encoder_threads

        self.spec, self._tokenizer, self._max_tokens = spec, tokenizer, max_tokens
        self.per_sentence = per_sentence
        threads = encoder_threads()
        self._session = _session(graph, 1 if per_sentence else threads)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="encoder") if per_sentence else None
        self._lock = threading.Lock()  # the fast tokenizer is not thread-safe

    def encode(self, sentences: list[str], batch_size: int = 64) -> Tensor:
        if self.per_sentence:
            return self._encode_each(sentences)
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))  # less padding per batch
        out = np.empty((len(sentences), self.spec.dim), dtype=np.float32)
        with self._lock:
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                tokens = self._tokenizer([sentences[i] for i in rows], padding=True, truncation=True,
                                         max_length=self._max_tokens, return_tensors="np")
                out[rows] = self._run(tokens["input_ids"], tokens["attention_mask"])
        return torch.from_numpy(out)

    def _encode_each(self, sentences: list[str]) -> Tensor:
        with self._lock:
            ids = self._tokenizer(list(sentences), truncation=True, max_length=self._max_tokens)["input_ids"]

        def one(row: list[int]) -> np.ndarray:
            tokens = np.asarray([row], dtype=np.int64)
            return self._run(tokens, np.ones_like(tokens))

        return torch.from_numpy(np.concatenate(list(self._pool.map(one, ids))))

    def close(self) -> None:
        """Stop this encoder's threads (an encoder that is not going to be served)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"input_ids": input_ids.astype(np.int64),
                                        "attention_mask": attention_mask.astype(np.int64)})[0]


def _session(graph: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle threads sleep instead of spinning: the workers' PyTorch threads share these cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quantise(graph: bytes) -> bytes:
    """int8 weights per output channel for every MatMul/Gemm; activations quantised per batch."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        root = logging.getLogger()
        quiet = _DropAdvice()
        root.addFilter(quiet)  # the quantiser's advice to pre-process the graph first (not needed here)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.removeFilter(quiet)
        return dst.read_bytes()


def _agreement(encoder: OnnxSentenceEncoder, reference: Tensor, runtime: str) -> tuple[bool, str]:
    cosine = (encoder.encode(PROBES) * reference).sum(-1)
    least, least_mean = AGREEMENT[runtime]
    ok = float(cosine.min()) >= least and float(cosine.mean()) >= least_mean
    return ok, f"cosine to PyTorch min {float(cosine.min()):.6f} (>= {least}), mean {float(cosine.mean()):.6f} " \
               f"(>= {least_mean})"


def onnx_encoder(spec, torch_encoder, cache_dir: Path, runtime: str = "onnx") -> OnnxSentenceEncoder:
    """The ONNX Runtime twin of ``torch_encoder`` (a loaded ``SentenceEncoder`` of ``spec``) for
    ``runtime`` (``onnx`` or ``onnx-int8``), from the cached graph when it still agrees with
    PyTorch, else exported afresh."""
    if runtime not in AGREEMENT:
        raise OnnxUnavailable(f"unknown ONNX runtime {runtime!r}; known: {sorted(AGREEMENT)}")
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxUnavailable(f"encoder {spec.name}: the {runtime} runtime needs the package onnxruntime") from exc
    model = torch_encoder.model
    # a tokenizer of its own: the PyTorch encoder's is used under that encoder's lock
    transformer, max_tokens = model[0].auto_model, model.max_seq_length
    tokenizer = copy.deepcopy(model[0].tokenizer)
    reference = torch_encoder.encode(PROBES)
    # the exporter's and quantiser's versions name the file: another version exports afresh, so
    # the served graph is always the one these libraries make from the pinned weights
    versions = f"opset{OPSET}-torch{torch.__version__}-ort{onnxruntime.__version__}"
    suffix = "-int8" if runtime == "onnx-int8" else ""
    per_sentence = runtime == "onnx-int8"  # activations quantised per call (see OnnxSentenceEncoder)
    path = Path(cache_dir) / "encoders" / f"{spec.name}-{spec.sha256[:16]}-{versions}{suffix}.onnx"
    if path.is_file():
        try:
            cached = OnnxSentenceEncoder(spec, path.read_bytes(), tokenizer, max_tokens, per_sentence)
            ok, how = _agreement(cached, reference, runtime)
            if ok:
                return cached
            cached.close()
            log.warning("encoder %s: the cached ONNX graph %s disagrees with PyTorch (%s); exporting it again",
                        spec.name, path, how)
        except Exception as exc:  # an unreadable graph is re-exported, not served
            log.warning("encoder %s: the cached ONNX graph %s does not load (%s); exporting it again",
                        spec.name, path, exc)
    graph = _export(transformer, tokenizer, spec.layers)
    if runtime == "onnx-int8":
        graph = _quantise(graph)
    encoder = OnnxSentenceEncoder(spec, graph, tokenizer, max_tokens, per_sentence)
    ok, how = _agreement(encoder, reference, runtime)
    if not ok:
        encoder.close()
        raise OnnxUnavailable(f"encoder {spec.name}: the exported {runtime} graph disagrees with PyTorch ({how})")
    try:
        atomic_write_bytes(path, graph)
    except OSError as exc:
        log.info("encoder %s: the ONNX graph is kept in memory only (%s cannot be written: %s)",
                 spec.name, path, exc)
    return encoder
