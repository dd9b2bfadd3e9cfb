"""A bounded worker pool for tensor work, so that it never runs on the event loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from app.core.problems import Overloaded

T = TypeVar("T")


class Executor:
    """``run(fn)`` executes in a worker thread and waits; refuses when ``max_queue`` are pending."""

    def __init__(self, workers: int, max_queue: int, torch_threads: int,
                 name: str = "metaserve-worker") -> None:
        torch.set_num_threads(torch_threads)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(max_queue)
        self.max_queue = max_queue

    def run(self, fn: Callable[[], T]) -> T:
        if not self._slots.acquire(blocking=False):
            raise Overloaded(f"more than {self.max_queue} jobs are queued; retry shortly")
        try:
            return self._pool.submit(fn).result()
        finally:
            self._slots.release()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
