"""The serving engine: adaptation and prediction in the worker pool, states via the cache."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from app.core.metrics import Metrics
from app.core.problems import ArtifactCorrupt
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


class ServingEngine:
    def __init__(self, registry: Registry, store: ArtifactStore, cache: StateCache,
                 executor: Executor, metrics: Metrics) -> None:
        self.registry, self.store, self.cache = registry, store, cache
        self.executor, self.metrics = executor, metrics

    def adapt(self, reg: RegisteredLearner, x: Tensor, y: Tensor, ways: int,
              steps: int | None) -> AdaptResult:
        """Adapt in a worker; report steps, duration and support loss before and after."""

        def work() -> AdaptResult:
            learner = reg.learner
            t0 = time.perf_counter()
            state = learner.adapt(x, y, ways, AdaptOptions(steps=steps))
            duration = time.perf_counter() - t0
            start = learner.initial_state(ways)
            report = {
                "steps": learner.resolve_steps(AdaptOptions(steps)) if learner.has_steps else 0,
                "duration_ms": round(duration * 1000, 3),
                "support_loss_before": None if start is None else learner.support_loss(start, x, y),
                "support_loss_after": learner.support_loss(state, x, y),
            }
            self.metrics.adaptation.labels(reg.name).observe(duration)
            return AdaptResult(state, encode_state(state), report)

        return self.executor.run(work)

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
        self.metrics.cache_bytes.set(self.cache.size_bytes)
        self.metrics.cache_entries.set(len(self.cache))
        return state

    def remember(self, sha256: str, state: State) -> None:
        self.cache.put(sha256, state)
        self.metrics.cache_bytes.set(self.cache.size_bytes)
        self.metrics.cache_entries.set(len(self.cache))

    def predict(self, reg: RegisteredLearner, state: State, x: Tensor) -> Tensor:
        def work() -> Tensor:
            t0 = time.perf_counter()
            out = reg.learner.predict(state, x)
            if reg.task_type == "classification":
                out = torch.softmax(out, dim=-1)
            self.metrics.prediction.labels(reg.name).observe(time.perf_counter() - t0)
            return out

        return self.executor.run(work)
