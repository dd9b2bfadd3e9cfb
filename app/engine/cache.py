"""A thread-safe LRU cache of adapted states bounded in bytes."""

from __future__ import annotations

import threading
from collections.abc import Callable

from torch import Tensor

from app.bytes_lru import BytesLRU

State = dict[str, Tensor]


def state_bytes(state: State) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


class StateCache(BytesLRU[State]):
    """LRU keyed by artifact sha256; evicts least recently used until under ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, state_bytes)
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0

    def get_or_load(self, key: str, load: Callable[[], State]) -> tuple[State, bool]:
        """The cached state, or ``load()`` run once even when many threads miss together.

        Returns (state, hit). A state handed out stays valid after eviction (eviction only
        drops the cache's reference), so a state in use is never freed under its user.
        """
        state = self.get(key)
        if state is not None:
            return state, True
        with self._lock:
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            state = self.peek(key)
            if state is None:
                state = load()
                self.loads += 1
                self.put(key, state)
        with self._lock:
            self._loading.pop(key, None)
        return state, False
