"""Rate limits per key: :class:`RateLimiter` (token buckets in this process: with N replicas a
key gets up to N times the rate) or :class:`SharedRateLimiter` (a sliding-window counter in a
store every replica shares, e.g. Redis, through the ``limits`` library). Both answer
``acquire(key) -> seconds to wait`` (0 = allowed); ``make_rate_limiter`` picks one from the
``METASERVE_RATE_LIMIT_STORAGE`` setting."""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst or max(1, per_minute // 6))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """0 when allowed; otherwise the seconds to wait before the next request."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class SharedRateLimiter:
    """At most ``per_minute`` requests per key in any sliding minute, counted in ``storage_uri``
    (``redis://host:6379``, ``memcached://...``: every replica sees the same counts)."""

    def __init__(self, per_minute: int, storage_uri: str, namespace: str) -> None:
        import limits  # noqa: PLC0415 - only deployments that share limits need it
        from limits.storage import storage_from_string  # noqa: PLC0415
        from limits.strategies import SlidingWindowCounterRateLimiter  # noqa: PLC0415

        self.per_minute, self.namespace = per_minute, namespace
        self.item = limits.RateLimitItemPerMinute(max(per_minute, 1))
        self.limiter = SlidingWindowCounterRateLimiter(storage_from_string(storage_uri))

    def acquire(self, key: str) -> float:
        if self.per_minute <= 0:
            return 0.0
        if self.limiter.hit(self.item, "metaserve", self.namespace, key):
            return 0.0
        stats = self.limiter.get_window_stats(self.item, "metaserve", self.namespace, key)
        return max(stats.reset_time - time.time(), 0.001)


def make_rate_limiter(per_minute: int, storage: str, namespace: str, burst: int | None = None
                      ) -> RateLimiter | SharedRateLimiter:
    """``storage`` ``memory``: this process only; otherwise a ``limits`` storage URI."""
    if storage == "memory" or per_minute <= 0:
        return RateLimiter(per_minute, burst)
    return SharedRateLimiter(per_minute, storage, namespace)


def retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))
