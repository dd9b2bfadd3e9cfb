"""A bounded worker pool for tensor work, fair across tenants, never on the event loop.

Jobs wait in one queue per tenant and the workers take them round-robin across the tenants
that have work waiting: a tenant with a burst of heavy jobs delays another tenant's job by at
most one of its jobs per worker, not by its whole burst.

A job that would not wait (a worker free, nothing queued) runs in the calling thread under that
worker's slot: the same bound on concurrent jobs and the same order, without handing the job to
a worker thread and its result back (two thread wake-ups per call, about a tenth of a small
prediction's time on the server).

PyTorch's intra-op thread count is kept per thread by its OpenMP runtime: a thread that never
set it computes with the runtime's default (every core), which for the service's small tensors
costs more than it gives (sinusoid-maml's 30-step adaptation 24 ms instead of 18 ms on 2
cores). Every thread that runs a job sets ``torch_threads`` before it, when it differs from
what the thread last set (a job may ask for its own count: the long adaptation jobs of 202
responses).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import torch

from app.core.errors import Overloaded

T = TypeVar("T")
_thread = threading.local()  # torch_threads: what this thread last set


def use_torch_threads(count: int) -> None:
    """Set PyTorch's intra-op thread count for the calling thread, when it differs from what
    this thread last set. PyTorch initialises a thread's count lazily, at its first parallel
    work, to the count any thread set last: that initialisation is done first here, or it
    would later undo this thread's own setting once another thread had set another count."""
    if getattr(_thread, "torch_threads", None) != count:
        torch.get_num_threads()  # the lazy initialisation, before the setting
        torch.set_num_threads(count)
        _thread.torch_threads = count


class Executor:
    """``run(fn, tenant)`` executes in a worker thread and waits; refuses (503) when
    ``max_queue`` jobs are queued or running."""

    def __init__(self, workers: int, max_queue: int, torch_threads: int,
                 name: str = "metaserve-worker") -> None:
        torch.set_num_threads(torch_threads)
        self.torch_threads = torch_threads
        self.max_queue = max_queue
        self._slots = threading.BoundedSemaphore(max_queue)
        self._queues: dict[str, deque[tuple[Callable[[], Any], Future[Any], int]]] = {}
        self._turns: deque[str] = deque()  # tenants with work waiting, in serving order
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # workers: work or a free slot
        self._freed = threading.Condition(lock)  # batch leaders: the pool became free
        self._stopped = False
        self.workers = workers
        self._running = 0  # jobs being executed right now
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable[[], T], tenant: str = "", torch_threads: int | None = None) -> T:
        """``torch_threads``: this job's intra-op threads (default: the pool's)."""
        threads = torch_threads or self.torch_threads
        if not self._slots.acquire(blocking=False):
            raise Overloaded(f"more than {self.max_queue} jobs are queued; retry shortly")
        try:
            future: Future[T] = Future()
            with self._cond:
                if self._stopped:
                    raise Overloaded("the service is shutting down; retry shortly")
                inline = not self._turns and self._running < self.workers
                if inline:
                    self._running += 1
            if inline:
                try:
                    use_torch_threads(threads)
                    return fn()
                finally:
                    with self._cond:
                        self._release_slot()
            with self._cond:
                if tenant not in self._queues:
                    self._queues[tenant] = deque()
                    self._turns.append(tenant)
                self._queues[tenant].append((fn, future, threads))
                self._cond.notify()
            return future.result()
        finally:
            self._slots.release()

    def busy(self) -> bool:
        """Every worker is computing, or work is already waiting: a new job would queue."""
        with self._cond:
            return self._busy()

    def _busy(self) -> bool:
        return self._running >= self.workers or bool(self._turns)

    def wait_while_busy(self, timeout: float, done: Callable[[], bool]) -> None:
        """Block until a new job would not queue, ``done()`` (checked when woken), or
        ``timeout`` seconds: a micro-batch leader collecting while the pool is busy, woken
        when the pool frees up rather than polling."""
        deadline = time.monotonic() + timeout
        with self._freed:
            while self._busy() and not self._stopped and not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._freed.wait(left)

    def _next(self) -> tuple[Callable[[], Any], Future[Any], int] | None:
        with self._cond:
            # a free slot as well as work: jobs run in the callers' threads count too
            while not self._stopped and (not self._turns or self._running >= self.workers):
                self._cond.wait()
            if self._stopped:
                return None
            self._running += 1
            tenant = self._turns.popleft()
            queue = self._queues[tenant]
            job = queue.popleft()
            if queue:
                self._turns.append(tenant)  # back of the line: the others go first
            else:
                del self._queues[tenant]
            if not self._busy():  # the queue emptied with a slot to spare
                self._freed.notify_all()
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            fn, future, threads = job
            try:
                if future.set_running_or_notify_cancel():
                    use_torch_threads(threads)
                    future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                future.set_exception(exc)
            finally:
                with self._cond:
                    self._release_slot()

    def _release_slot(self) -> None:
        """A job ended (under ``_cond``): its slot goes to queued work (one worker woken), or,
        with nothing queued, the pool is free and waiting batch leaders are told."""
        self._running -= 1
        if self._turns:
            self._cond.notify()
        else:
            self._freed.notify_all()

    def shutdown(self) -> None:
        with self._cond:
            self._stopped = True
            pending = [job for queue in self._queues.values() for job in queue]
            self._queues.clear()
            self._turns.clear()
            self._cond.notify_all()
            self._freed.notify_all()
        for _, future in pending:
            future.set_exception(Overloaded("the service is shutting down; retry shortly"))
        for thread in self._threads:
            thread.join(timeout=30)
