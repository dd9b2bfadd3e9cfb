"""Base networks, used functionally (``torch.func.functional_call``).

* :class:`Conv4`: the four-block convolutional network of Vinyals et al. (2016), used by MAML
  (Finn et al., 2017) and Prototypical Networks (Snell et al., 2017) on 28x28 grey images.
  Normalisation is per example (GroupNorm with one group, i.e. LayerNorm over C,H,W) so that
  a prediction never depends on the other inputs of a batch and nothing keeps running state.
* :class:`SineMLP`: the 1-40-40-1 ReLU network of the MAML sinusoid experiment.
* :class:`EmbeddingAdapter`: a residual adapter over frozen sentence embeddings (text).

Both expose ``encoder`` (features) and ``head`` (a linear layer). Classification heads hold a
single row that is repeated for each class at adaptation time (Ye & Chao, 2022, "How to train
your MAML to excel in few-shot classification"): the learner then serves any number of ways
and is invariant to the order of the labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.GroupNorm(1, out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


def max_pool_2x2(x: Tensor, kernel_size: int = 2) -> Tensor:
    """``F.max_pool2d(x, 2)`` (floor mode: an odd last row or column is dropped) as two
    elementwise maxima of strided views: identical values, vectorised on the CPU."""
    if kernel_size != 2:
        raise ValueError("max_pool_2x2 pools 2x2 windows only")
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class Conv4(nn.Module):
    """Four conv blocks (64 channels) on ``[B, 1, 28, 28]`` inputs, 64 features."""

    def __init__(self, in_channels: int = 1, channels: int = 64, head_rows: int = 1) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            conv_block(in_channels, channels),
            conv_block(channels, channels),
            conv_block(channels, channels),
            conv_block(channels, channels),
            nn.Flatten(),
        )
        self.feature_dim = channels
        self.head = nn.Linear(channels, head_rows)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))

    def functional_encoder(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """``encoder`` with ``params`` (keys ``encoder.*``) in place of the module's own tensors.

        Each block pools before the ReLU: ``relu(max_pool(z)) == max_pool(relu(z))`` exactly
        (ReLU is monotone), and the ReLU then runs on a quarter of the values. Without
        autograd (prediction, prototypes) the 2x2 pooling is two elementwise maxima of strided
        views, the same values as ``max_pool2d``: PyTorch's CPU pooling of NCHW tensors is
        scalar code (7.0 vs 0.4 ms for 25x64x28x28 on one thread; Conv4 forward of 25 images
        19.4 -> 12.0 ms). With autograd ``max_pool2d`` stays: it sends a tie's gradient to one
        input, as training did, where ``maximum`` would split it."""
        groups = self.encoder[0][1].num_groups
        pool = F.max_pool2d if torch.is_grad_enabled() else max_pool_2x2
        for i in range(4):
            p = f"encoder.{i}"
            x = F.conv2d(x, params[f"{p}.0.weight"], params[f"{p}.0.bias"], padding=1)
            x = F.group_norm(x, groups, params[f"{p}.1.weight"], params[f"{p}.1.bias"])
            x = F.relu(pool(x, 2))
        return x.flatten(1)

    def functional(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """``forward`` with ``params`` in place of the module's own tensors (the same ops as
        ``functional_call``, without swapping them into the module)."""
        return F.linear(self.functional_encoder(params, x), params["head.weight"], params["head.bias"])


class SineMLP(nn.Module):
    """1-40-40-1 ReLU regression network."""

    def __init__(self, hidden: int = 40) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.feature_dim = hidden
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))

    def functional(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """``forward`` with ``params`` in place of the module's own tensors."""
        x = F.relu(F.linear(x, params["encoder.0.weight"], params["encoder.0.bias"]))
        x = F.relu(F.linear(x, params["encoder.2.weight"], params["encoder.2.bias"]))
        return F.linear(x, params["head.weight"], params["head.bias"])


class ResidualAdapter(nn.Module):
    """``scale * (x + W2 relu(W1 x))``: a residual adapter over frozen sentence embeddings.

    ``W2`` starts at zero, so before meta-training the features are the frozen encoder's
    (scaled): meta-training can only move away from that baseline where episodes reward it.
    """

    def __init__(self, dim: int, hidden: int, scale: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * (x + self.fc2(torch.relu(self.fc1(x))))


class EmbeddingAdapter(nn.Module):
    """Text backbone on precomputed ``[B, dim]`` sentence embeddings: a residual adapter
    (``encoder``) and a linear ``head`` row for head-adapting learners."""

    def __init__(self, dim: int = 384, hidden: int = 512, scale: float = 8.0, head_rows: int = 1) -> None:
        super().__init__()
        self.encoder = nn.Sequential(ResidualAdapter(dim, hidden, scale))
        self.feature_dim = dim
        self.head = nn.Linear(dim, head_rows)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class NeuralProcessNet(nn.Module):
    """The three networks of an attentive neural process on ``x_dim``-d inputs and ``y_dim``-d
    targets: ``keys`` (x -> d, for attention), ``values`` ((x, y) -> d, the memory) and
    ``decoder`` ((x, r) -> mean and raw standard deviation)."""

    def __init__(self, x_dim: int = 1, y_dim: int = 1, width: int = 128) -> None:
        super().__init__()
        self.keys = mlp([x_dim, width, width])
        self.values = mlp([x_dim + y_dim, width, width, width])
        self.decoder = mlp([x_dim + width, width, width, 2 * y_dim])
        self.feature_dim = width


BACKBONES: dict[str, type[nn.Module]] = {"conv4": Conv4, "sine_mlp": SineMLP,
                                         "embedding_adapter": EmbeddingAdapter,
                                         "neural_process": NeuralProcessNet}


def build_backbone(name: str, **kwargs: int) -> nn.Module:
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[name](**kwargs)


def with_prefix(params: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``params`` under ``prefix.``, with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in params.items() if k.startswith(prefix + ".")}


def expand_head(params: dict[str, Tensor], ways: int) -> dict[str, Tensor]:
    """Repeat a one-row classification head to ``ways`` rows (a no-op for regression)."""
    if ways <= 0:
        return dict(params)
    out = dict(params)
    out["head.weight"] = params["head.weight"].expand(ways, -1)
    out["head.bias"] = params["head.bias"].expand(ways)
    return out
