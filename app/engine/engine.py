"""The serving engine: adaptation and prediction in the worker pool, states via the cache.

With batching on, concurrent adaptations of one meta-learner with one task shape run as one
vmapped ``adapt_batch``, and concurrent predictions of different adapted models of one
meta-learner run as one vmapped ``predict_batch`` over their stacked states. ``auto`` batches
except where a per-task state holds convolution kernels and the device is a CPU: vmapping
them turns each convolution into a grouped one, which is slower on CPU than a loop (see
``benchmarks/throughput.py``).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from app.core.metrics import Metrics
from app.core.problems import ArtifactCorrupt
from app.engine.batcher import MicroBatcher
from app.engine.cache import StateCache
from app.engine.executor import Executor
from app.engine.registry import RegisteredLearner, Registry
from app.meta.algorithms import AdaptOptions
from app.storage.artifacts import (
    ArtifactCorrupted,
    ArtifactMissing,
    ArtifactStore,
    decode_state,
    encode_state,
)

State = dict[str, Tensor]


@dataclass
class AdaptResult:
    state: State
    artifact: bytes
    report: dict[str, Any]


@dataclass(frozen=True)
class BatchingPolicy:
    mode: str = "auto"  # "auto" | "on" | "off"
    max_batch: int = 32
    max_wait_ms: float = 2.0


def batching_pays(reg: RegisteredLearner, policy: BatchingPolicy) -> bool:
    if policy.mode != "auto":
        return policy.mode == "on"
    state = reg.learner.initial_state(2) if reg.learner.has_steps else None
    per_task_conv = state is not None and any(t.dim() == 4 for t in state.values())
    return not per_task_conv


class ServingEngine:
    def __init__(self, registry: Registry, store: ArtifactStore, cache: StateCache,
                 executor: Executor, metrics: Metrics, batching: BatchingPolicy | None = None,
                 artifact_grace_seconds: float = 0.0) -> None:
        self.registry, self.store, self.cache = registry, store, cache
        self.artifact_grace_seconds = artifact_grace_seconds
        self.executor, self.metrics = executor, metrics
        self.policy = batching or BatchingPolicy()
        self.batched = {name: batching_pays(reg, self.policy) for name, reg in registry.learners.items()}
        self.adapt_batcher = MicroBatcher(self._adapt_many, self.policy.max_batch, self.policy.max_wait_ms)
        self.predict_batcher = MicroBatcher(self._predict_many, self.policy.max_batch,
                                            self.policy.max_wait_ms)

    # ----- adaptation ----------------------------------------------------------------------
    def adapt(self, reg: RegisteredLearner, x: Tensor, y: Tensor, ways: int,
              steps: int | None) -> AdaptResult:
        """Adapt in a worker; report steps, duration and support loss before and after."""
        if self.batched.get(reg.name):
            key = ("adapt", reg.name, tuple(x.shape), tuple(y.shape), ways, steps)
            return self.adapt_batcher.submit(key, (reg, x, y, ways, steps))
        return self._adapt_many(None, [(reg, x, y, ways, steps)])[0]

    def _adapt_many(self, key: Hashable, items: list[tuple]) -> list[AdaptResult]:
        reg, _, _, ways, steps = items[0]
        learner = reg.learner

        def work() -> list[AdaptResult]:
            t0 = time.perf_counter()
            options = AdaptOptions(steps=steps)
            if len(items) == 1:
                states = [learner.adapt(items[0][1], items[0][2], ways, options)]
            else:
                stacked = learner.adapt_batch(torch.stack([i[1] for i in items]),
                                              torch.stack([i[2] for i in items]), ways, options)
                states = [{k: v[j] for k, v in stacked.items()} for j in range(len(items))]
            duration = time.perf_counter() - t0
            start = learner.initial_state(ways)
            results = []
            for (_, x, y, _, _), state in zip(items, states, strict=True):
                report = {
                    "steps": learner.resolve_steps(options) if learner.has_steps else 0,
                    "duration_ms": round(duration * 1000, 3),
                    "support_loss_before": None if start is None else learner.support_loss(start, x, y),
                    "support_loss_after": learner.support_loss(state, x, y),
                }
                results.append(AdaptResult(state, encode_state(state), report))
                self.metrics.adaptation.labels(reg.name).observe(duration)
            return results

        return self.executor.run(work)

    def warm_up(self) -> None:
        """Adapt and predict once per meta-learner on a dummy task, so that the first client
        does not pay the one-off cost of PyTorch's function transforms (about 1.5 s here)."""
        for reg in self.registry.learners.values():
            x = torch.zeros(2, *reg.input_spec["shape"])
            classify = reg.task_type == "classification"
            y = torch.tensor([0, 1]) if classify else torch.zeros(2, 1)
            steps = 1 if reg.learner.has_steps else None
            state = self._adapt_many(None, [(reg, x, y, 2 if classify else 0, steps)])[0].state
            self._predict_many(None, [(reg, state, x)])

    # ----- states ----------------------------------------------------------------------------
    def load_state(self, sha256: str) -> State:
        """The state for an artifact: from the cache, else from the store (checksum verified)."""

        def load() -> State:
            try:
                return decode_state(self.store.get(sha256))
            except ArtifactCorrupted as exc:
                self.metrics.corrupt_artifacts.inc()
                raise ArtifactCorrupt(f"the stored state {sha256} does not match its checksum; "
                                      "it will not be served") from exc
            except ArtifactMissing as exc:
                raise ArtifactCorrupt(f"the stored state {sha256} is missing") from exc

        state, hit = self.cache.get_or_load(sha256, load)
        self.metrics.cache_lookups.labels("hit" if hit else "miss").inc()
        self._gauge_cache()
        return state

    def remember(self, sha256: str, state: State) -> None:
        self.cache.put(sha256, state)
        self._gauge_cache()

    def _gauge_cache(self) -> None:
        self.metrics.cache_bytes.set(self.cache.size_bytes)
        self.metrics.cache_entries.set(len(self.cache))

    # ----- prediction ------------------------------------------------------------------------
    def predict(self, reg: RegisteredLearner, state: State, x: Tensor) -> Tensor:
        """Probabilities (classification) or values (regression) for one adapted model."""
        if self.batched.get(reg.name):
            shapes = tuple(sorted((k, tuple(v.shape)) for k, v in state.items()))
            key = ("predict", reg.name, tuple(x.shape), shapes)
            return self.predict_batcher.submit(key, (reg, state, x))
        return self._predict_many(None, [(reg, state, x)])[0]

    def _predict_many(self, key: Hashable, items: list[tuple]) -> list[Tensor]:
        reg = items[0][0]

        def work() -> list[Tensor]:
            t0 = time.perf_counter()
            if len(items) == 1:
                outs = [reg.learner.predict(items[0][1], items[0][2])]
            else:
                states = {k: torch.stack([i[1][k] for i in items]) for k in items[0][1]}
                outs = list(reg.learner.predict_batch(states, torch.stack([i[2] for i in items])))
            if reg.task_type == "classification":
                outs = [torch.softmax(o, dim=-1) for o in outs]
            elapsed = time.perf_counter() - t0
            for _ in items:
                self.metrics.prediction.labels(reg.name).observe(elapsed)
            return outs

        return self.executor.run(work)
