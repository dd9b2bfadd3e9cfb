"""Where a lean call runs: on the event loop when nothing else could wait for it, in a worker
thread otherwise.

A lean route's work (authentication, database, engine) is synchronous. Handing it to a worker
thread and its result back costs two thread wake-ups, which on a virtual machine whose idle
vCPUs sleep cost far more than in a busy process (the 5-point sinusoid adaptation and its
100-point prediction over HTTP on 2 cores: see the performance page). The event loop is also
the one thread that accepts requests, so a call runs there only when

- it is the only request this process has in flight: nobody waits on the loop now, and a
  request that arrives meanwhile waits at most for this call; and
- calls of its kind are known to be short: the kind is the route and the meta-learner (named in
  an adaptation's body; for a prediction, the one that adapted the model, as this process last
  saw it), and the 75th percentile of the kind's last ``window`` calls (at least
  ``min_observed`` of them, measured wherever they ran; refused calls are not counted) is under
  ``max_inline_seconds``. A meta-learner whose calls take long never runs on the loop; a stall
  of the machine now and then does not send a fast one back to the threads.

Under concurrency every call goes to the worker threads: the pool's bounds (the request
threads, the engine's queues) are unchanged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable


class CallPlacement:
    """``inline(kind)`` decides; ``record(kind, seconds)`` learns; ``enter()`` / ``leave()``
    count the process's requests in flight (the request middleware calls them, on the loop);
    ``remember`` / ``learner_of`` map adapted-model IDs to their meta-learner."""

    def __init__(self, max_inline_seconds: float, window: int = 32, min_observed: int = 8,
                 kinds: int = 256, models: int = 10_000) -> None:
        self.max_inline_seconds = max_inline_seconds
        self.window, self.min_observed = window, min_observed
        self.in_flight = 0  # changed only on the event loop
        self._max_kinds, self._max_models = kinds, models
        self._durations: OrderedDict[Hashable, deque[float]] = OrderedDict()
        self._learners: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()  # record() and remember() run in worker threads too

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1

    def inline(self, kind: Hashable | None) -> bool:
        """Whether a call of ``kind`` (``None``: not known) should run on the event loop now."""
        if kind is None or self.max_inline_seconds <= 0 or self.in_flight > 1:
            return False
        with self._lock:
            recent = self._durations.get(kind)
            if recent is None or len(recent) < self.min_observed:
                return False
            ordered = sorted(recent)
        return ordered[(3 * len(ordered)) // 4] < self.max_inline_seconds

    def record(self, kind: Hashable | None, seconds: float) -> None:
        if kind is None or self.max_inline_seconds <= 0:
            return
        with self._lock:
            recent = self._durations.get(kind)
            if recent is None:
                recent = self._durations[kind] = deque(maxlen=self.window)
                if len(self._durations) > self._max_kinds:
                    self._durations.popitem(last=False)
            else:
                self._durations.move_to_end(kind)
            recent.append(seconds)

    def remember(self, model_id: str, learner: str) -> None:
        """``model_id`` was adapted by ``learner`` (kept for the latest ``models`` IDs)."""
        if self.max_inline_seconds <= 0:
            return
        with self._lock:
            self._learners[model_id] = learner
            self._learners.move_to_end(model_id)
            if len(self._learners) > self._max_models:
                self._learners.popitem(last=False)

    def learner_of(self, model_id: str) -> str | None:
        with self._lock:
            return self._learners.get(model_id)


NEVER_INLINE = CallPlacement(0.0)
