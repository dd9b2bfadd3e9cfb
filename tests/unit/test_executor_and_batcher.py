from __future__ import annotations

import threading
import time

import pytest

from app.core.problems import Overloaded
from app.engine.batcher import MicroBatcher
from app.engine.executor import Executor


def test_full_queue_is_refused_with_retry_after():
    ex = Executor(workers=1, max_queue=1, torch_threads=1)
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(5)
        return "done"

    t = threading.Thread(target=lambda: ex.run(slow))
    t.start()
    started.wait(5)
    with pytest.raises(Overloaded) as err:
        ex.run(lambda: "second")
    assert err.value.status == 503 and err.value.headers["Retry-After"] == "1"
    release.set()
    t.join()
    assert ex.run(lambda: "after") == "after"
    ex.shutdown()


def test_batcher_coalesces_and_returns_each_callers_result():
    calls = []

    def run(key, items):
        calls.append(list(items))
        time.sleep(0.01)
        return [i * 10 for i in items]

    b = MicroBatcher(run, max_batch=8, max_wait_ms=100)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, b.submit("k", i)))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i * 10 for i in range(8)}
    assert len(calls) < 8 and sum(len(c) for c in calls) == 8


def test_batcher_propagates_failures_to_every_caller():
    def run(key, items):
        raise ValueError("boom")

    b = MicroBatcher(run, max_batch=4, max_wait_ms=1)
    with pytest.raises(ValueError, match="boom"):
        b.submit("k", 1)


def test_workers_take_tenants_round_robin():
    """One worker; tenant A queues six jobs, then B one: B runs after at most one more of A's."""
    ex = Executor(workers=1, max_queue=16, torch_threads=1)
    order, gate = [], threading.Event()

    def job(name):
        def run():
            gate.wait(5)
            order.append(name)
            time.sleep(0.01)
        return run

    threads = [threading.Thread(target=ex.run, args=(job(f"a{i}"),), kwargs={"tenant": "a"})
               for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # a0 holds the worker, a1..a5 wait
    b = threading.Thread(target=ex.run, args=(job("b0"),), kwargs={"tenant": "b"})
    b.start()
    time.sleep(0.2)
    gate.set()
    for t in [*threads, b]:
        t.join()
    assert order.index("b0") <= 2, order
    ex.shutdown()


def test_a_failing_job_reaches_its_caller_and_the_worker_survives():
    ex = Executor(workers=1, max_queue=4, torch_threads=1)
    with pytest.raises(ZeroDivisionError):
        ex.run(lambda: 1 / 0, tenant="t")
    assert ex.run(lambda: 42, tenant="t") == 42
    ex.shutdown()


def test_batch_window_grows_while_the_workers_are_busy():
    """With a fixed window of 0 ms, callers arriving while the pool is busy still meet in one
    batch (the leader collects until a worker is free); when idle, a lone caller never waits."""
    import threading
    import time

    from app.engine.batcher import MicroBatcher

    busy_until = time.monotonic() + 0.15
    sizes: list[int] = []
    batcher = MicroBatcher(lambda key, items: [i * 10 for i in items], max_batch=32, max_wait_ms=0.0,
                           busy=lambda: time.monotonic() < busy_until, max_busy_wait_ms=1000,
                           observe=sizes.append)
    results: dict[int, int] = {}
    gate = threading.Barrier(6)

    def call(i: int) -> None:
        gate.wait()
        time.sleep(0.01 * i)  # staggered arrivals, all inside the busy period
        results[i] = batcher.submit("k", i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i * 10 for i in range(6)}
    assert sizes == [6]
    t0 = time.perf_counter()
    assert batcher.submit("k", 7) == 70  # idle now: runs at once
    assert time.perf_counter() - t0 < 0.05 and sizes == [6, 1]
