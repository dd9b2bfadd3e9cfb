"""Requests checked and encoded before any compute: a support set (sizes, limits, steps, targets,
inputs) or examples to add, turned into tensors, with every refusal a domain error naming the field."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor

from app.core.errors import InvalidInputs, InvalidOptions, InvalidSupportSet, LimitExceeded
from app.engine.registry import RegisteredLearner, Registry
from app.engine.types import AUTO, PreparedTask
from app.meta.algorithms import AdaptOptions
from app.meta.codec_registry import codec_for
from app.meta.codecs import InputCodec, InputError, InputLimitExceeded, InputLimits
from app.meta.task_types import InvalidTargets, TargetLimitExceeded


def check_steps(registry: Registry, reg: RegisteredLearner, steps: int | str | None) -> int | None:
    """The one place a request's ``steps`` is checked: the steps asked for, or None for the
    learner's default (``"auto"``: the fixed default here; the strategy's choice is made in a
    worker, see ``ServingEngine._choose_steps``); 0 for learners without steps."""
    if steps == AUTO:
        if reg.strategy is None:
            with_one = [r.ref for r in registry.all() if r.name == reg.name and r.strategy]
            raise InvalidOptions(
                f"{reg.ref} has no step-strategy model, so options.steps='auto' does not "
                f"apply; give a number of steps" + (
                    f", or use {', '.join(with_one)}" if with_one else ""))
        steps = None
    if not reg.learner.has_steps:
        if steps is not None:
            raise InvalidOptions(f"{reg.name} ({reg.spec.algorithm}) adapts without gradient "
                                 "steps; options.steps does not apply")
        return 0
    if steps is not None and steps > reg.limits.max_steps:
        raise LimitExceeded(f"options.steps={steps} exceeds the limit of "
                            f"{reg.limits.max_steps} for {reg.name}")
    return steps


def prepare_support(registry: Registry, reg: RegisteredLearner, inputs: list[Any], targets: list[Any],
                    steps: int | str | None, input_limits: InputLimits) -> PreparedTask:
    """Validate and encode a support set (no database, no gradient work)."""
    limits = reg.limits
    if len(targets) != len(inputs):
        raise InvalidSupportSet(
            f"support.inputs has {len(inputs)} items but support.targets has {len(targets)}")
    if len(inputs) > limits.max_support:
        raise LimitExceeded(f"support set of {len(inputs)} examples exceeds the limit of "
                            f"{limits.max_support} for {reg.name}")
    asked = check_steps(registry, reg, steps)  # the options refused before the targets are read
    try:
        encoded = reg.task.encode(targets, limits.max_ways, limits.max_shots)
    except InvalidTargets as exc:
        raise InvalidSupportSet(f"support.targets: {exc}") from exc
    except TargetLimitExceeded as exc:
        raise LimitExceeded(f"support.targets: {exc} for {reg.name}") from exc
    resolved = reg.learner.resolve_steps(AdaptOptions(steps=asked), encoded.ways)  # the default: by the classes
    check_target_range(reg, encoded.y, "support.targets")
    work = len(inputs) * max(resolved, 1)
    if reg.learner.has_steps and work > limits.max_example_steps:
        raise LimitExceeded(
            f"this adaptation costs {len(inputs)} examples x {resolved} steps = {work} "
            f"example-steps, over the budget of {limits.max_example_steps} for {reg.name}; "
            "send fewer examples or ask for fewer steps")
    if reg.learner.seeds_from_support:  # the same support set, the same bits, the same model
        input_limits = replace(input_limits, reuse_embeddings=False)
    x = decode_inputs(reg, inputs, "support.inputs", input_limits)
    chosen_by = ("strategy" if reg.strategy is not None and steps in (None, AUTO)
                 else "request" if steps is not None else "default")
    return PreparedTask(reg, x, encoded.y, encoded.ways, encoded.labels, resolved,
                        steps_chosen_by=chosen_by, label_x=label_inputs(reg, encoded.labels, input_limits))


def label_inputs(reg: RegisteredLearner, labels: list[Any] | None, limits: InputLimits) -> Tensor | None:
    """The labels' names decoded as inputs, for a learner that reads them; None where it does
    not, or where its kind of input cannot read these labels."""
    if not reg.learner.reads_label_names or not labels:
        return None
    items = codec_of(reg).label_inputs(labels, reg.input_spec)
    return None if items is None else decode_inputs(reg, items, "support.targets", limits)


def prepare_examples(reg: RegisteredLearner, labels: list[Any] | None, inputs: list[Any], targets: list[Any],
                     input_limits: InputLimits) -> tuple[Tensor, Tensor, int, list[Any] | None]:
    """Validate and encode examples to add to an adapted model: ``(x, y, ways, labels)``, old labels
    keeping their places and new ones after them (``ways`` and ``labels`` only for classification)."""
    limits = reg.limits
    if len(targets) != len(inputs):
        raise InvalidSupportSet(f"inputs has {len(inputs)} items but targets has {len(targets)}")
    try:
        if labels is not None:  # old labels keep their places; new ones come after them
            encoded = reg.task.encode(list(labels) + list(targets), limits.max_ways,
                                      limits.max_shots + 1)
            y, ways, new_labels = encoded.y[len(labels):], encoded.ways, encoded.labels
        else:
            encoded = reg.task.encode(targets, limits.max_ways, limits.max_shots)
            y, ways, new_labels = encoded.y, 0, None
    except InvalidTargets as exc:
        raise InvalidSupportSet(f"targets: {exc}") from exc
    except TargetLimitExceeded as exc:
        raise LimitExceeded(f"targets: {exc} for {reg.name}") from exc
    check_target_range(reg, y, "targets")
    x = decode_inputs(reg, inputs, "inputs", input_limits)
    return x, y, ways, new_labels


def check_target_range(reg: RegisteredLearner, y: Tensor, field: str) -> None:
    """Regression targets within the range the meta-learner was trained on."""
    if reg.spec.targets is not None:
        low, high = reg.spec.targets.value_range
        if bool((y < low).any() or (y > high).any()):
            raise InvalidSupportSet(f"{field} must lie in [{low}, {high}], the range "
                                    f"{reg.ref} was trained on")


def codec_of(reg: RegisteredLearner) -> InputCodec:
    return codec_for(reg.spec.input.codec_name)


def decode_inputs(reg: RegisteredLearner, inputs: list[Any], field: str, limits: InputLimits) -> Tensor:
    try:
        return codec_of(reg).decode(inputs, reg.input_spec, field, limits)
    except InputLimitExceeded as exc:
        raise LimitExceeded(str(exc)) from exc
    except InputError as exc:
        raise InvalidInputs(str(exc)) from exc
