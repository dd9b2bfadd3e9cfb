"""Where a lean call runs: the event loop only for a lone request of a kind known to be short."""

from __future__ import annotations

from app.core.call_placement import NEVER_INLINE, CallPlacement

FAST, SLOW = 0.001, 0.5


def placement(**kwargs) -> CallPlacement:
    p = CallPlacement(0.010, window=8, min_observed=4, **kwargs)
    p.enter()  # the request asking
    return p


def test_a_kind_runs_inline_only_once_enough_of_its_calls_were_short():
    p = placement()
    kind = ("predict", "sinusoid-maml@1.1.0")
    for _ in range(3):
        assert not p.inline(kind)
        p.record(kind, FAST)
    p.record(kind, FAST)
    assert p.inline(kind)
    assert not p.inline(("predict", "omniglot-reptile@1.0.0"))  # another kind is not known
    assert not p.inline(None)


def test_a_slow_kind_never_runs_inline_and_a_rare_stall_does_not_matter():
    p = placement()
    slow, fast = ("create", "photo-protonet"), ("create", "sinusoid-maml")
    for _ in range(8):
        p.record(slow, SLOW)
    assert not p.inline(slow)
    for i in range(8):
        p.record(fast, SLOW if i == 3 else FAST)  # one stall of the machine in eight calls
    assert p.inline(fast)
    for _ in range(3):
        p.record(fast, SLOW)  # a quarter or more of the recent calls long: back to threads
    assert not p.inline(fast)


def test_nothing_runs_inline_while_another_request_is_in_flight():
    p = placement()
    kind = ("predict", "sinusoid-maml@1.1.0")
    for _ in range(4):
        p.record(kind, FAST)
    assert p.inline(kind)
    p.enter()
    assert not p.inline(kind)
    p.leave()
    assert p.inline(kind)


def test_zero_turns_it_off_and_memory_stays_bounded():
    for _ in range(20):
        NEVER_INLINE.record(("predict", "x"), FAST)
    NEVER_INLINE.enter()
    try:
        assert not NEVER_INLINE.inline(("predict", "x"))
    finally:
        NEVER_INLINE.leave()
    p = CallPlacement(0.010, kinds=3, models=2)
    for name in "abcde":
        p.record(("create", name), FAST)
        p.remember(f"id-{name}", name)
    assert len(p._durations) == 3 and p.learner_of("id-a") is None and p.learner_of("id-e") == "e"
    assert len(p._learners) == 2
