"""Whether micro-batching pays, per meta-learner version and kind of call, from measurements.

``METASERVE_BATCHING=auto`` starts from the static rule (``batching_pays``: batch, except
per-task convolution kernels) and then follows what it measures: the compute time per task of
batched calls (two or more tasks in one vmapped call) against that of single calls, as
exponentially weighted means. It batches while batched calls are cheaper per task. A static
rule cannot know the machine: on this 2-core CPU a vmapped sinusoid-maml batch costs less per
task than one task alone, while on a 16-core H200 machine batched gradient-based adaptations
ran 4-7x slower than unbatched ones under 32 clients (README, Performance).

Both estimates stay current: when batching is off, every ``probe_every``-th call opens a probe
window of ``probe_len`` calls that go through the batcher (concurrent ones form batches and are
measured); when it is on, lone requests are single calls anyway. ``on`` and ``off`` are fixed.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass
class _Estimate:
    single: float | None = None  # seconds per task, one task per call
    batched: float | None = None  # seconds per task, two or more per call
    singles: int = 0
    batches: int = 0
    batch: bool = True
    calls: int = 0
    probing: int = 0  # calls left in the current probe window


class BatchChoice:
    """``initial``: the static rule per key; ``never``: keys that must not batch at all
    (learners whose batched adaptation is not exact), whatever the mode."""

    def __init__(self, mode: str, initial: dict[Hashable, bool], never: set[Hashable] | None = None,
                 alpha: float = 0.2, min_samples: int = 8, probe_every: int = 200,
                 probe_len: int = 32) -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"unknown batching mode {mode!r}")
        self.mode = mode
        self.alpha, self.min_samples = alpha, min_samples
        self.probe_every, self.probe_len = probe_every, probe_len
        self._lock = threading.Lock()
        self._estimates = {key: _Estimate(batch=on) for key, on in initial.items()}
        self._fixed = set(never or ())

    def add(self, key: Hashable, on: bool, never: bool) -> None:
        """A key that appeared later (a version published while serving)."""
        with self._lock:
            self._estimates.setdefault(key, _Estimate(batch=on))
            if never:
                self._fixed.add(key)

    def batch(self, key: Hashable) -> bool:
        """Whether this call should go through the micro-batcher."""
        if self.mode != "auto":
            return self.mode == "on" and key not in self._fixed
        if key in self._fixed:
            return False
        with self._lock:
            est = self._estimates.setdefault(key, _Estimate())
            est.calls += 1
            if est.batch:
                return True
            if est.probing:
                est.probing -= 1
                return True
            if est.calls % self.probe_every == 0:
                est.probing = self.probe_len - 1
                return True
            return False

    def record(self, key: Hashable, tasks: int, seconds: float) -> bool:
        """The compute time of one call of ``tasks`` tasks; returns whether the choice for
        ``key`` changed."""
        if self.mode != "auto" or key in self._fixed or tasks < 1:
            return False
        per_task = seconds / tasks
        with self._lock:
            est = self._estimates.setdefault(key, _Estimate())
            if tasks == 1:
                est.single = per_task if est.single is None else (
                    (1 - self.alpha) * est.single + self.alpha * per_task)
                est.singles += 1
            else:
                est.batched = per_task if est.batched is None else (
                    (1 - self.alpha) * est.batched + self.alpha * per_task)
                est.batches += 1
            if est.singles >= self.min_samples and est.batches >= self.min_samples:
                before, est.batch = est.batch, est.batched < est.single
                return est.batch != before
            return False

    def decisions(self) -> dict[Hashable, bool]:
        """The current choice per key (for the service's description and tests)."""
        with self._lock:
            chosen = {key: (self.mode == "on" if self.mode != "auto" else est.batch)
                      for key, est in self._estimates.items()}
        for key in self._fixed:
            chosen[key] = False
        return chosen

    def estimates(self, key: Hashable) -> tuple[float | None, float | None]:
        """(single, batched) seconds per task as measured so far."""
        with self._lock:
            est = self._estimates.get(key, _Estimate())
            return est.single, est.batched
