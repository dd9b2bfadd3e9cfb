"""A shipped meta-learner's manifest, parsed once into typed objects.

Unknown keys are refused at load (a typo in a hyperparameter must not silently fall back to a
default), while the documentary sections (training record, evaluations) stay free-form.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.meta.codec_registry import check_input_spec
from app.meta.input_spec import InputSpec

DEFAULT_LIMITS = {"max_ways": 50, "max_shots": 20, "max_support": 500, "max_queries": 256,
                  "max_steps": 50, "max_example_steps": 10_000}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HParams(_Strict):
    """Every hyperparameter an algorithm reads; each algorithm uses its own subset."""

    inner_lr: float | None = Field(None, gt=0)
    inner_steps: int | None = Field(None, ge=0)
    eval_steps: int | None = Field(None, ge=0)
    first_order: bool | None = None
    inner_loss_scale: Literal["mean", "ways", "support"] | None = None
    reference_support: int | None = Field(None, ge=1)
    reference_ways: int | None = Field(None, ge=1)
    width: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, gt=0)  # ProtoNet: logits / T (calibration)
    shot_temperature: float | None = Field(None, ge=0)  # ProtoNet: T + s / (mean shots per class)
    scale: float | None = Field(None, gt=0)  # Matching Networks: cosine attention sharpness
    # per-task fine-tuning: the temperature of its loss, when the served one was refitted after
    inner_temperature: float | None = Field(None, gt=0)
    # per-task fine-tuning of an image backbone: which one, how many of its last blocks, and
    # how many augmented views of each support photo
    image_backbone: str | None = None
    tail_blocks: int | None = Field(None, ge=0)
    views: int | None = Field(None, ge=0)
    # per-task fine-tuning of a sentence encoder: which one, how many of its top layers, how
    # many classes a pseudo-episode takes, and how many of a step's sentences go through the top
    # layers together, sorted by length (0: the whole episode at once), and in how many
    # pseudo-episodes each class takes part by default (steps scale with the classes; 0: fixed)
    text_encoder: str | None = None
    top_layers: int | None = Field(None, ge=1)
    episode_ways: int | None = Field(None, ge=2)
    step_chunk: int | None = Field(None, ge=0)
    episodes_per_class: int | None = Field(None, ge=0)
    # a softmax head fitted per task: the scale of its unit-embedding inputs, the pull toward
    # the prototype layer, and L-BFGS's iterations at most
    head_scale: float | None = Field(None, gt=0)
    head_l2: float | None = Field(None, gt=0)
    head_iterations: int | None = Field(None, ge=1)
    # the classes' names read as one more support example each (text), when informative
    label_names: bool | None = None

    @model_validator(mode="after")
    def _references(self) -> HParams:
        if self.inner_loss_scale == "ways" and not self.reference_ways:
            raise ValueError("inner_loss_scale 'ways' needs reference_ways")
        if self.inner_loss_scale == "support" and not self.reference_support:
            raise ValueError("inner_loss_scale 'support' needs reference_support")
        return self

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ModelSpec(_Strict):
    algorithm: str
    backbone: str
    backbone_args: dict[str, Any] = {}
    task_type: Literal["classification", "regression"]
    hparams: HParams = HParams()


class TargetSpec(_Strict):
    """Regression targets: the range of values the meta-learner was trained to produce."""

    value_range: list[float] = Field(min_length=2, max_length=2)


class Limits(_Strict):
    max_ways: int = Field(DEFAULT_LIMITS["max_ways"], ge=2)
    max_shots: int = Field(DEFAULT_LIMITS["max_shots"], ge=1)
    max_support: int = Field(DEFAULT_LIMITS["max_support"], ge=1)
    max_queries: int = Field(DEFAULT_LIMITS["max_queries"], ge=1)
    max_steps: int = Field(DEFAULT_LIMITS["max_steps"], ge=0)
    # the work budget of one adaptation: support examples x gradient steps
    max_example_steps: int = Field(DEFAULT_LIMITS["max_example_steps"], ge=1)


class AdaptationDefaults(_Strict):
    steps: int | None = Field(None, ge=0)


class StepStrategySpec(_Strict):
    """A step-strategy model shipped beside the weights (``app.meta.strategy``): requests
    that do not say ``options.steps`` adapt with the step count it chooses per task."""

    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    features: list[str]
    candidates: list[int] = Field(min_length=1)
    default: int = Field(ge=0)
    margin: float | None = Field(None, ge=0)  # None: never overrides the default
    command: str = ""
    seed: int = 0
    summary: dict[str, Any] = {}

    @model_validator(mode="after")
    def _consistent(self) -> StepStrategySpec:
        from app.meta.strategy import FEATURES

        if tuple(self.features) != FEATURES:
            raise ValueError(f"step_strategy.features {self.features} are not this release's "
                             f"{list(FEATURES)}")
        if self.default not in self.candidates or min(self.candidates) < 0:
            raise ValueError("step_strategy.default must be one of its non-negative candidates")
        return self


class Serving(_Strict):
    # adaptations take seconds (fine-tuning): every one runs as a job (202, then poll)
    asynchronous: bool = False


class Manifest(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$")
    version: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,39}$")
    algorithm: str
    family: str
    task_type: Literal["classification", "regression"]
    model: ModelSpec
    input: InputSpec
    targets: TargetSpec | None = None
    adaptation_defaults: AdaptationDefaults = AdaptationDefaults()
    limits: Limits = Limits()
    serving: Serving = Serving()
    step_strategy: StepStrategySpec | None = None
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    training: dict[str, Any] = {}
    evaluation: dict[str, Any] = {}
    notes: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.model.algorithm != self.algorithm or self.model.task_type != self.task_type:
            raise ValueError("model.algorithm / model.task_type disagree with the top level")
        check_input_spec(self.input)
        if self.targets is not None and self.task_type != "regression":
            raise ValueError("targets.value_range applies to regression only")
        return self


class ManifestError(ValueError):
    """A manifest that does not parse; the message names the failing fields."""


def parse_manifest(raw: dict[str, Any], where: str) -> Manifest:
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ManifestError(f"{where}: {problems}") from exc
