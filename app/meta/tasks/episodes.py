"""N-way K-shot episodes over per-class pools of precomputed embeddings (text, photos)."""

from __future__ import annotations

import torch
from torch import Tensor

from app.meta.types import TaskBatch


class EmbeddingEpisodes:
    """Episodes drawn from ``pools`` (one ``[n_c, dim]`` tensor per class); classes with fewer
    than ``shots + queries`` examples are skipped. ``twins`` (optional, aligned with ``pools``)
    holds an augmented embedding of every example (e.g. the mirrored photo): each drawn
    example is replaced by its twin with probability one half."""

    def __init__(self, pools: list[Tensor], ways: int, shots: int, queries: int,
                 device: str = "cpu", what: str = "classes", twins: list[Tensor] | None = None) -> None:
        per_class = shots + queries
        self.ways, self.shots, self.queries, self.device = ways, shots, queries, device
        keep = [i for i, pool in enumerate(pools) if pool.shape[0] >= per_class]
        self.pools = [pools[i].to(device) for i in keep]
        self.twins = None if twins is None else [twins[i].to(device) for i in keep]
        if len(self.pools) < ways:
            raise ValueError(f"only {len(self.pools)} {what} have {per_class} examples; need {ways}")

    def sample(self, n_tasks: int, generator: torch.Generator) -> TaskBatch:
        per_class = self.shots + self.queries
        tasks = []
        for _ in range(n_tasks):
            classes = torch.randperm(len(self.pools), generator=generator)[: self.ways].tolist()
            rows = []
            for c in classes:
                pool = self.pools[c]
                pick = torch.randperm(pool.shape[0], generator=generator)[:per_class].to(pool.device)
                chosen = pool[pick]
                if self.twins is not None:
                    swap = (torch.rand(per_class, generator=generator) < 0.5).to(pool.device)
                    chosen = torch.where(swap[:, None], self.twins[c][pick], chosen)
                rows.append(chosen)
            tasks.append(torch.stack(rows))  # [ways, per_class, dim]
        x = torch.stack(tasks)
        labels = torch.arange(self.ways, device=self.device)[:, None]
        sy = labels.expand(self.ways, self.shots).reshape(-1)
        qy = labels.expand(self.ways, self.queries).reshape(-1)
        sx = x[:, :, : self.shots].reshape(n_tasks, -1, x.shape[-1])
        qx = x[:, :, self.shots :].reshape(n_tasks, -1, x.shape[-1])
        return TaskBatch(sx, sy.expand(n_tasks, -1), qx, qy.expand(n_tasks, -1), self.ways)
