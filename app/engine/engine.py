"""The serving engine: the one entry point for adapting, storing and predicting.

``prepare`` validates a support set (no database, no compute; ``app.engine.preparation``);
``adapt`` runs it in the worker pool, stores the state durably and caches it; ``predict``
decodes inputs and runs an adapted state on the exact meta-learner version that made it.
The stored states and their cache are ``engine.states`` (``app.engine.states``), which
lifecycle (release, expiry, orphans, store binding) uses directly.

With batching on, concurrent adaptations of one meta-learner version with one task shape run
as one vmapped ``adapt_batch``, and concurrent predictions of different adapted models run as
one vmapped ``predict_batch`` over their stacked states. ``auto`` starts by batching except
where a per-task state holds convolution kernels (vmapping them turns each convolution into a
grouped one, slower than a loop on the CPU and on the GPU measured), then follows the measured
compute time per task of batched against single calls (``BatchChoice``).

``METASERVE_DEVICE`` puts the learners on a GPU: requests' tensors move there inside the
worker, and states come back to host memory before they are checksummed, stored and cached.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from app.core.errors import ExamplesNotSupported, InvalidInputs, InvalidSupportSet, LimitExceeded
from app.core.metrics import Metrics
from app.engine.admission import TenantAdmission
from app.engine.batch_choice import BatchChoice
from app.engine.batcher import MicroBatcher
from app.engine.cache import StateCache
from app.engine.executor import Executor, use_torch_threads
from app.engine.preparation import codec_of, decode_inputs, prepare_examples, prepare_support
from app.engine.registry import RegisteredLearner, Registry
from app.engine.states import StoredStates
from app.engine.types import (
    Adaptation,
    AdaptationReport,
    BatchingPolicy,
    PreparedTask,
    Served,
    State,
    batching_pays,
)
from app.meta.algorithms import AdaptOptions
from app.meta.codecs import InputLimits
from app.storage.artifacts import (
    ArtifactStore,
)
from app.storage.tiered import InlineStaging


class ServingEngine:
    def __init__(self, registry: Registry, store: ArtifactStore, cache: StateCache,
                 executor: Executor, metrics: Metrics, batching: BatchingPolicy | None = None,
                 artifact_grace_seconds: float = 0.0, input_limits: InputLimits | None = None,
                 predict_executor: Executor | None = None,
                 admission: TenantAdmission | None = None,
                 max_response_bytes: int = 4 * 1024 * 1024,
                 device: torch.device | str = "cpu") -> None:
        self.registry = registry
        # where the learners' tensors live and the compute runs; requests' tensors, the stored
        # states and the cache stay in host memory and cross over inside the worker
        self.device = torch.device(device)
        # the stored states and their cache, used by the engine and by lifecycle directly
        self.states = StoredStates(store, cache, metrics, artifact_grace_seconds)
        # adaptations and predictions have pools of their own: a prediction never waits
        # behind adaptations
        self.executor, self.metrics = executor, metrics
        self.predict_executor = predict_executor or executor
        self._admission = admission or TenantAdmission(0)
        self.max_response_bytes = max_response_bytes
        self.input_limits = input_limits or InputLimits()
        self.warmed_up: list[str] = []
        self.policy = batching or BatchingPolicy()
        self.batch_choice = BatchChoice(self.policy.mode, {})
        self._add_batching(registry.all())
        self.adapt_batcher = MicroBatcher(
            self._adapt_many, self.policy.max_batch, self.policy.max_wait_ms, capacity=executor,
            observe=metrics.batch_size.labels("adapt").observe)
        self.predict_batcher = MicroBatcher(
            self._predict_many, self.policy.max_batch, self.policy.max_wait_ms,
            capacity=self.predict_executor, observe=metrics.batch_size.labels("predict").observe)

    @property
    def batched(self) -> dict[str, bool]:
        """Whether adaptations of each version go through the micro-batcher now."""
        chosen = self.batch_choice.decisions()
        return {ref: on for (kind, ref), on in chosen.items() if kind == "adapt"}

    def _add_batching(self, regs: list[RegisteredLearner]) -> None:
        for reg in regs:
            for kind in ("adapt", "predict"):
                self.batch_choice.add((kind, reg.ref), batching_pays(reg), never=not reg.learner.batchable)
        self._gauge_batching()

    def install_registry(self, registry: Registry, warm: bool) -> list[str]:
        """Serve ``registry`` from now on (a new catalog revision); the versions it adds are
        warmed up first when ``warm``, so that they are loaded before they are advertised.
        Returns the refs it adds."""
        known = {(r.ref, r.weights_sha256) for r in self.registry.all()}
        added = [r for r in registry.all() if (r.ref, r.weights_sha256) not in known]
        self._add_batching(added)
        if warm:
            self.warm_up(added)
        self.registry = registry
        return [r.ref for r in added]

    def _gauge_batching(self) -> None:
        for (kind, ref), on in self.batch_choice.decisions().items():
            self.metrics.batching.labels(kind, ref).set(1 if on else 0)

    # ----- meta-learners -------------------------------------------------------------------
    def resolve(self, ref: str, tenant: str | None = None) -> RegisteredLearner:
        """``name``, ``name@version`` or ``name@alias`` (a tenant's bare name may go to a canary)."""
        return self.registry.resolve(ref, tenant=tenant)

    def bound(self, name: str, version: str, weights_sha256: str | None) -> RegisteredLearner:
        """The exact version (and weights) that adapted a model; 410 once retired."""
        return self.registry.exact(name, version, weights_sha256)

    # ----- adaptation ----------------------------------------------------------------------
    def prepare(self, reg: RegisteredLearner, inputs: list[Any], targets: list[Any],
                steps: int | str | None) -> PreparedTask:
        """Validate and encode a support set (no database, no gradient work)."""
        use_torch_threads(self.executor.torch_threads)  # decoding runs in the caller's thread
        return prepare_support(self.registry, reg, inputs, targets, steps, self.input_limits)

    def adapt(self, task: PreparedTask, tenant: str,
              progress: Callable[[float], None] | None = None,
              staging: InlineStaging | None = None, torch_threads: int | None = None) -> Adaptation:
        """Adapt in a worker, store the state durably (before any row may reference it) and
        cache it. Returns where the state lives and a report of the adaptation. A tenant runs
        at most ``max_adaptations_per_tenant`` adaptations at once (429 beyond). ``progress``
        is told the fraction done by learners whose adaptation is long. With ``staging`` (from
        ``states.staging(session)``), a small state is written by that session's transaction.
        ``torch_threads``: the adaptation's own intra-op thread count (jobs), not batched with
        others then."""
        with self._admission.admit(tenant):
            return self._adapt_admitted(replace(task, tenant=tenant, progress=progress,
                                                torch_threads=torch_threads), staging)

    def is_asynchronous(self, reg: RegisteredLearner) -> bool:
        """Whether this meta-learner's adaptations always run as jobs (202)."""
        return reg.spec.serving.asynchronous

    def _choose_steps(self, task: PreparedTask) -> PreparedTask:
        """The step-strategy model's choice for this support set (one inner step of work, in
        a worker), within the version's step limit and work budget."""
        reg = task.learner
        limits = reg.limits
        ceiling = min(limits.max_steps, limits.max_example_steps // max(task.x.shape[0], 1))

        def choose() -> tuple[int, State]:
            return reg.strategy.choose_with_first_step(reg.learner, self._in(task.x), self._in(task.y),
                                                       task.ways, ceiling)

        steps, first_step = self.executor.run(choose, tenant=task.tenant, torch_threads=task.torch_threads)
        if steps < 1 or not reg.learner.continues:
            return replace(task, steps=steps)
        return replace(task, steps=steps, first_step=first_step)

    def _adapt_admitted(self, task: PreparedTask, staging: InlineStaging | None) -> Adaptation:
        reg = task.learner
        if task.steps_chosen_by == "strategy":
            task = self._choose_steps(task)
        if task.progress is None and task.torch_threads is None and self.batch_choice.batch(("adapt", reg.ref)):
            key = ("adapt", reg.ref, codec_of(reg).batch_key(task.x), tuple(task.y.shape),
                   task.ways, task.steps, task.first_step is not None)
            state, report = self.adapt_batcher.submit(key, task)
        else:
            state, report = self._adapt_many(None, [task])[0]
        finite = bool(torch.isfinite(torch.cat([t.reshape(-1) for t in state.values()])).all())
        if not finite or not math.isfinite(report.support_loss_after):
            raise InvalidSupportSet(
                f"support set out of range for {reg.ref}: adapting to it overflowed (non-finite "
                "loss or weights); targets and inputs must be of the scale the meta-learner was "
                "trained on")
        sha, size = self.states.keep(state, staging)
        return Adaptation(reg, sha, size, task.labels, report)

    def extend(self, reg: RegisteredLearner, artifact_sha256: str, labels: list[Any] | None,
               inputs: list[Any], targets: list[Any], tenant: str = "") -> Adaptation:
        """Add labelled examples (new labels included) to an adapted state, where the family
        makes that exact (memory-based learners, ProtoNet's running-mean prototypes): store the
        new state and return it."""
        learner, limits = reg.learner, reg.limits
        if not learner.extends:
            raise ExamplesNotSupported(
                f"{reg.ref} ({reg.spec.algorithm}, {reg.spec.family}) cannot add examples to an "
                "adapted model exactly; adapt a new model on the whole support set instead")
        use_torch_threads(self.executor.torch_threads)  # decoding runs in the caller's thread
        x, y, ways, new_labels = prepare_examples(reg, labels, inputs, targets, self.input_limits)
        state = self.states.load(artifact_sha256)
        if not learner.can_extend(state):
            raise ExamplesNotSupported(
                f"this model was adapted by {reg.ref} before it kept what adding examples needs "
                "(per-class counts, or the task code); adapt a new model on the whole support "
                "set instead")
        total = learner.memory_size(state) + len(inputs)
        if total > limits.max_support:
            raise LimitExceeded(f"the model would hold {total} examples, over the limit of "
                                f"{limits.max_support} for {reg.name}")

        def work() -> tuple[State, float]:
            t0 = time.perf_counter()
            grown = learner.extend(self._in(state), self._in(x), self._in(y), ways)
            return self._out(grown), time.perf_counter() - t0

        grown, seconds = self.executor.run(work, tenant=tenant)
        sha, size = self.states.keep(grown)
        report = AdaptationReport(steps=0, steps_chosen_by="default", duration_ms=round(seconds * 1000, 3),
                                  support_loss_before=None, support_loss_after=None)
        return Adaptation(reg, sha, size, new_labels, report)

    def _adapt_many(self, key: Hashable, tasks: list[PreparedTask], record: bool = True
                    ) -> list[tuple[State, AdaptationReport]]:
        first = tasks[0]
        learner = first.learner.learner

        def work() -> list[tuple[State, AdaptationReport]]:
            t0 = time.perf_counter()
            options = AdaptOptions(steps=first.steps, progress=first.progress,  # one task: its names
                                   label_inputs=self._in(first.label_x) if len(tasks) == 1
                                   and first.label_x is not None else None)
            xs, ys = [self._in(t.x) for t in tasks], [self._in(t.y) for t in tasks]
            outputs: list[Tensor | None] = [None] * len(tasks)  # on the support set, if given
            carry_on = first.first_step is not None  # auto: from the step taken while choosing
            if len(tasks) == 1 and carry_on:
                states = [learner.adapt_from(self._in(first.first_step), xs[0], ys[0], first.ways,
                                             first.steps - 1)]
            elif len(tasks) == 1:
                state, outputs[0] = learner.adapt_with_support_outputs(xs[0], ys[0], first.ways, options)
                states = [state]
            else:
                if carry_on:
                    starts = {k: torch.stack([self._in(t.first_step[k]) for t in tasks])
                              for k in first.first_step}
                    stacked = learner.adapt_batch_from(starts, torch.stack(xs), torch.stack(ys),
                                                       first.ways, first.steps - 1)
                else:
                    stacked = learner.adapt_batch(torch.stack(xs), torch.stack(ys), first.ways, options)
                states = [{k: v[j] for k, v in stacked.items()} for j in range(len(tasks))]
            duration = time.perf_counter() - t0
            if record and self.batch_choice.record(("adapt", first.learner.ref), len(tasks), duration):
                self._gauge_batching()
            start = learner.initial_state(first.ways)
            results = []
            for task, state, x, y, out in zip(tasks, states, xs, ys, outputs, strict=True):
                report = AdaptationReport(
                    steps=first.steps, duration_ms=round(duration * 1000, 3),
                    steps_chosen_by=task.steps_chosen_by,
                    support_loss_before=None if start is None else learner.support_loss(start, x, y),
                    support_loss_after=(learner.support_loss(state, x, y) if out is None
                                        else float(learner.loss(out, y))))
                results.append((self._out(state), report))
                if record:
                    self.metrics.adaptation.labels(first.learner.name).observe(duration)
            return results

        return self.executor.run(work, tenant=first.tenant, torch_threads=first.torch_threads)

    def warm_up(self, regs: list[RegisteredLearner] | None = None) -> None:
        """Adapt and predict once per meta-learner version (all, or ``regs``) on a dummy task,
        so that the first client does not pay the one-off cost of PyTorch's function
        transforms (about 1.5 s here). Not counted in the request metrics."""
        if regs is None:
            self.warmed_up = []
        for reg in self.registry.all() if regs is None else regs:
            if not reg.learner.warm_at_start:
                continue
            codec = codec_of(reg)
            codec.warm(reg.input_spec)
            x = torch.zeros(2, *codec.model_shape(reg.input_spec))
            targets = reg.task.dummy_targets(2)
            steps = 1 if reg.learner.has_steps else 0
            task = PreparedTask(reg, x, targets.y, targets.ways, targets.labels, steps)
            state = self._adapt_many(None, [task], record=False)[0][0]
            self._predict_many(None, [(reg, state, x, "")], record=False)
            self.warmed_up.append(reg.ref)

    # ----- host <-> device ---------------------------------------------------------------------
    def _in(self, value: Any) -> Any:
        """A tensor (or a state's tensors) on the compute device: a no-op on the CPU."""
        if self.device.type == "cpu":  # states and inputs are host tensors already
            return value
        if isinstance(value, dict):
            return {k: v.to(self.device, non_blocking=True) for k, v in value.items()}
        return value.to(self.device, non_blocking=True)

    def _out(self, state: State) -> State:
        """A state back in host memory, where it is checksummed, stored and cached."""
        if self.device.type == "cpu":
            return state
        return {k: v.cpu() for k, v in state.items()}

    # ----- prediction ------------------------------------------------------------------------
    def predict(self, reg: RegisteredLearner, artifact_sha256: str, labels: list[Any] | None,
                inputs: list[Any], top_k: int | None = None, tenant: str = "",
                abstain_threshold: float | None = None) -> Served:
        """Predictions (plain Python) of the adapted state ``artifact_sha256`` for ``inputs``,
        with a standard deviation per prediction from learners that give one."""
        if len(inputs) > reg.limits.max_queries:
            raise LimitExceeded(f"{len(inputs)} inputs exceed the limit of "
                                f"{reg.limits.max_queries} per request for {reg.name}")
        size = reg.task.response_bytes(len(inputs), labels, top_k)
        if size > self.max_response_bytes:
            raise LimitExceeded(f"the predictions would take about {size} bytes, over the "
                                f"{self.max_response_bytes}-byte response cap; ask for top_k "
                                "probabilities or send fewer inputs")
        use_torch_threads(self.executor.torch_threads)  # decoding runs in the caller's thread
        x = decode_inputs(reg, inputs, "inputs", self.input_limits)
        state = self.states.load(artifact_sha256)
        spread = None
        if reg.learner.gives_std:  # mean and spread from one forward pass
            served, spread = self._predict_with_std(reg, state, x, tenant)
        elif self.batch_choice.batch(("predict", reg.ref)):
            shapes = tuple(sorted((k, tuple(v.shape)) for k, v in state.items()))
            key = ("predict", reg.ref, codec_of(reg).batch_key(x), shapes)
            served = self.predict_batcher.submit(key, (reg, state, x, tenant))
        else:
            served = self._predict_many(None, [(reg, state, x, tenant)])[0]
        if not bool(torch.isfinite(served).all()):
            raise InvalidInputs(f"inputs: {reg.ref} produced non-finite outputs for these inputs; "
                                "they are outside what it can answer")
        std = None if spread is None else spread.reshape(-1).tolist()
        return Served(reg.task.render(served, labels, top_k, abstain_threshold), std)

    def _predict_with_std(self, reg: RegisteredLearner, state: State, x: Tensor,
                          tenant: str) -> tuple[Tensor, Tensor]:
        def work() -> tuple[Tensor, Tensor]:
            t0 = time.perf_counter()
            mean, spread = reg.learner.predict_with_std(self._in(state), self._in(x))
            self.metrics.prediction.labels(reg.name).observe(time.perf_counter() - t0)
            return reg.task.outputs(mean).cpu(), None if spread is None else spread.cpu()

        return self.predict_executor.run(work, tenant=tenant)

    def _predict_many(self, key: Hashable, items: list[tuple], record: bool = True) -> list[Tensor]:
        reg = items[0][0]

        def work() -> list[Tensor]:
            t0 = time.perf_counter()
            if len(items) == 1:
                outs = [reg.learner.predict(self._in(items[0][1]), self._in(items[0][2]))]
            else:
                states = {k: self._in(torch.stack([i[1][k] for i in items])) for k in items[0][1]}
                outs = list(reg.learner.predict_batch(states, self._in(torch.stack([i[2] for i in items]))))
            outs = [reg.task.outputs(o).cpu() for o in outs]
            elapsed = time.perf_counter() - t0
            if record:
                if self.batch_choice.record(("predict", reg.ref), len(items), elapsed):
                    self._gauge_batching()
                for _ in items:
                    self.metrics.prediction.labels(reg.name).observe(elapsed)
            return outs

        return self.predict_executor.run(work, tenant=items[0][3])
