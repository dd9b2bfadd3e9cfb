"""N-way K-shot episodes over per-class pools of precomputed embeddings (text, photos)."""

from __future__ import annotations

import torch
from torch import Tensor

from app.meta.types import TaskBatch


class EmbeddingEpisodes:
    """Episodes drawn from ``pools`` (one ``[n_c, dim]`` tensor per class); classes with fewer
    than ``shots + queries`` examples are skipped. ``views`` (optional, aligned with ``pools``)
    holds ``[n_c, V, dim]`` embeddings of augmented views of every example (e.g. crops and
    mirror images of a photo): each drawn example is then one of its V + 1 versions, uniformly."""

    def __init__(self, pools: list[Tensor], ways: int, shots: int, queries: int,
                 device: str = "cpu", what: str = "classes", views: list[Tensor] | None = None) -> None:
        per_class = shots + queries
        self.ways, self.shots, self.queries, self.device = ways, shots, queries, device
        keep = [i for i, pool in enumerate(pools) if pool.shape[0] >= per_class]
        self.pools = [pools[i].to(device) for i in keep]
        self.versions = None if views is None else [
            torch.cat([pools[i][:, None], views[i]], 1).to(device) for i in keep]  # [n_c, V + 1, dim]
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
                if self.versions is None:
                    chosen = pool[pick]
                else:
                    versions = self.versions[c]
                    which = torch.randint(versions.shape[1], (per_class,), generator=generator)
                    chosen = versions[pick, which.to(pool.device)]
                rows.append(chosen)
            tasks.append(torch.stack(rows))  # [ways, per_class, dim]
        x = torch.stack(tasks)
        labels = torch.arange(self.ways, device=self.device)[:, None]
        sy = labels.expand(self.ways, self.shots).reshape(-1)
        qy = labels.expand(self.ways, self.queries).reshape(-1)
        sx = x[:, :, : self.shots].reshape(n_tasks, -1, x.shape[-1])
        qx = x[:, :, self.shots :].reshape(n_tasks, -1, x.shape[-1])
        return TaskBatch(sx, sy.expand(n_tasks, -1), qx, qy.expand(n_tasks, -1), self.ways)


class AlternatingEpisodes:
    """Meta-batches drawn in turn from several samplers (e.g. class episodes, then episodes
    whose classes are single photos and whose examples are its augmented views)."""

    def __init__(self, samplers: list) -> None:
        self.samplers, self._turn = samplers, 0

    def sample(self, n_tasks: int, generator: torch.Generator) -> TaskBatch:
        sampler = self.samplers[self._turn % len(self.samplers)]
        self._turn += 1
        return sampler.sample(n_tasks, generator)
