"""The training loop, evaluation and BatchNorm recalibration.

``fit`` is one flat loop you can read top to bottom: seed, build the optimizer and scheduler,
then for every epoch train on shuffled index batches, evaluate on the validation data and record
an :class:`EpochStats`. A run that explodes stops with status ``"diverged"`` (the rule is above
:data:`EXPLODED_LOSS_FACTOR`); optional early stopping on validation loss restores the best weights.
A CPU run repeats exactly for the same seed and thread count. The trainer knows nothing about how
the model is built or logged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from lib.config import TrainConfig
from lib.data import ArrayData

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
    best_epoch: int | None = None
    recalibration: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.train_seconds if self.train_seconds else 0.0


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float


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
) -> Evaluation:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` (evaluation mode, no grad)."""
    device = resolve_device(device)
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for x, y in data.batches(batch_size):
        logits = model(_to_device(x, device, channels_last))
        y = y.to(device)
        total_loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return Evaluation(loss=total_loss / len(data), accuracy=correct / len(data))


_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    data: ArrayData,
    n_batches: int = 40,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "auto",
    channels_last: bool = True,
) -> int:
    """Re-estimate every BatchNorm layer's running statistics with dropout switched off.

    Resets the running mean/variance and recomputes them as a plain average (``momentum=None``)
    over ``n_batches`` random training batches, in training mode for BatchNorm only, so the
    statistics match the activations the network sees at evaluation time. No gradient, no weight
    change. Returns the number of BatchNorm layers recalibrated (0: a no-op).
    """
    bn_layers = [m for m in model.modules() if isinstance(m, _BN_TYPES)]
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
    from tqdm.auto import tqdm

    device = resolve_device(device)
    seed_everything(seed)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    shuffle_generator = torch.Generator().manual_seed(seed)
    result = FitResult()
    best_loss, best_state, epochs_without_gain = math.inf, None, 0
    n_outputs = 2
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        disable=not progress,
        unit="batch",
        desc="train",
        leave=False,
        mininterval=1.0,
    )
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_lr = optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for x, y in train_data.batches(config.batch_size, shuffle=True, generator=shuffle_generator):
            if len(y) < 2:  # a lone last sample breaks BatchNorm's batch statistics; skip it
                continue
            x, y = _to_device(x, device, config.channels_last), y.to(device)
            logits = model(x)
            n_outputs = logits.shape[-1]
            loss = nn.functional.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                result.status = "diverged"
                result.failure_reason = f"loss became {float(loss.detach())} in epoch {epoch}"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if config.scheduler == "cosine":
                scheduler.step()
            loss_sum += float(loss.detach()) * len(y)
            seen += len(y)
            bar.update()
        seconds = time.perf_counter() - started
        result.train_seconds += seconds
        result.images_seen += seen
        if result.status == "diverged":
            break
        val = evaluate(model, val_data, device=device, channels_last=config.channels_last) if val_data else None
        stats = EpochStats(
            epoch,
            loss_sum / max(seen, 1),
            val.loss if val else math.nan,
            val.accuracy if val else math.nan,
            epoch_lr,
            seconds,
        )
        result.history.append(stats)
        if on_epoch:
            on_epoch(stats)
        bar.set_postfix(val_acc=f"{stats.val_accuracy:.4f}", refresh=False)
        if val is not None and not math.isfinite(val.loss):
            result.status, result.failure_reason = "diverged", f"validation loss is {val.loss} in epoch {epoch}"
            break
        exploded = _exploded(stats, n_outputs)
        if exploded:
            result.status, result.failure_reason = "diverged", exploded
            break
        if config.scheduler == "plateau" and val is not None:
            scheduler.step(val.loss)
        if config.early_stopping_patience and val is not None:
            if val.loss < best_loss:
                best_loss, epochs_without_gain, result.best_epoch = val.loss, 0, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                epochs_without_gain += 1
                if epochs_without_gain >= config.early_stopping_patience:
                    break
    bar.close()
    if best_state is not None and result.status == "finished":
        model.load_state_dict(best_state)
    if config.recalibrate_bn and result.status == "finished":
        result.recalibration = _recalibrate_and_compare(model, train_data, val_data, config, seed, device)
    return result


def _exploded(stats: EpochStats, n_classes: int) -> str:
    """Why an epoch counts as exploded (see :data:`EXPLODED_LOSS_FACTOR`), or ``""``."""
    uniform = math.log(max(n_classes, 2))
    limit = EXPLODED_LOSS_FACTOR * uniform
    for name, value in (("training", stats.train_loss), ("validation", stats.val_loss)):
        if value > limit:  # NaN compares False: a final retrain has no validation loss
            return (
                f"{name} loss {value:.3g} in epoch {stats.epoch} is above {EXPLODED_LOSS_FACTOR:g} x ln({n_classes}) "
                f"= {limit:.1f} (a uniform guess scores {uniform:.2f}): the weights exploded"
            )
    return ""


def _recalibrate_and_compare(
    model: nn.Module,
    train_data: ArrayData,
    val_data: ArrayData | None,
    config: TrainConfig,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """Recalibrate BatchNorm after training and record validation accuracy and loss before and after.

    The per-epoch history keeps the values before recalibration.
    """
    before = evaluate(model, val_data, device=device, channels_last=config.channels_last) if val_data else None
    recalibrate_bn(
        model, train_data, config.recalibrate_batches, seed=seed, device=device, channels_last=config.channels_last
    )
    after = evaluate(model, val_data, device=device, channels_last=config.channels_last) if val_data else None
    if before is None or after is None:
        return {}
    return {
        "val_accuracy_before_recalibration": before.accuracy,
        "val_loss_before_recalibration": before.loss,
        "val_accuracy_after_recalibration": after.accuracy,
        "val_loss_after_recalibration": after.loss,
    }


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
