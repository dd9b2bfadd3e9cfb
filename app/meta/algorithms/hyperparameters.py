"""Each algorithm's hyperparameters, typed, with their defaults in one place.

A manifest's ``model.hparams`` (and a training configuration's ``hparams``) is read into the
algorithm's class by :meth:`Hyperparameters.of`: a key the algorithm does not read is refused,
a missing one takes the default declared here. Calibration replaces a learner's values with
:func:`dataclasses.replace` (the objects are frozen).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar

H = TypeVar("H", bound="Hyperparameters")


@dataclass(frozen=True)
class Hyperparameters:
    """Every algorithm: inner steps in meta-training, and by default at adaptation."""

    inner_steps: int = 0
    eval_steps: int | None = None  # None: as many as in meta-training

    @classmethod
    def of(cls: type[H], algorithm: str, values: Mapping[str, Any]) -> H:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{algorithm} has no hyperparameter {', '.join(unknown)}; its own: {sorted(known)}")
        made = cls(**{k: v for k, v in values.items() if v is not None})
        made.check(algorithm)
        return made

    def check(self, algorithm: str) -> None:
        """Refuse values that cannot work together (subclasses add their own rules)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class GradientHyperparameters(Hyperparameters):
    """MAML, Meta-SGD (``inner_lr``: the initial per-parameter rates), Reptile."""

    inner_lr: float = 0.01
    first_order: bool = False
    # the weight of the mean support loss in inner steps (MetaLearner.inner_loss_weight)
    inner_loss_scale: Literal["mean", "ways", "support"] = "mean"
    reference_ways: int | None = None
    reference_support: int | None = None

    def check(self, algorithm: str) -> None:
        if self.inner_loss_scale not in ("mean", "ways", "support"):
            raise ValueError(f"{algorithm}: unknown inner_loss_scale {self.inner_loss_scale!r}; "
                             "known: mean, ways, support")
        if self.inner_loss_scale == "ways" and not self.reference_ways:
            raise ValueError(f"{algorithm}: inner_loss_scale 'ways' needs reference_ways")
        if self.inner_loss_scale == "support" and not self.reference_support:
            raise ValueError(f"{algorithm}: inner_loss_scale 'support' needs reference_support")


@dataclass(frozen=True)
class HeadOnlyHyperparameters(GradientHyperparameters):
    """ANIL: only the head adapts, with a larger rate."""

    inner_lr: float = 0.1


@dataclass(frozen=True)
class PrototypeHyperparameters(Hyperparameters):
    """ProtoNet: logits are -distances / (temperature + shot_temperature / mean shots per class)."""

    temperature: float = 1.0
    shot_temperature: float = 0.0


@dataclass(frozen=True)
class SoftmaxHeadHyperparameters(PrototypeHyperparameters):
    """ProtoNet refined by a softmax head fitted per task: the unit embeddings times
    ``head_scale`` feed the head; ``head_l2`` pulls its weights toward the prototypes' linear
    layer; L-BFGS runs at most ``head_iterations``; ``temperature`` divides the served logits;
    with ``label_names`` the classes' names join the support as one example each, when they are
    informative."""

    head_scale: float = 4.0
    head_l2: float = 1e-3
    head_iterations: int = 100
    label_names: bool = False

    def check(self, algorithm: str) -> None:
        if self.head_scale <= 0 or self.head_l2 <= 0 or self.head_iterations < 1:
            raise ValueError(f"{algorithm}: head_scale and head_l2 must be positive and "
                             "head_iterations at least 1")


@dataclass(frozen=True)
class FineTuneHyperparameters(PrototypeHyperparameters):
    """ProtoNet fine-tuned per task (Adam at ``inner_lr`` for ``eval_steps`` steps)."""

    inner_lr: float = 1e-4
    # the temperature of the fine-tuning loss when the served one was refitted afterwards
    inner_temperature: float | None = None

    @property
    def loss_temperature(self) -> float:
        return self.inner_temperature if self.inner_temperature is not None else self.temperature


@dataclass(frozen=True)
class BackboneFineTuneHyperparameters(FineTuneHyperparameters):
    """Photos: the pinned image backbone, how many of its last blocks tune, augmented views."""

    image_backbone: str = ""
    tail_blocks: int = 0
    views: int = 4

    def check(self, algorithm: str) -> None:
        if not self.image_backbone:
            raise ValueError(f"{algorithm} needs image_backbone")


@dataclass(frozen=True)
class EncoderFineTuneHyperparameters(FineTuneHyperparameters):
    """Text: the pinned sentence encoder, how many of its top layers tune, classes per episode."""

    text_encoder: str = ""
    top_layers: int = 2
    episode_ways: int = 16
    # a fine-tuning step's sentences, sorted by length, go through the top layers in chunks of
    # this many rows, each padded only to its longest (0: the whole episode at once, padded to
    # its longest sentence: the arithmetic of the versions made before chunks existed)
    step_chunk: int = 0
    # default steps scale with the task's classes: enough for each class to take part in this
    # many pseudo-episodes, at most eval_steps (0: always eval_steps)
    episodes_per_class: int = 0

    def check(self, algorithm: str) -> None:
        if not self.text_encoder:
            raise ValueError(f"{algorithm} needs text_encoder")
        if self.episodes_per_class < 0:
            raise ValueError(f"{algorithm}: episodes_per_class must be 0 (always eval_steps) or positive")
        if self.step_chunk < 0:
            raise ValueError(f"{algorithm}: step_chunk must be 0 (whole episodes) or positive")


@dataclass(frozen=True)
class MatchingHyperparameters(Hyperparameters):
    """Matching Networks: the sharpness of the cosine attention."""

    scale: float = 10.0


@dataclass(frozen=True)
class HyperNetHyperparameters(Hyperparameters):
    """The hypernetwork: the width of its set encoder."""

    width: int = 128
