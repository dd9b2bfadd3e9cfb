"""API keys this process verified against the database recently, trusted for a bounded time.

Looking a key up costs a connection checkout, a SELECT and the end of its transaction: about
0.3 ms of a small prediction's 1.6 ms in the server (SQLite, 2 cores). A key verified within
the last ``seconds`` is trusted without that lookup: the presented secret is still hashed and
compared with the digest the database held, so a wrong secret is never accepted from here.
The cost is a bounded delay for revocation: a revoked key keeps working on a process that
verified it for at most ``seconds`` after it was last looked up (``METASERVE_AUTH_CACHE_SECONDS``;
0 = every request reads the database). Only keys the database accepted are kept, so guessed
keys cannot fill it; it holds at most ``max_keys`` and starts over when full.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from typing import NamedTuple


class VerifiedKey(NamedTuple):
    secret_sha256: str
    tenant: str
    scope: str
    verified_at: float


class VerifiedKeys:
    def __init__(self, seconds: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.max_keys, self._clock = seconds, max_keys, clock
        self._keys: dict[str, VerifiedKey] = {}
        self._lock = threading.Lock()

    def trusted(self, key_id: str, secret_sha256: str) -> VerifiedKey | None:
        """The key as last verified, when that was less than ``seconds`` ago and the secret's
        digest is the one the database held; None otherwise (look it up)."""
        known = self._keys.get(key_id)
        if known is None or self._clock() - known.verified_at >= self.seconds:
            return None
        return known if hmac.compare_digest(known.secret_sha256, secret_sha256) else None

    def remember(self, key_id: str, secret_sha256: str, tenant: str, scope: str) -> None:
        """A key the database has just accepted (nothing else may be remembered)."""
        if self.seconds <= 0:
            return
        with self._lock:
            if len(self._keys) >= self.max_keys and key_id not in self._keys:
                self._keys.clear()
            self._keys[key_id] = VerifiedKey(secret_sha256, tenant, scope, self._clock())

    def __len__(self) -> int:
        return len(self._keys)
