"""Per-tenant admission: how many adaptations one tenant may run at once.

One tenant's burst of heavy adaptations must not occupy every worker; beyond the cap the
request is refused with 429 and ``Retry-After`` instead of queueing in front of others.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from app.core.errors import TooManyInProgress


class TenantAdmission:
    """``admit(tenant)`` as a context manager; 0 = no cap."""

    def __init__(self, max_per_tenant: int) -> None:
        self.max_per_tenant = max_per_tenant
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def admit(self, tenant: str) -> Iterator[None]:
        with self._lock:
            running = self._running.get(tenant, 0)
            if self.max_per_tenant and running >= self.max_per_tenant:
                raise TooManyInProgress(
                    f"this tenant already runs {running} adaptations (the limit is "
                    f"{self.max_per_tenant} at once); retry when one has finished")
            self._running[tenant] = running + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._running[tenant] - 1
                if left:
                    self._running[tenant] = left
                else:
                    del self._running[tenant]
