"""One trial: a full config in, a trained-and-evaluated result record out.

:func:`execute_trial` is the pure compute part (build, train, evaluate) that runs in the current
process or in a worker process; it never touches MLflow and never raises for a trial that fails (a
divergence, an impossible config or an exception become a failed :class:`TrialResult`).
:func:`trial_key` is the cache key: the canonical config, the exact data split and the code
version, so a finished trial is never trained twice. Logging and caching live in ``lib.engine.records``.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from lib.config import ConfigError, TrialConfig
from lib.data import DataSpec, load_test_set
from lib.paths import PROJECT_ROOT

if TYPE_CHECKING:
    from lib.train import EpochCallback, FitResult

# Source files whose content decides what a trial computes; their hash is the code version.
_CODE_FILES = (
    "lib/config.py",
    "lib/data.py",
    "lib/datasets.py",
    "lib/dropout.py",
    "lib/model.py",
    "lib/train.py",
    "lib/engine/trial.py",
)


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the training code. Editing a notebook or the plots does not invalidate the cache."""
    digest = hashlib.sha256()
    for name in _CODE_FILES:
        digest.update((PROJECT_ROOT / name).read_bytes())
    return digest.hexdigest()[:12]


def trial_key(config: TrialConfig, data: DataSpec) -> str:
    """Cache key: canonical config + data split + code version (+ a folder data set's file contents)."""
    text = f"{config.fingerprint()}|{sorted(asdict(data).items())}|{code_version()}"
    content = data.content_id()
    if content:
        text += f"|{content}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class TrialResult:
    """What a trial produced. ``status`` is ``finished`` or ``failed`` (see ``failure_kind``)."""

    key: str
    config: dict[str, Any]
    status: str
    val_accuracy: float = float("nan")
    val_loss: float = float("nan")
    n_parameters: int = 0
    train_seconds: float = 0.0
    images_per_second: float = 0.0
    epochs_run: int = 0
    failure_kind: str = ""  # diverged | invalid_config | error
    failure_reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # extra final metrics
    history: list[dict[str, float]] = field(default_factory=list)
    correct: dict[str, Any] = field(default_factory=dict)  # split -> bool array: which images it got right
    run_id: str = ""
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "finished"

    def final_metrics(self) -> dict[str, float]:
        return {
            "val_accuracy": self.val_accuracy,
            "val_loss": self.val_loss,
            "n_parameters": self.n_parameters,
            "train_seconds": self.train_seconds,
            "images_per_second": self.images_per_second,
            "epochs_run": self.epochs_run,
            **self.metrics,
        }


def execute_trial(
    config: TrialConfig,
    data: DataSpec,
    progress: bool = False,
    device: str = "auto",
    on_epoch: EpochCallback | None = None,
) -> TrialResult:
    """Build, train and evaluate one config. Never raises for a failing trial.

    ``on_epoch`` is passed to :func:`lib.train.fit` (the Ray back-end reports epochs to its scheduler
    with it). A finished trial's ``val_accuracy``/``val_loss`` score the returned model (last epoch,
    after BatchNorm recalibration where configured, or early stopping's restored weights);
    ``metrics`` add the checkpoint rule's best epoch (see :mod:`lib.train`), and ``correct`` holds
    which validation (or, for a final run, test) images it got right.
    """
    from lib.model import build_model, count_parameters
    from lib.train import fit, seed_everything

    key = trial_key(config, data)
    base = {"key": key, "config": config.flat()}
    try:
        splits = data.load()
        seed_everything(config.seed)  # weight initialisation depends on the seed only
        model = build_model(config.model, splits.input_shape, splits.n_classes)
    except ConfigError as exc:
        return TrialResult(**base, status="failed", failure_kind="invalid_config", failure_reason=str(exc))
    except Exception as exc:  # an error while loading or building is a failed trial, like one while training
        return _error_result(base, exc)
    try:
        started = time.perf_counter()
        train_data = splits.train_plus_val() if data.final else splits.train
        val_data = None if data.final else splits.val
        result = fit(model, train_data, val_data, config.train, config.seed, device, progress, on_epoch)
        record = TrialResult(
            **base,
            status="finished" if result.status == "finished" else "failed",
            n_parameters=count_parameters(model),
            train_seconds=result.train_seconds,
            images_per_second=result.images_per_second,
            epochs_run=len(result.history),
            history=[row.as_dict() for row in result.history],
            metrics=dict(result.recalibration) | result.best_epoch_metrics(),
        )
        if result.status != "finished":
            record.failure_kind, record.failure_reason = "diverged", result.failure_reason
            return record
        _score(record, result, model, splits, data, config, device)
        record.metrics["wall_seconds"] = time.perf_counter() - started
        record.metrics["peak_rss_mib"] = peak_rss_mib()
        return record
    except Exception as exc:  # a study goes on; the reason is recorded
        return _error_result(base, exc)


def _score(
    record: TrialResult, result: FitResult, model: Any, splits: Any, data: DataSpec, config: TrialConfig, device: str
) -> None:
    """The finished trial's final scores: the test set for a final run, else the returned model's validation."""
    from lib.train import evaluate

    if result.restored_epoch:
        record.metrics["restored_epoch"] = result.restored_epoch
    if data.final:
        options = {"device": device, "channels_last": config.train.channels_last, "precision": config.train.precision}
        test = evaluate(model, load_test_set(splits), **options)
        record.metrics |= {"test_accuracy": test.accuracy, "test_loss": test.loss}
        record.correct["test"] = test.correct.numpy()
    elif result.final is not None:
        record.val_accuracy, record.val_loss = result.final.accuracy, result.final.loss
        record.correct["val"] = result.final.correct.numpy()


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (in a notebook: the whole kernel's)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _error_result(base: dict[str, Any], exc: Exception) -> TrialResult:
    reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    return TrialResult(**base, status="failed", failure_kind="error", failure_reason=reason)
