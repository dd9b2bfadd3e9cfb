"""Plain data types shared by the algorithms, the samplers and the service."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

AdaptedState = dict[str, Tensor]
"""What adaptation produced: only the tensors that differ per task (fast weights, head,
prototypes...). Plain, serialisable with safetensors, stackable for batched serving."""


@dataclass(frozen=True)
class TaskBatch:
    """A batch of tasks of one shape: support and query sets stacked on dim 0.

    Classification targets are class indices in ``[0, ways)``; regression targets are
    ``[n, 1]`` floats.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    ways: int = 0

    def to(self, device: str) -> TaskBatch:
        return TaskBatch(
            self.support_x.to(device),
            self.support_y.to(device),
            self.query_x.to(device),
            self.query_y.to(device),
            self.ways,
        )

    def __len__(self) -> int:
        return int(self.support_x.shape[0])
