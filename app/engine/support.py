"""Validate a support set against a meta-learner's limits and encode its labels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from app.core.problems import InvalidOptions, InvalidSupportSet, LimitExceeded
from app.engine.registry import RegisteredLearner


@dataclass
class EncodedSupport:
    y: Tensor
    ways: int
    labels: list[Any] | None  # class index -> the client's label, in order of first appearance


def encode_targets(reg: RegisteredLearner, targets: list[Any], n_inputs: int) -> EncodedSupport:
    limits = reg.limits
    if len(targets) != n_inputs:
        raise InvalidSupportSet(
            f"support.inputs has {n_inputs} items but support.targets has {len(targets)}")
    if n_inputs > limits["max_support"]:
        raise LimitExceeded(f"support set of {n_inputs} examples exceeds the limit of "
                            f"{limits['max_support']} for {reg.name}")
    if reg.task_type == "regression":
        if any(isinstance(t, bool | str) for t in targets):
            raise InvalidSupportSet("support.targets: regression targets must be numbers")
        y = torch.tensor([float(t) for t in targets], dtype=torch.float32)[:, None]
        if not torch.isfinite(y).all():
            raise InvalidSupportSet("support.targets: NaN or infinite targets are not allowed")
        return EncodedSupport(y, 0, None)
    kinds = {type(t) for t in targets}
    if kinds - {int, str}:
        raise InvalidSupportSet("support.targets: class labels must be strings or integers")
    if len(kinds) > 1:
        raise InvalidSupportSet("support.targets: use either string or integer labels, not both")
    labels = list(dict.fromkeys(targets))
    counts = Counter(targets)
    if len(labels) < 2:
        raise InvalidSupportSet("classification needs examples of at least 2 classes")
    if len(labels) > limits["max_ways"]:
        raise LimitExceeded(f"{len(labels)} classes exceed the limit of {limits['max_ways']} "
                            f"ways for {reg.name}")
    most = max(counts.values())
    if most > limits["max_shots"]:
        raise LimitExceeded(f"{most} examples of one class exceed the limit of "
                            f"{limits['max_shots']} shots for {reg.name}")
    index = {label: i for i, label in enumerate(labels)}
    y = torch.tensor([index[t] for t in targets], dtype=torch.long)
    return EncodedSupport(y, len(labels), labels)


def resolve_steps(reg: RegisteredLearner, steps: int | None) -> int | None:
    if steps is None:
        return None
    if not reg.learner.has_steps:
        raise InvalidOptions(f"{reg.name} ({reg.manifest['algorithm']}) adapts without gradient "
                             "steps; options.steps does not apply")
    if steps > reg.limits["max_steps"]:
        raise LimitExceeded(f"options.steps={steps} exceeds the limit of "
                            f"{reg.limits['max_steps']} for {reg.name}")
    return steps
