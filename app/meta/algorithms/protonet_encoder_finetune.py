"""Prototypical Networks over a sentence encoder whose top layers are fine-tuned per task.

SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts") fine-tunes a
pretrained sentence encoder contrastively on pairs drawn from the few-shot support set, then
fits a head on its embeddings. Here the contrastive objective is the prototypical loss of
pseudo-episodes drawn from the support set (as in P>M>F, Hu et al. 2022): each step takes up
to ``episode_ways`` classes, splits each class's sentences into a pseudo-support and a
pseudo-query half, and pulls every query towards its class prototype and away from the others.
Only the encoder's top ``top_layers`` transformer layers are fine-tuned (Adam, ``inner_lr``,
``steps`` steps); the layers below stay frozen, so their token states are computed once per
sentence, and a task of 64 intents x 10 sentences adapts in seconds on a CPU. The head is the
ProtoNet's: the residual adapter over the mean-pooled, L2-normalised embedding, then class
prototypes over the whole support set with the fine-tuned layers. With ``episodes_per_class``
a request that leaves the steps out gets as many as let each class take part in that many
pseudo-episodes (a 10-intent task fewer steps than a 64-intent one), at most ``eval_steps``.

The pseudo-episodes come from a generator seeded by the support set itself: the same support
set always adapts to the same state. Inputs are token ids and attention masks
``[n, 2, tokens]`` (the ``text-tokens`` codec). Adapted state: the fine-tuned ``top.*``
tensors of the top layers, ``prototypes`` and ``counts``.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Collection, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from app.meta.algorithms.base import copy_sharing_parameters
from app.meta.algorithms.hyperparameters import EncoderFineTuneHyperparameters
from app.meta.algorithms.protonet_finetune import ProtoNetBackboneTuning, prototype_loss, support_seed
from app.meta.types import AdaptedState


def _additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``[n, T]`` 1/0 attention mask -> the ``[n, 1, 1, T]`` additive mask of BERT-style layers."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def layer_inputs(transformer: nn.Module, states: Tensor) -> dict[str, Tensor]:
    """What every layer of ``transformer`` takes besides the states and the mask: MPNet's
    relative position bias (computed once by its encoder, shared by all layers); nothing for
    BERT-style encoders."""
    encoder = transformer.encoder
    if hasattr(encoder, "compute_position_bias"):
        with torch.no_grad():
            return {"position_bias": encoder.compute_position_bias(states)}
    return {}


def _run_layers(layers, states: Tensor, mask: Tensor, extra: dict[str, Tensor] | None = None) -> Tensor:
    additive = _additive_mask(mask, states.dtype)
    for layer in layers:
        out = layer(states, attention_mask=additive, **(extra or {}))
        states = out[0] if isinstance(out, tuple) else out
    return states


class EncoderTop(nn.Module):
    """The encoder's top transformer layers, then the mean over real tokens, L2-normalised
    (the pooling of the pinned sentence-transformers encoders). The layers' parameters are the
    encoder's own tensors (fine-tuning clones them; nothing writes them)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = copy_sharing_parameters(nn.ModuleList(layers))
        for module in self.layers.modules():  # fine-tuning is deterministic: no dropout
            if isinstance(module, nn.Dropout):
                module.p = 0.0

    def forward(self, states: Tensor, mask: Tensor, extra: dict[str, Tensor] | None = None) -> Tensor:
        states = _run_layers(self.layers, states, mask, extra)
        weights = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)


_parts_lock = threading.Lock()


def encoder_parts(encoder: str, top_layers: int) -> tuple[nn.Module, tuple[nn.Module, ...], EncoderTop]:
    """The shared PyTorch encoder (its embeddings and lower layers run frozen, without
    gradients), its lower layers, and a template of its top ``top_layers`` layers: built once
    per process, whatever the number of learners (registries) that use them."""
    with _parts_lock:
        return _encoder_parts(encoder, top_layers)


@functools.cache
def _encoder_parts(encoder: str, top_layers: int) -> tuple[nn.Module, tuple[nn.Module, ...], EncoderTop]:
    from app.meta.text_encoder import load_encoder

    transformer = load_encoder(encoder, "torch").model[0].auto_model
    layers = list(transformer.encoder.layer)
    if not 1 <= top_layers <= len(layers):
        raise ValueError(f"top_layers must lie in 1..{len(layers)}")
    top = EncoderTop(layers[len(layers) - top_layers:]).eval().requires_grad_(False)
    return transformer, tuple(layers[: len(layers) - top_layers]), top


class ProtoNetEncoderFineTune(ProtoNetBackboneTuning):
    """Text ProtoNet with per-task fine-tuning of the sentence encoder's top layers (a job:
    seconds, not milliseconds). Not meta-trained itself: it starts from the pinned encoder's
    pretrained weights and a text ProtoNet's adapter; its steps, learning rate and layers
    were chosen on validation splits."""

    name = "protonet-encoder-finetune"
    hyperparameters = EncoderFineTuneHyperparameters
    warm_at_start = False  # its encoder loads at its first task (a job of a minute)

    def __init__(self, model, task_type: str = "classification", **hparams) -> None:
        super().__init__(model, task_type, **hparams)
        self.top_layers = self.hp.top_layers
        # the encoder is checked now (installed, weights as pinned) but loaded at this learner's
        # first task: a process that never runs one does not hold it (all-mpnet-base-v2 is 440 MB)
        from app.meta.text_encoder import check_encoder

        if check_encoder(self.hp.text_encoder).layers:
            raise ValueError(f"{self.hp.text_encoder} pools several layers; per-task fine-tuning takes an "
                             "encoder's own sentence embedding")
        if self.top_layers < 1:
            raise ValueError("top_layers must be at least 1")

    @property
    def _parts(self) -> tuple[nn.Module, tuple[nn.Module, ...], EncoderTop]:
        """Shared by every learner of this process and never moved: the encoder's lower layers
        run on the CPU, the fine-tuned top layers where the learner's parameters are."""
        return encoder_parts(self.hp.text_encoder, self.top_layers)

    @property
    def network(self) -> nn.Module:
        return self._parts[0]

    @property
    def top(self) -> EncoderTop:
        """The template of the top layers (``local("top")`` gives each thread its own copy)."""
        return self._parts[2]

    def _top_params(self) -> dict[str, Tensor]:
        return {f"top.{k}": v.detach().to(self.device) for k, v in self.top.named_parameters()}

    def lower_states(self, x: Tensor, batch_size: int = 64) -> tuple[Tensor, Tensor]:
        """Token states after the frozen layers ``[n, T, d]`` and the mask ``[n, T]``, T the
        longest input's tokens; computed in batches of similar lengths, each only as long as
        its longest input (padding costs nothing then)."""
        ids, mask = x[:, 0].long().cpu(), x[:, 1].long().cpu()
        lengths = mask.sum(-1)
        length = max(int(lengths.max()), 1)
        ids, mask = ids[:, :length], mask[:, :length]
        out = torch.zeros(ids.shape[0], length, self.network.config.hidden_size)
        order = torch.argsort(lengths, stable=True)
        with torch.no_grad():
            for start in range(0, ids.shape[0], batch_size):
                rows = order[start:start + batch_size]
                part = max(int(lengths[rows].max()), 1)
                states = self.network.embeddings(input_ids=ids[rows, :part])
                extra = layer_inputs(self.network, states)
                out[rows, :part] = _run_layers(self._parts[1], states, mask[rows, :part], extra)
        return out.to(self.device), mask.to(self.device)

    def embed_states(self, params: dict[str, Tensor], states: Tensor, mask: Tensor) -> Tensor:
        """Top layers (``top.*`` from ``params``), pooling, then the adapter (``encoder.*``)."""
        top = {k[len("top."):]: v for k, v in params.items() if k.startswith("top.")}
        length = max(int(mask.sum(-1).max()), 1)
        states, mask = states[:, :length], mask[:, :length]
        pooled = functional_call(self.local("top"), top, (states, mask, layer_inputs(self.network, states)))
        return self.embed({k: v for k, v in params.items() if k.startswith("encoder.")}, pooled)

    def default_steps_for(self, ways: int) -> int:
        """With ``episodes_per_class``: the steps after which each of ``ways`` classes has taken
        part in that many pseudo-episodes of up to ``episode_ways`` classes, at most
        ``default_steps()`` (a task of few classes needs fewer steps than one of many)."""
        passes, most = self.hp.episodes_per_class, self.default_steps()
        if passes <= 0 or ways <= 0:
            return most
        per_episode = min(self.hp.episode_ways, ways)
        return min(most, max(1, math.ceil(passes * ways / per_episode)))

    @property
    def steps_rule(self) -> str | None:
        if self.hp.episodes_per_class <= 0:
            return None
        return (f"min({self.default_steps()}, ceil({self.hp.episodes_per_class} x classes / "
                f"min({self.hp.episode_ways}, classes))): each class takes part in "
                f"{self.hp.episodes_per_class} pseudo-episodes of up to {self.hp.episode_ways} classes")

    def adapt_params(self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int,
                     progress=None) -> AdaptedState:
        return next(self.fine_tuning(params, x, y, ways, steps, (steps,), progress))[1]

    def fine_tuning(self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int,
                    after: Collection[int], progress=None) -> Iterator[tuple[int, AdaptedState]]:
        """``steps`` fine-tuning steps, yielding ``(k, state)`` after the k-th step for each k in
        ``after`` (0: the pretrained layers): the state ``adapt_params`` with k steps gives, as the
        pseudo-episodes of the first k steps do not depend on the number of steps."""
        x = x.clone()  # inputs decoded under inference_mode cannot enter autograd as they are
        generator = torch.Generator().manual_seed(support_seed(x, y))
        states, mask = self.lower_states(x)
        weights = {**{k: v.detach().clone() for k, v in params.items()},
                   **{k: v.clone() for k, v in self._top_params().items()}}
        by_class = [torch.nonzero(y == c).flatten() for c in range(ways)]
        splittable = [c for c, rows in enumerate(by_class) if rows.numel() >= 2]
        if not (steps > 0 and len(splittable) >= 2):  # nothing to fine-tune on: the pretrained layers
            state = self._state(weights, states, mask, y, ways)
            yield from ((k, state) for k in sorted(after))
            return
        if 0 in after:
            yield 0, self._state(weights, states, mask, y, ways)
        trainable = {k: v.requires_grad_(True) for k, v in weights.items() if k.startswith("top.")}
        optimiser = torch.optim.Adam(trainable.values(), lr=float(self.hp.inner_lr))
        temperature = float(self.hp.loss_temperature)
        episode_ways = self.hp.episode_ways
        for step in range(steps):
            order = torch.randperm(len(splittable), generator=generator)[:episode_ways].tolist()
            s_rows, q_rows, s_y, q_y = [], [], [], []
            for j, c in enumerate(splittable[i] for i in order):
                rows = by_class[c][torch.randperm(by_class[c].numel(), generator=generator)]
                half = rows.numel() // 2
                q_rows.append(rows[:half])
                s_rows.append(rows[half:])
                q_y.append(torch.full((half,), j, dtype=torch.long))
                s_y.append(torch.full((rows.numel() - half,), j, dtype=torch.long))
            rows = torch.cat(s_rows + q_rows)
            n = sum(r.numel() for r in s_rows)
            with torch.enable_grad():
                z = self._embed_rows(weights, states[rows], mask[rows])
                loss = prototype_loss(z[:n], torch.cat(s_y), z[n:], torch.cat(q_y), len(order), temperature)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
            optimiser.step()
            if progress is not None:
                progress((step + 1) / steps)
            if step + 1 in after:
                yield step + 1, self._state(weights, states, mask, y, ways)

    def _state(self, weights: dict[str, Tensor], states: Tensor, mask: Tensor, y: Tensor,
               ways: int) -> AdaptedState:
        """The adapted state: the top layers as they are, prototypes of the whole support set."""
        with torch.no_grad():
            state = {k: v.detach().clone() for k, v in weights.items() if k.startswith("top.")}
            state.update(self.prototypes_of(self._embed_all({**weights, **state}, states, mask), y, ways))
        return state

    def predict_params(self, params: dict[str, Tensor], state: AdaptedState, x: Tensor) -> Tensor:
        return self.logits(self.embed_inputs(params, state, x), state["prototypes"], state["counts"])

    def embed_inputs(self, params: dict[str, Tensor], state: AdaptedState, x: Tensor) -> Tensor:
        """Inputs' embeddings with the adapted state's fine-tuned top layers (what the prototypes
        are compared with)."""
        states, mask = self.lower_states(x)
        weights = {**params, **{k: v for k, v in state.items() if k.startswith("top.")}}
        return self._embed_all(weights, states, mask)

    def _embed_rows(self, params: dict[str, Tensor], states: Tensor, mask: Tensor) -> Tensor:
        """A fine-tuning step's embeddings: the whole episode at once, or in length-sorted
        chunks of ``step_chunk`` rows (less padding: the same values up to rounding)."""
        if self.hp.step_chunk > 0:
            return self._embed_all(params, states, mask, batch_size=self.hp.step_chunk)
        return self.embed_states(params, states, mask)

    def _embed_all(self, params: dict[str, Tensor], states: Tensor, mask: Tensor, batch_size: int = 64) -> Tensor:
        """Every row embedded, in batches of similar lengths; rows in their original order."""
        order = torch.argsort(mask.sum(-1), stable=True)
        parts = [self.embed_states(params, states[rows], mask[rows]) for rows in order.split(batch_size)]
        return torch.cat(parts)[torch.argsort(order)]

    def meta_gradient(self, batch):  # noqa: ANN001, ANN201
        raise NotImplementedError("protonet-encoder-finetune is not meta-trained: it starts from the "
                                  "pinned encoder and a text ProtoNet's adapter (train text-protonet instead)")
