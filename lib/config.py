"""Typed, strictly validated configurations: the model, the training recipe, and a whole trial.

Unknown fields are rejected (a misspelt ``learningrate=`` must not silently do nothing), and every
error is a :class:`ConfigError` (a ``ValueError``) that names the field, the bad value and what is
allowed. Defaults live here, next to the fields they configure, so a notebook can print them and
override one in a line: ``TrialConfig.from_flat({"dropout_p": 0.3})``.

What this is not: the place that checks a config against a data set's input size; that needs the
input shape and lives in :func:`lib.model.build_model`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

NormType = Literal["none", "batch", "layer", "group"]
PoolType = Literal["max", "avg"]
DropoutPlacement = Literal["block", "head", "pool"]
DropoutImpl = Literal["fast", "torch"]
Activation = Literal["relu", "gelu", "silu"]
OptimizerName = Literal["adam", "adamw", "sgd"]
SchedulerName = Literal["none", "cosine", "plateau"]
Precision = Literal["fp32", "bf16"]


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), read from ``cpuinfo`` (Linux).

    Where it cannot tell (no such file: macOS, Windows) it says ``False``; bf16 is then emulated and
    slower than fp32. Not a check of a GPU: on CUDA, set ``precision`` yourself.
    """
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# The training precision a config gets when it does not say: bf16 where the CPU computes it natively,
# fp32 elsewhere (bf16 there is emulated and slower). The controlled comparison admitted bf16 by its
# declared rule (benchmarks/precision_numerics.py, results in benchmarks/results/precision_numerics.md:
# no arm's interval of bf16 - fp32 below -0.2 pp). Tests that compare fp32's exact numbers pin fp32.
DEFAULT_PRECISION: Precision = "bf16" if native_bf16() else "fp32"


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names field, value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @classmethod
    def create(cls, **values: Any) -> Any:
        """Validate ``values`` and return the config, or raise a readable :class:`ConfigError`."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_explain(cls, exc)) from None


def _explain(cls: type[BaseModel], exc: ValidationError) -> str:
    lines = []
    fields = sorted(cls.model_fields)
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or cls.__name__
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            near = difflib.get_close_matches(field, fields, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            lines.append(f"unknown field '{field}' (value {value!r}).{hint} Allowed fields: {', '.join(fields)}.")
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{field}={value!r}: {message}.")
    return f"invalid {cls.__name__}: " + " ".join(lines)


class ModelConfig(_Strict):
    """The CNN: ``num_conv_blocks`` x ((Conv -> Norm -> Act) x ``convs_per_block`` -> Dropout -> Pool),
    then a dense head.

    Block ``i`` has ``conv_out_channels * channel_multiplier**i`` channels, in every one of its
    ``convs_per_block`` convolutions (default 1: the course's block; 2 is a VGG-style block that sees a
    wider neighbourhood before each pool). Dropout follows the block's last activation only. Every
    hidden Linear is followed by Norm -> Act -> Dropout; the output Linear has neither norm nor dropout.
    ``dropout_placement``: ``block`` = after every activation (the course's order), ``head`` = only
    in the dense head (no dropout feeds a later BatchNorm), ``pool`` = in conv blocks after the pool
    instead of before it (max-pooling then no longer picks the rescaled survivors).
    ``dropout_impl``: ``fast`` draws the same Bernoulli masks as ``torch`` (``nn.Dropout``) about three
    times faster on the CPU, from a different random stream (see :mod:`lib.dropout`).
    """

    num_conv_blocks: int = Field(2, ge=0, le=8)
    conv_out_channels: int = Field(32, ge=1, le=1024)
    channel_multiplier: int = Field(2, ge=1, le=4)
    conv_kernel_size: int = Field(3, ge=1, le=11)
    pool_type: PoolType = "max"
    pool_kernel_size: int = Field(2, ge=1, le=8)
    hidden_sizes: tuple[int, ...] = (128,)
    norm_type: NormType = "none"
    group_norm_groups: int = Field(8, ge=1)
    dropout_p: float = Field(0.0, ge=0.0, lt=1.0)
    dropout_placement: DropoutPlacement = "block"
    dropout_impl: DropoutImpl = "fast"
    activation: Activation = "relu"
    # Added in study v4, last so the earlier fields keep their order; a config that leaves it at 1 keeps
    # the fingerprint it had before the field existed (TrialConfig.fingerprint).
    convs_per_block: int = Field(1, ge=1, le=4)

    @field_validator("conv_kernel_size")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd (1, 3, 5, ...) so 'same' padding keeps the map size")
        return value

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in value):
            raise ValueError("every hidden size must be >= 1 (use () for no hidden layer)")
        return value

    def channels(self) -> list[int]:
        """Output channels of each conv block."""
        return [self.conv_out_channels * self.channel_multiplier**i for i in range(self.num_conv_blocks)]


class TrainConfig(_Strict):
    """The training recipe: optimizer, schedule, budget, precision, augmentation, BN recalibration.

    ``scheduler="cosine"`` decays the rate per batch over the whole run (all ``epochs``), so a longer
    run is a longer cosine. ``precision="bf16"`` trains and evaluates under ``torch.autocast`` with
    bfloat16 (BatchNorm statistics, the loss and the weights stay fp32, as autocast keeps them).
    ``label_smoothing`` applies to the training loss only; validation loss is plain cross-entropy.
    Augmentation (training batches only, seeded from the trial seed, see :mod:`lib.data`):
    ``augment_crop_padding`` pads by that many pixels and crops back at a random offset (0: off),
    ``augment_flip`` mirrors half the images left-right, ``augment_erase_p`` erases one random
    rectangle (2-33% of the image, aspect 0.3-3.3) of each image with that probability.
    """

    optimizer: OptimizerName = "adamw"
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    batch_size: int = Field(128, ge=1, le=65536)
    epochs: int = Field(5, ge=1, le=1000)
    scheduler: SchedulerName = "cosine"
    early_stopping_patience: int | None = Field(None, ge=1)
    recalibrate_bn: bool = False
    recalibrate_batches: int = Field(40, ge=1)
    channels_last: bool = True
    precision: Precision = DEFAULT_PRECISION
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    augment_crop_padding: int = Field(0, ge=0, le=16)
    augment_flip: bool = False
    augment_erase_p: float = Field(0.0, ge=0.0, le=1.0)


MODEL_FIELDS = frozenset(ModelConfig.model_fields)
TRAIN_FIELDS = frozenset(TrainConfig.model_fields)
TRIAL_FIELDS = MODEL_FIELDS | TRAIN_FIELDS | {"seed"}


class TrialConfig(_Strict):
    """Everything one trial needs: model, training recipe and seed."""

    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    seed: int = Field(0, ge=0)

    @classmethod
    def from_flat(cls, values: dict[str, Any], base: TrialConfig | None = None) -> TrialConfig:
        """Build from flat ``{field: value}`` (as grids, hyperopt and MLflow use), over ``base``."""
        check_known_fields(values)
        base = base or cls()
        model = base.model.model_dump() | {k: v for k, v in values.items() if k in MODEL_FIELDS}
        train = base.train.model_dump() | {k: v for k, v in values.items() if k in TRAIN_FIELDS}
        return cls.create(
            model=ModelConfig.create(**model),
            train=TrainConfig.create(**train),
            seed=values.get("seed", base.seed),
        )

    def flat(self) -> dict[str, Any]:
        """All hyperparameters as one flat dict (logged to MLflow as params)."""
        return {**self.model.model_dump(), **self.train.model_dump(), "seed": self.seed}

    def canonical(self) -> TrialConfig:
        """The same experiment with fields that cannot matter set to fixed values.

        With ``dropout_p == 0`` the placement and the dropout implementation are irrelevant; without
        BatchNorm recalibration does nothing. Equal canonical configs share one cache key, so a grid
        never trains them twice.
        """
        model, train = self.model, self.train
        if model.dropout_p == 0.0:
            model = model.model_copy(update={"dropout_placement": "block", "dropout_impl": "fast"})
        if model.norm_type != "batch" or model.num_conv_blocks == 0 and not model.hidden_sizes:
            train = train.model_copy(update={"recalibrate_bn": False})
        if not train.recalibrate_bn:
            train = train.model_copy(update={"recalibrate_batches": TrainConfig().recalibrate_batches})
        if train.optimizer != "sgd":
            train = train.model_copy(update={"momentum": TrainConfig().momentum})
        return self.model_copy(update={"model": model, "train": train})

    def fingerprint(self) -> str:
        """Stable hash of the canonical config.

        ``convs_per_block`` enters it only when it is not 1, so a config of one conv per block has the
        fingerprint it had before the field existed.
        """
        flat = self.canonical().flat()
        if flat["convs_per_block"] == 1:
            del flat["convs_per_block"]
        text = json.dumps(flat, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def hard_bounds(name: str) -> tuple[float | None, float | None]:
    """The values a numeric hyperparameter can never pass, from its field's constraints (``ge``/``gt``,
    ``le``/``lt``): ``(low, high)``, ``None`` where unbounded. ``dropout_p`` gives ``(0.0, 1.0)``."""
    fields = ModelConfig.model_fields | TrainConfig.model_fields | TrialConfig.model_fields
    low = high = None
    for rule in getattr(fields.get(name), "metadata", []):
        for attr in ("ge", "gt"):
            if getattr(rule, attr, None) is not None:
                low = float(getattr(rule, attr))
        for attr in ("le", "lt"):
            if getattr(rule, attr, None) is not None:
                high = float(getattr(rule, attr))
    return low, high


def check_known_fields(values: dict[str, Any]) -> None:
    """Raise a :class:`ConfigError` for any key that is not a trial hyperparameter."""
    unknown = sorted(set(values) - TRIAL_FIELDS)
    if unknown:
        hints = []
        for name in unknown:
            near = difflib.get_close_matches(name, sorted(TRIAL_FIELDS), n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
        raise ConfigError(f"unknown hyperparameter(s): {', '.join(hints)}. Allowed: {', '.join(sorted(TRIAL_FIELDS))}.")
