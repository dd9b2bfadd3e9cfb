from __future__ import annotations

import threading
import time

import pytest

from app.core.errors import Overloaded
from app.core.problems import problem_headers, problem_type
from app.engine.batcher import MicroBatcher
from app.engine.executor import Executor, use_torch_threads


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
    assert err.value.retry_after == 1
    assert problem_type(err.value).status == 503 and problem_headers(err.value) == {"Retry-After": "1"}
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

    from app.engine.batcher import MicroBatcher, PolledCapacity

    busy_until = time.monotonic() + 0.15
    sizes: list[int] = []
    batcher = MicroBatcher(lambda key, items: [i * 10 for i in items], max_batch=32, max_wait_ms=0.0,
                           capacity=PolledCapacity(lambda: time.monotonic() < busy_until),
                           max_busy_wait_ms=1000,
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


# ----- BatchChoice: whether batching pays, from measurements ----------------------------------
def test_batch_choice_on_and_off_are_fixed_and_never_means_never():
    from app.engine.batch_choice import BatchChoice

    on = BatchChoice("on", {"a": False, "b": True}, never={"c"})
    off = BatchChoice("off", {"a": True}, never=set())
    for _ in range(50):
        on.record("a", 4, 100.0)  # measurements change nothing outside auto
    assert on.batch("a") and on.batch("b") and not on.batch("c")
    assert not off.batch("a")
    auto = BatchChoice("auto", {"c": True}, never={"c"})
    assert not auto.batch("c") and auto.decisions()["c"] is False


def test_batch_choice_stops_batching_when_batches_cost_more_per_task():
    from app.engine.batch_choice import BatchChoice

    choice = BatchChoice("auto", {"k": True}, min_samples=4)
    assert choice.batch("k")
    for _ in range(4):
        choice.record("k", 1, 0.030)  # one task alone: 30 ms
        assert choice.batch("k")  # not enough batched samples yet: the static rule holds
    for _ in range(3):
        choice.record("k", 4, 0.660)  # four tasks vmapped: 165 ms each (the H200 machine)
    assert choice.batch("k")
    choice.record("k", 4, 0.660)
    assert not choice.batch("k") and choice.decisions() == {"k": False}
    single, batched = choice.estimates("k")
    assert single == pytest.approx(0.030) and batched == pytest.approx(0.165)


def test_batch_choice_probes_while_off_and_returns_when_batches_get_cheaper():
    from app.engine.batch_choice import BatchChoice

    choice = BatchChoice("auto", {"k": False}, min_samples=2, probe_every=10, probe_len=3)
    routed = [choice.batch("k") for _ in range(30)]
    # calls 10, 20, 30 open windows of three calls through the batcher
    assert [i + 1 for i, on in enumerate(routed) if on] == [10, 11, 12, 20, 21, 22, 30]
    for _ in range(2):
        choice.record("k", 1, 0.004)
        choice.record("k", 8, 0.008)  # 1 ms per task batched, 4 ms alone
    assert choice.batch("k") and choice.decisions() == {"k": True}


def test_a_job_that_would_not_wait_runs_in_the_callers_thread():
    ex = Executor(workers=2, max_queue=8, torch_threads=1)
    assert ex.run(threading.get_ident) == threading.get_ident()
    with pytest.raises(ValueError, match="inline"):  # failures reach the caller as before
        ex.run(lambda: (_ for _ in ()).throw(ValueError("inline")))
    assert not ex.busy()
    ex.shutdown()


def test_jobs_in_callers_threads_and_workers_together_stay_within_the_bound():
    """Jobs run inline or by the workers, never more than ``workers`` at once, and every one
    runs exactly once."""
    ex = Executor(workers=2, max_queue=64, torch_threads=1)
    lock, running, peak, done = threading.Lock(), [0], [0], []

    def job(i):
        def run():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.005)
            with lock:
                running[0] -= 1
            done.append(i)
            return i
        return run

    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, ex.run(job(i), tenant=f"t{i % 3}")))
               for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i for i in range(40)} and sorted(done) == list(range(40))
    assert peak[0] == 2
    ex.shutdown()


def test_every_thread_that_runs_a_job_sets_torch_threads_before_its_first_job(monkeypatch):
    """PyTorch keeps its intra-op thread count per thread: the callers' threads (inline jobs)
    and the workers each set it, once, before they compute."""
    import torch  # noqa: PLC0415

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append((threading.get_ident(), n)))
    ex = Executor(workers=1, max_queue=8, torch_threads=1)

    def seen() -> bool:  # whether this thread had set the count when the job began
        return (threading.get_ident(), 1) in calls

    def in_fresh_thread(fn):
        out = []
        t = threading.Thread(target=lambda: out.append(fn()))
        t.start()
        t.join()
        return out[0]

    assert in_fresh_thread(lambda: ex.run(seen))  # inline, in a thread new to the executor
    before = len(calls)
    caller = in_fresh_thread(lambda: (ex.run(seen), ex.run(seen), threading.get_ident()))
    assert caller[:2] == (True, True)
    assert calls[before:].count((caller[2], 1)) == 1  # once per thread, not per job
    gate, started = threading.Event(), threading.Event()
    blocker = threading.Thread(target=lambda: ex.run(lambda: (started.set(), gate.wait(5))))
    blocker.start()
    started.wait(5)
    queued = []
    waiter = threading.Thread(target=lambda: queued.append(ex.run(lambda: (seen(), threading.get_ident()))))
    waiter.start()
    time.sleep(0.05)
    gate.set()
    blocker.join()
    waiter.join()
    ran_in_worker, worker = queued[0]
    assert ran_in_worker and worker != waiter.ident  # a worker ran it, having set the count
    ex.shutdown()


def test_a_job_with_its_own_thread_count_computes_with_it_and_the_next_job_with_the_pools():
    """Adaptation jobs (202) may ask for more intra-op threads than the pool's; the thread
    that ran one goes back to the pool's count for the next job, inline or in a worker."""
    import torch  # noqa: PLC0415

    ex = Executor(workers=1, max_queue=8, torch_threads=1)
    out: list[int] = []
    inline = threading.Thread(target=lambda: out.extend(
        [ex.run(torch.get_num_threads, torch_threads=2), ex.run(torch.get_num_threads)]))
    inline.start()
    inline.join()
    assert out == [2, 1]
    gate, started = threading.Event(), threading.Event()
    blocker = threading.Thread(target=lambda: ex.run(lambda: (started.set(), gate.wait(5))))
    blocker.start()
    started.wait(5)
    queued: dict[str, int] = {}
    own = threading.Thread(target=lambda: queued.update(own=ex.run(torch.get_num_threads, torch_threads=2)))
    own.start()
    time.sleep(0.05)
    pools = threading.Thread(target=lambda: queued.update(pools=ex.run(torch.get_num_threads)))
    pools.start()
    time.sleep(0.05)
    gate.set()
    for t in (blocker, own, pools):
        t.join()
    assert queued == {"own": 2, "pools": 1}
    ex.shutdown()


def test_a_threads_count_holds_after_another_thread_sets_another():
    """PyTorch initialises a thread's count at its first parallel work from the count any
    thread set last: a thread's own setting must survive another thread's."""
    import torch  # noqa: PLC0415

    set_here, other_done = threading.Event(), threading.Event()
    seen = []

    def first():
        use_torch_threads(1)
        set_here.set()
        other_done.wait(5)
        seen.append(torch.get_num_threads())

    t = threading.Thread(target=first)
    t.start()
    set_here.wait(5)
    other = threading.Thread(target=lambda: use_torch_threads(2))
    other.start()
    other.join()
    other_done.set()
    t.join()
    assert seen == [1]


def test_a_waiting_batch_leader_is_woken_when_a_job_finishes_and_queued_jobs_still_run():
    """``wait_while_busy`` returns when the pool frees up (not at its timeout), and a leader
    waiting beside the workers never takes the wake-up a queued job needs."""
    ex = Executor(workers=1, max_queue=8, torch_threads=1)
    release, started = threading.Event(), threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(30)
        return "first"

    first = threading.Thread(target=lambda: results.append(ex.run(blocking)))
    results: list[str] = []
    first.start()
    started.wait(5)
    assert ex.busy()
    queued = threading.Thread(target=lambda: results.append(ex.run(lambda: "queued")))
    queued.start()  # waits in the queue behind the blocking job
    woken: list[float] = []

    def leader() -> None:
        t0 = time.monotonic()
        ex.wait_while_busy(60.0, lambda: False)
        woken.append(time.monotonic() - t0)

    waiter = threading.Thread(target=leader)
    waiter.start()
    time.sleep(0.05)
    assert not woken  # still busy: the leader waits
    release.set()
    for t in (first, queued, waiter):
        t.join(20)
    assert sorted(results) == ["first", "queued"]
    assert woken and woken[0] < 60.0 and not ex.busy()
    ex.shutdown()


def test_wait_while_busy_returns_at_once_when_idle_or_done():
    ex = Executor(workers=1, max_queue=8, torch_threads=1)
    ex.wait_while_busy(60.0, lambda: False)  # idle: returns at once
    release = threading.Event()
    job = threading.Thread(target=lambda: ex.run(lambda: release.wait(30)))
    job.start()
    while not ex.busy():
        time.sleep(0.001)
    ex.wait_while_busy(60.0, lambda: True)  # done already: returns at once
    ex.wait_while_busy(0.01, lambda: False)  # busy: returns at its timeout
    release.set()
    job.join(20)
    ex.shutdown()
