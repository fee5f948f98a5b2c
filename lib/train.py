"""The training loop, evaluation and BatchNorm recalibration.

:func:`fit` is one loop you can read on one screen, like pytorch/examples' mnist ``train()``: seed,
build the optimizer and scheduler, then for every epoch :func:`train_one_epoch` (seeded shuffled,
optionally augmented batches), :func:`validate`, record an :class:`EpochStats`, and apply the stop
rules (:func:`diverged`, :class:`EarlyStopping`). A run that explodes stops with status
``"diverged"`` (the rule is above :data:`EXPLODED_LOSS_FACTOR`); optional early stopping on
validation loss restores the best weights. ``precision="bf16"`` runs forward passes (training and
evaluation) under ``torch.autocast`` with bfloat16; the loss, the weights, the optimizer state and
BatchNorm's running statistics stay fp32. A CPU run repeats exactly for the same seed and thread count.

**Checkpoint rule** (:meth:`FitResult.best_epoch_metrics`): the *last* epoch's model is what a
trial returns and scores (``val_accuracy``); the *best* epoch is the one with the highest validation
accuracy (the earliest on ties), reported beside it as ``best_epoch``, ``best_val_accuracy`` and
``best_val_loss`` (the validation loss at that epoch), so a claim can declare which score it uses.

What this is not: how the model is built (:mod:`lib.model`) or logged (:mod:`lib.engine.records`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from lib.config import TrainConfig
from lib.data import ArrayData, Augmentation

# When a run counts as diverged (status "diverged", recorded FAILED with failure_kind=diverged):
# - a training batch's loss is NaN or infinite (training stops at once), or the validation loss is; or
# - an epoch's mean training loss, or its validation loss, is above EXPLODED_LOSS_FACTOR x ln(n_classes).
#   ln(n_classes) is what a uniform guess scores (2.30 for 10 classes), where every run starts; a mean
#   above 10x that (23 nats per image) means the weights blew up (adam at lr=10 reaches 1e10), not that
#   the run learns slowly.
# A run that trains without exploding but ends near chance accuracy is NOT diverged: it is a result
# (a learning rate too high or too low, or a short run on a small subset), recorded FINISHED with its
# low accuracy, and analyses treat it as such.
EXPLODED_LOSS_FACTOR = 10.0
EVAL_BATCH_SIZE = 256  # small batches stay in cache: 5k images evaluate about 2x faster than at 2048 on the CPU


@dataclass(frozen=True)
class EpochStats:
    """What one epoch produced."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class FitResult:
    """The outcome of :func:`fit`: per-epoch history, final status and timings."""

    history: list[EpochStats] = field(default_factory=list)
    status: str = "finished"  # finished | diverged
    failure_reason: str = ""
    train_seconds: float = 0.0
    images_seen: int = 0
    restored_epoch: int | None = None  # early stopping put back this epoch's weights
    recalibration: dict[str, float] = field(default_factory=dict)
    final: Evaluation | None = None  # the returned model's validation score (after recalibration)

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.train_seconds if self.train_seconds else 0.0

    def best_epoch_metrics(self) -> dict[str, float]:
        """The checkpoint rule's best epoch: highest validation accuracy, earliest on ties ({} without one)."""
        scored = [row for row in self.history if math.isfinite(row.val_accuracy)]
        if not scored:
            return {}
        best = max(scored, key=lambda row: (row.val_accuracy, -row.epoch))
        return {"best_epoch": best.epoch, "best_val_accuracy": best.val_accuracy, "best_val_loss": best.val_loss}


@dataclass(frozen=True)
class Evaluation:
    """Mean loss and accuracy; ``correct`` says per image (in data order) whether it was right."""

    loss: float
    accuracy: float
    correct: torch.Tensor | None = field(default=None, repr=False, compare=False)


def seed_everything(seed: int) -> None:
    """Seed torch's global generator (weights init, dropout masks)."""
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.momentum > 0,
        )
    optimizer_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer_cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Cosine decays per batch over the whole run; plateau halves the rate after 1 flat epoch."""
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1)
    return None


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The forward pass's precision: bfloat16 autocast for ``"bf16"`` (CPU or CUDA), a no-op for ``"fp32"``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when a GPU is present, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    data: ArrayData,
    batch_size: int = EVAL_BATCH_SIZE,
    device: str | torch.device = "auto",
    channels_last: bool = True,
    precision: str = "fp32",
) -> Evaluation:
    """Mean cross-entropy, accuracy and per-image correctness of ``model`` on ``data`` (eval mode, no grad)."""
    device = resolve_device(device)
    was_training = model.training
    model.eval()
    total_loss, hits = 0.0, []
    for x, y in data.batches(batch_size):
        with autocast(device, precision):
            logits = model(_to_device(x, device, channels_last))
        y = y.to(device)
        total_loss += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
        hits.append((logits.argmax(1) == y).cpu())
    model.train(was_training)
    correct = torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool)
    return Evaluation(loss=total_loss / len(data), accuracy=int(correct.sum()) / len(data), correct=correct)


_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def _bn_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _BN_TYPES)]


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    data: ArrayData,
    n_batches: int = 40,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "auto",
    channels_last: bool = True,
    precision: str = "fp32",
) -> int:
    """Re-estimate every BatchNorm layer's running statistics with dropout switched off.

    Resets the running mean/variance and recomputes them as a plain average (``momentum=None``)
    over ``n_batches`` random training batches, in training mode for BatchNorm only, so the
    statistics match the activations the network sees at evaluation time. No gradient, no weight
    change. Returns the number of BatchNorm layers recalibrated (0: a no-op).
    """
    bn_layers = _bn_layers(model)
    if not bn_layers:
        return 0
    device = resolve_device(device)
    was_training = model.training
    saved_momentum = [bn.momentum for bn in bn_layers]
    model.eval()
    for bn in bn_layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches seen
        bn.train()
    generator = torch.Generator().manual_seed(seed)
    for index, (x, _) in enumerate(data.batches(batch_size, shuffle=True, generator=generator)):
        if index >= n_batches:
            break
        with autocast(device, precision):
            model(_to_device(x, device, channels_last))
    for bn, momentum in zip(bn_layers, saved_momentum, strict=True):
        bn.momentum = momentum
    model.train(was_training)
    return len(bn_layers)


EpochCallback = Callable[[EpochStats], None]


def fit(
    model: nn.Module,
    train_data: ArrayData,
    val_data: ArrayData | None,
    config: TrainConfig,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Train ``model`` in place and return the per-epoch history.

    With ``val_data=None`` (the final retrain on train+validation) validation metrics are NaN and
    early stopping is off. ``on_epoch`` is called after every epoch (e.g. to log live to MLflow).
    """
    device = resolve_device(device)
    seed_everything(seed)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    feed = TrainingFeed(train_data, config, seed)
    run = FitData(train_data, val_data, config, seed, device)
    stopper = EarlyStopping(config.early_stopping_patience if val_data is not None else None)
    result = FitResult()
    bar = _progress_bar(config.epochs * steps_per_epoch, progress)
    for epoch in range(1, config.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        done = train_one_epoch(model, feed, optimizer, scheduler, config, device, bar)
        result.train_seconds += done.seconds
        result.images_seen += done.seen
        if done.failure:
            result.status, result.failure_reason = "diverged", f"{done.failure} in epoch {epoch}"
            break
        val = validate(model, run)
        stats = EpochStats(epoch, done.mean_loss, val.loss, val.accuracy, lr, done.seconds)
        result.history.append(stats)
        result.final = val
        if on_epoch:
            on_epoch(stats)
        bar.set_postfix(val_acc=f"{stats.val_accuracy:.4f}", refresh=False)
        failure = diverged(stats, done.n_outputs, val_data is not None)
        if failure:
            result.status, result.failure_reason = "diverged", failure
            break
        if config.scheduler == "plateau" and val_data is not None:
            scheduler.step(val.loss)
        if stopper.should_stop(epoch, val, model):
            break
    bar.close()
    if result.status == "finished":
        _finish(model, result, stopper, run)
    return result


class TrainingFeed:
    """The training batches of every epoch: a seeded shuffle, then the config's augmentation.

    Shuffling and augmentation draw from two generators seeded from the trial seed, so the same seed
    gives the same batches (and switching augmentation on does not change the order of the batches).
    """

    def __init__(self, data: ArrayData, config: TrainConfig, seed: int) -> None:
        self.data, self.batch_size = data, config.batch_size
        self.shuffle = torch.Generator().manual_seed(seed)
        self.random = torch.Generator().manual_seed(_augmentation_seed(seed))
        self.augmentation = Augmentation(
            crop_padding=config.augment_crop_padding,
            flip=config.augment_flip,
            erase_p=config.augment_erase_p,
            pad_value=float(data.images.min()) if config.augment_crop_padding and len(data) else 0.0,
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.data.batches(self.batch_size, shuffle=True, generator=self.shuffle):
            if len(y) < 2:  # a lone last sample breaks BatchNorm's batch statistics; skip it
                continue
            yield (self.augmentation(x, self.random) if self.augmentation.active else x), y


def _augmentation_seed(seed: int) -> int:
    return (seed + 1) * 0x9E3779B97F4A7C15 % 2**63  # a stream apart from the shuffle's (seed) and the weights'


@dataclass(frozen=True)
class EpochOutcome:
    """What one pass over the training batches produced (``failure``: why it stopped, or "")."""

    mean_loss: float
    seen: int
    seconds: float
    n_outputs: int
    failure: str = ""


def train_one_epoch(
    model: nn.Module,
    feed: TrainingFeed,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: TrainConfig,
    device: torch.device,
    bar: Any,
) -> EpochOutcome:
    """One pass over ``feed``: forward (in the config's precision), loss in fp32, backward, step."""
    model.train()
    started = time.perf_counter()
    loss_sum, seen, n_outputs = 0.0, 0, 2
    for x, y in feed:
        x, y = _to_device(x, device, config.channels_last), y.to(device)
        with autocast(device, config.precision):
            logits = model(x)
        n_outputs = logits.shape[-1]
        loss = nn.functional.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
        value = float(loss.detach())
        if not math.isfinite(value):
            return EpochOutcome(
                loss_sum / max(seen, 1), seen, time.perf_counter() - started, n_outputs, f"loss became {value}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if config.scheduler == "cosine":
            scheduler.step()
        loss_sum += value * len(y)
        seen += len(y)
        bar.update()
    return EpochOutcome(loss_sum / max(seen, 1), seen, time.perf_counter() - started, n_outputs)


@dataclass(frozen=True)
class FitData:
    """What every step of :func:`fit` reads besides the model: the data, the recipe, the seed, the device."""

    train: ArrayData
    val: ArrayData | None
    config: TrainConfig
    seed: int
    device: torch.device

    def evaluate(self, model: nn.Module) -> Evaluation:
        """The model on the validation data, in the training precision (requires validation data)."""
        config = self.config
        return evaluate(
            model, self.val, device=self.device, channels_last=config.channels_last, precision=config.precision
        )


def validate(model: nn.Module, run: FitData) -> Evaluation:
    """The epoch's validation score, as the finished trial would be scored (NaN without validation data).

    For a recalibrated arm (``recalibrate_bn``) BatchNorm is recalibrated first and its training-time
    statistics put back afterwards, so the per-epoch curve measures the model the trial reports
    (not the variance-shifted one); this costs ``recalibrate_batches`` forward batches per epoch.
    """
    if run.val is None:
        return Evaluation(math.nan, math.nan)
    if not (run.config.recalibrate_bn and _bn_layers(model)):
        return run.evaluate(model)
    saved = {name: buffer.clone() for name, buffer in model.named_buffers()}
    _recalibrate(model, run.train, run.config, run.seed, run.device)
    val = run.evaluate(model)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(saved[name])
    return val


class EarlyStopping:
    """Stop after ``patience`` epochs without a lower validation loss; remembers the best weights."""

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.best_loss, self.best_epoch, self.waited = math.inf, 0, 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def should_stop(self, epoch: int, val: Evaluation, model: nn.Module) -> bool:
        if not self.patience:
            return False
        if val.loss < self.best_loss:
            self.best_loss, self.best_epoch, self.waited = val.loss, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self.waited += 1
        return self.waited >= self.patience


def _finish(model: nn.Module, result: FitResult, stopper: EarlyStopping, run: FitData) -> None:
    """Restore early stopping's best weights, recalibrate BatchNorm, and score the returned model."""
    restored = stopper.best_state is not None and stopper.best_epoch != len(result.history)
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
        result.restored_epoch = stopper.best_epoch
    if run.config.recalibrate_bn:
        result.recalibration, after = _recalibrate_and_compare(model, run)
        result.final = after or result.final
    elif restored and run.val is not None:
        result.final = run.evaluate(model)


def _progress_bar(total: int, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not progress, unit="batch", desc="train", leave=False, mininterval=1.0)


def diverged(stats: EpochStats, n_classes: int, validated: bool = True) -> str:
    """Why an epoch counts as diverged (see :data:`EXPLODED_LOSS_FACTOR`), or ``""``.

    ``validated=False`` (no validation data: its loss is NaN by design) checks the training loss only.
    """
    if validated and not math.isfinite(stats.val_loss):
        return f"validation loss is {stats.val_loss} in epoch {stats.epoch}"
    uniform = math.log(max(n_classes, 2))
    limit = EXPLODED_LOSS_FACTOR * uniform
    for name, value in (("training", stats.train_loss), ("validation", stats.val_loss)):
        if value > limit:  # NaN compares False: a final retrain has no validation loss
            return (
                f"{name} loss {value:.3g} in epoch {stats.epoch} is above {EXPLODED_LOSS_FACTOR:g} x ln({n_classes}) "
                f"= {limit:.1f} (a uniform guess scores {uniform:.2f}): the weights exploded"
            )
    return ""


def _recalibrate(model: nn.Module, data: ArrayData, config: TrainConfig, seed: int, device: torch.device) -> None:
    recalibrate_bn(
        model,
        data,
        config.recalibrate_batches,
        seed=seed,
        device=device,
        channels_last=config.channels_last,
        precision=config.precision,
    )


def _recalibrate_and_compare(model: nn.Module, run: FitData) -> tuple[dict[str, float], Evaluation | None]:
    """Recalibrate BatchNorm after training; validation accuracy and loss before and after, and the
    evaluation after (``None`` without validation data)."""
    before = run.evaluate(model) if run.val else None
    _recalibrate(model, run.train, run.config, run.seed, run.device)
    after = run.evaluate(model) if run.val else None
    if before is None or after is None:
        return {}, None
    comparison = {
        "val_accuracy_before_recalibration": before.accuracy,
        "val_loss_before_recalibration": before.loss,
        "val_accuracy_after_recalibration": after.accuracy,
        "val_loss_after_recalibration": after.loss,
    }
    return comparison, after


@torch.no_grad()
def bn_variance_ratios(
    model: nn.Module,
    data: ArrayData,
    batch_size: int = 1024,
    device: str | torch.device = "auto",
    channels_last: bool = True,
) -> dict[str, float]:
    """Per BatchNorm layer: mean over channels of ``running_var / var(input at evaluation)``.

    A ratio of 1 means the stored statistics match what the layer sees at evaluation time; dropout
    before a BatchNorm inflates the training-time variance (Li et al., CVPR 2019), giving > 1.
    """
    device = resolve_device(device)
    captured: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, _BN_TYPES):

            def hook(mod, inputs, _out, key=name):
                x = inputs[0]
                dims = [0, 2, 3] if x.ndim == 4 else [0]
                captured.setdefault(key, []).append(torch.stack([x.mean(dims), (x * x).mean(dims)]))

            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    for x, _ in data.batches(batch_size):
        model(_to_device(x, device, channels_last))
    for handle in hooks:
        handle.remove()
    model.train(was_training)
    modules = dict(model.named_modules())
    ratios = {}
    for name, moments in captured.items():
        mean_x, mean_x2 = torch.stack(moments).mean(0)
        actual_var = (mean_x2 - mean_x**2).clamp_min(1e-8)
        ratios[name] = float((modules[name].running_var / actual_var).mean())
    return ratios
