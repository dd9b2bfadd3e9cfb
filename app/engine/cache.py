"""A thread-safe LRU cache of adapted states bounded in bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from torch import Tensor

State = dict[str, Tensor]


def state_bytes(state: State) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


class StateCache:
    """LRU keyed by artifact sha256; evicts least recently used until under ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[State, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.hits = 0
        self.misses = 0
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

    def peek(self, key: str) -> State | None:
        with self._lock:
            item = self._items.get(key)
            return item[0] if item else None

    def get(self, key: str) -> State | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, state: State) -> None:
        size = state_bytes(state)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return
            self._items[key] = (state, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def discard(self, key: str) -> None:
        with self._lock:
            item = self._items.pop(key, None)
            if item is not None:
                self._bytes -= item[1]

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
