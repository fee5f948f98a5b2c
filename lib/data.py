"""Honest splits of any image data set, held in memory and batched by index.

What this module does:

- reads a data set's parts through :mod:`lib.datasets` (which finds, fetches and verifies the files:
  Fashion-MNIST by default, or MNIST, KMNIST, CIFAR-10, scikit-learn's digits, a folder of images);
- keeps a held-out test set apart: the official one where the data set has one, otherwise a
  seeded, stratified fifth carved once from the data (:func:`carve_test_indices`, the same for
  every split seed); only :func:`load_test_set` reads it, and only the final evaluation should call that;
- carves a fixed, seeded, stratified validation split from the rest (used for all tuning) and
  normalises with statistics of the training part only;
- holds tensors in memory and batches by index (no per-item Python, no PIL).

- augments training batches (:class:`Augmentation`: random crop with padding, horizontal flip,
  random erasing), vectorised on the in-memory batch tensor and seeded, never validation or test data.

What it is not: a downloader or file checker (that is :mod:`lib.datasets`) or a per-item transform
pipeline (no PIL, no torchvision transforms). Any ``(N, C, H, W)`` tensor data set can still be used
through :func:`make_splits`; shapes and class counts are read from the data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib import datasets
from lib.datasets import (  # noqa: F401  (re-exported: the Fashion-MNIST names lived here before)
    CHECKSUMS,
    CLASS_NAMES,
    FIX_COMMAND,
    SYSTEM_DIR,
    DataError,
    ensure_fashion_mnist,
    raw_dir,
)

DEFAULT_VAL_SIZE = 5000
DEFAULT_SPLIT_SEED = 20241
TEST_FRACTION = 0.2  # share of a data set without an official test set that is carved off as its test set
TEST_SPLIT_SEED = 1515  # fixed: a carved test set never depends on the validation split's seed


def default_val_size(n_tuning: int, n_classes: int) -> int:
    """Validation images: 5000, or a sixth of the tuning data when that is smaller (at least one per class)."""
    return min(DEFAULT_VAL_SIZE, max(n_tuning // 6, n_classes))


@dataclass(frozen=True)
class ArrayData:
    """Images ``(N, C, H, W)`` float32 (normalised) and integer labels, held in memory."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(
                f"images must have shape (N, C, H, W); got {tuple(self.images.shape)}. "
                "Add a channel axis for grey-scale data (images[:, None])."
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` read from the data."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` batches by index, optionally in a seeded random order."""
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                yield self.images.index_select(0, idx), self.labels.index_select(0, idx)
        else:
            for start in range(0, n, batch_size):
                yield self.images[start : start + batch_size], self.labels[start : start + batch_size]


@dataclass(frozen=True)
class Augmentation:
    """Random training-batch augmentation, applied to the whole ``(N, C, H, W)`` batch at once.

    - ``crop_padding`` > 0: pad each image by that many pixels with the value of a black pixel
      (``pad_value``: ``-mean / std`` in normalised units) and crop back at a random offset;
    - ``flip``: mirror each image left-right with probability 1/2 (fused with the crop into one gather);
    - ``erase_p`` > 0: with that probability, set one random rectangle of 2-33% of the image
      (aspect ratio log-uniform in 0.3-3.3) to 0, the data set's mean (random erasing, Zhong et al. 2020).

    Every draw comes from ``generator``, so a seeded generator repeats the same batches exactly.
    """

    crop_padding: int = 0
    flip: bool = False
    erase_p: float = 0.0
    pad_value: float = 0.0

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.erase_p > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.crop_padding > 0 or self.flip:
            x = self._crop_and_flip(x, generator)
        if self.erase_p > 0:
            x = self._erase(x, generator)
        return x

    def _crop_and_flip(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, height, width = x.shape
        pad = self.crop_padding
        if pad:
            x = torch.nn.functional.pad(x, (pad, pad, pad, pad), value=self.pad_value)
        dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
        cols = torch.arange(width).expand(n, width)
        if self.flip:
            mirrored = torch.rand(n, 1, generator=generator) < 0.5
            cols = torch.where(mirrored, width - 1 - cols, cols)
        rows = dy + torch.arange(height)
        cols = dx + cols
        picked = x[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
        return picked.permute(0, 3, 1, 2)  # (N, C, H, W), laid out channels_last

    def _erase(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, height, width = x.shape
        area = height * width * (0.02 + 0.31 * torch.rand(n, generator=generator))
        aspect = torch.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * torch.rand(n, generator=generator))
        h = (area * aspect).sqrt().round().clamp(1, height).long()
        w = (area / aspect).sqrt().round().clamp(1, width).long()
        top = (torch.rand(n, generator=generator) * (height - h + 1)).long()
        left = (torch.rand(n, generator=generator) * (width - w + 1)).long()
        chosen = torch.rand(n, generator=generator) < self.erase_p
        rows = torch.arange(height)[None, :]
        cols = torch.arange(width)[None, :]
        inside_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
        inside_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
        mask = inside_rows[:, :, None] & inside_cols[:, None, :] & chosen[:, None, None]
        return x.masked_fill(mask[:, None], 0.0)


@dataclass(frozen=True)
class DataSplits:
    """The tuning data: a training part and a stratified validation part of the training set.

    ``split_id`` identifies the exact split (data checksums, sizes, seed) and is tagged on every
    trial's run. ``mean``/``std`` are computed on the training part only and reused for
    validation and the final test evaluation. ``dataset`` names the data set (see :mod:`lib.datasets`).
    """

    train: ArrayData
    val: ArrayData
    n_classes: int
    class_names: tuple[str, ...]
    mean: float
    std: float
    split_id: str
    dataset: str = datasets.DEFAULT
    note: str = ""  # e.g. "digits has no test set: a fifth carved off, stratified, seed 1515"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.train.input_shape

    def train_plus_val(self) -> ArrayData:
        """Training and validation parts together, for the final retrain after tuning."""
        return ArrayData(
            torch.cat([self.train.images, self.val.images]),
            torch.cat([self.train.labels, self.val.labels]),
        )


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a stratified random sample of ``size`` items (class proportions kept).

    Per-class counts are rounded by largest remainder so they sum to ``size`` exactly.
    """
    if not 0 < size <= len(labels):
        raise ValueError(f"sample size must be in 1..{len(labels)}; got {size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / len(labels)
    per_class = np.floor(exact).astype(int)
    shortfall = size - per_class.sum()
    per_class[np.argsort(-(exact - per_class), kind="stable")[:shortfall]] += 1
    chosen = [
        rng.permutation(np.flatnonzero(labels == cls))[:take] for cls, take in zip(classes, per_class, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def _statistics(pixels: np.ndarray, scale: float) -> tuple[float, float]:
    """Mean and standard deviation (ddof=1) of all pixels, in float64 numpy.

    Identical whatever torch's thread count (workers run with one thread). For uint8 images the
    moments come from a 256-bin histogram, so CIFAR-10 needs no float64 copy of the images.
    """
    if pixels.dtype == np.uint8:
        counts = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
        values = np.arange(256, dtype=np.float64) / scale
        n = counts.sum()
        mean = float(counts @ values / n)
        return mean, float(np.sqrt(counts @ (values - mean) ** 2 / (n - 1)))
    floats = pixels.astype(np.float64) / scale
    return float(floats.mean()), float(floats.std(ddof=1))


def _normalised(pixels: np.ndarray, scale: float, mean: float, std: float) -> torch.Tensor:
    """``(pixels / scale - mean) / std`` as float32. For uint8 images through a 256-entry table built
    by the same float32 operations, so one pass gives bit-identical values (about 2x faster)."""
    if pixels.dtype == np.uint8:
        table = (torch.from_numpy(np.arange(256, dtype=np.uint8).astype(np.float32) / scale) - mean) / std
        return torch.from_numpy(np.take(table.numpy(), pixels))
    return ((torch.from_numpy(pixels.astype(np.float32) / scale) - mean) / std).contiguous()


def make_splits(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    val_size: int = DEFAULT_VAL_SIZE,
    seed: int = DEFAULT_SPLIT_SEED,
    train_subset: int | None = None,
    val_subset: int | None = None,
    class_names: tuple[str, ...] | None = None,
    source_id: str = "custom",
) -> DataSplits:
    """Split any ``(N, C, H, W)`` data set into stratified training and validation parts.

    ``train_subset``/``val_subset`` draw smaller stratified samples of each part (tests, smoke
    runs); the validation part itself is always the same fixed split for a given seed.
    """
    images_np = np.asarray(images)
    labels_np = np.asarray(labels).astype(np.int64)
    if images_np.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W); got {images_np.shape}")
    n_classes = int(labels_np.max()) + 1
    val_idx = stratified_indices(labels_np, val_size, seed)
    train_idx = np.setdiff1d(np.arange(len(labels_np)), val_idx, assume_unique=True)
    if train_subset is not None:
        train_idx = train_idx[stratified_indices(labels_np[train_idx], train_subset, seed + 1)]
    if val_subset is not None:
        val_idx = val_idx[stratified_indices(labels_np[val_idx], val_subset, seed + 2)]
    scale = 255.0 if images_np.dtype == np.uint8 else 1.0
    mean, std = _statistics(images_np[train_idx], scale)

    def to_data(idx: np.ndarray) -> ArrayData:
        return ArrayData(_normalised(images_np[idx], scale, mean, std), torch.from_numpy(labels_np[idx]))

    split_id = hashlib.sha256(
        f"{source_id}|{len(labels_np)}|{val_size}|{seed}|{train_subset}|{val_subset}".encode()
    ).hexdigest()[:16]
    return DataSplits(
        train=to_data(train_idx),
        val=to_data(val_idx),
        n_classes=n_classes,
        class_names=class_names or tuple(str(c) for c in range(n_classes)),
        mean=mean,
        std=std,
        split_id=split_id,
    )


def carve_test_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(tuning, test)`` indices for a data set without an official test set.

    The test part is a stratified :data:`TEST_FRACTION` drawn with the fixed :data:`TEST_SPLIT_SEED`,
    so it is the same for every validation seed and subset.
    """
    labels = np.asarray(labels)
    n_classes = len(np.unique(labels))
    size = min(max(round(len(labels) * TEST_FRACTION), n_classes), len(labels) - 2 * n_classes)
    if size < 1:
        raise DataError(f"{len(labels)} images in {n_classes} classes are too few to carve a test set")
    test = stratified_indices(labels, size, TEST_SPLIT_SEED)
    return np.setdiff1d(np.arange(len(labels)), test, assume_unique=True), test


def _tuning_part(dataset: str, root: Path | None) -> datasets.Part:
    """The images a study may tune on: the official training part, or all but the carved test set."""
    if datasets.has_test_part(dataset):
        return datasets.read(dataset, "train", root)
    whole = datasets.read(dataset, "all", root)
    tuning, test = carve_test_indices(whole.labels)
    note = (
        f"{dataset} has no official test set: {len(test)} of {len(whole.labels)} images "
        f"({TEST_FRACTION:.0%}) carved off as the test set, stratified, seed {TEST_SPLIT_SEED}"
    )
    return datasets.Part(
        whole.images[tuning],
        whole.labels[tuning],
        whole.class_names,
        f"{whole.source_id}|test-carved:{TEST_FRACTION}:{TEST_SPLIT_SEED}",
        "; ".join(filter(None, [whole.note, note])),
    )


def _fit(subset: int | None, available: int, what: str, dataset: str) -> int | None:
    """A subset size that fits the part it samples from (``None`` = all of it), with a warning when cut."""
    if subset is None or subset < available:
        return subset
    if subset > available:
        warnings.warn(
            f"{what}={subset} is more than the {available} images of {dataset}'s {what.split('_')[0]} part: "
            f"using all {available}",
            stacklevel=3,
        )
    return None


def load_splits(
    val_size: int | None = None,
    seed: int = DEFAULT_SPLIT_SEED,
    train_subset: int | None = None,
    val_subset: int | None = None,
    root: Path | None = None,
    dataset: str = datasets.DEFAULT,
) -> DataSplits:
    """A data set's tuning images split into stratified train/validation parts (no test data).

    ``val_size=None`` takes :func:`default_val_size` (5000 for Fashion-MNIST, as always). A
    ``train_subset``/``val_subset`` larger than its part means all of it (with a warning), so one
    profile fits every data set.
    """
    dataset = datasets.check_name(dataset)
    part = _tuning_part(dataset, root)
    n_classes = len(np.unique(part.labels))
    if val_size is None:
        val_size = default_val_size(len(part.labels), n_classes)
    train_subset = _fit(train_subset, len(part.labels) - val_size, "train_subset", dataset)
    val_subset = _fit(val_subset, val_size, "val_subset", dataset)
    splits = make_splits(
        part.images, part.labels, val_size, seed, train_subset, val_subset, part.class_names, part.source_id
    )
    return dataclasses.replace(splits, dataset=dataset, note=part.note)


def load_test_set(splits: DataSplits, root: Path | None = None) -> ArrayData:
    """The held-out test set of ``splits.dataset``, normalised with the training statistics of ``splits``.

    Only the final evaluation should call this: every tuning decision uses the validation split.
    """
    if datasets.has_test_part(splits.dataset):
        part = datasets.read(splits.dataset, "test", root)
        images, labels = part.images, part.labels
    else:
        whole = datasets.read(splits.dataset, "all", root)
        _, test = carve_test_indices(whole.labels)
        images, labels = whole.images[test], whole.labels[test]
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    pixels = torch.from_numpy(images.astype(np.float32) / scale)
    return ArrayData(((pixels - splits.mean) / splits.std).contiguous(), torch.from_numpy(labels))


def describe_dataset(dataset: str = datasets.DEFAULT, download: bool = True) -> str:
    """Fetch and verify ``dataset``, then say where it lives and what it holds (``python -m lib data``)."""
    dataset = datasets.check_name(dataset)
    where = datasets.fetch(dataset, download=download)
    splits = load_splits(dataset=dataset)
    if datasets.has_test_part(dataset):
        n_test = len(datasets.read(dataset, "test").labels)
        test = f"the official test set ({n_test} images)"
    else:
        n_test = len(carve_test_indices(datasets.read(dataset, "all").labels)[1])
        test = f"{n_test} images carved off (stratified, seed {TEST_SPLIT_SEED})"
    channels, height, width = splits.input_shape
    names = ", ".join(splits.class_names)
    lines = [
        f"{dataset} verified in {where}",
        f"  {channels}x{height}x{width} images, {splits.n_classes} classes ({names})",
        f"  tuning: {len(splits.train)} training + {len(splits.val)} validation images (split {splits.split_id}); "
        f"test: {test}",
    ]
    if splits.note:
        lines.append(f"  note: {splits.note}")
    return "\n".join(lines)


@dataclass(frozen=True)
class DataSpec:
    """Which data a trial trains and is scored on.

    ``dataset`` names the data set (see :mod:`lib.datasets`: ``fashion_mnist``, ``mnist``,
    ``kmnist``, ``cifar10``, ``digits`` or ``folder:PATH``). ``val_size=None`` takes the data
    set's default (5000, or a sixth of the tuning images when that is smaller). ``final=True``
    trains on training + validation parts and scores on the held-out test set: only the final
    evaluation of a study may use it.
    """

    train_subset: int | None = None
    val_subset: int | None = None
    val_size: int | None = None
    split_seed: int = DEFAULT_SPLIT_SEED
    final: bool = False
    dataset: str = datasets.DEFAULT

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", datasets.check_name(self.dataset))  # folder paths made absolute

    def load(self) -> DataSplits:
        signature = datasets.signature(self.dataset)  # a folder whose files changed is read again
        return _load(self.train_subset, self.val_subset, self.val_size, self.split_seed, self.dataset, signature)

    def params(self) -> dict[str, Any]:
        """MLflow params of every run: ``data_train_subset`` ... ``data_dataset``."""
        return {f"data_{k}": v for k, v in asdict(self).items()}

    def tags(self) -> dict[str, str]:
        """MLflow tags of every run: the data set's name, for filtering runs in the UI and the report."""
        return {"dataset": self.dataset}

    def content_id(self) -> str:
        """What the name alone does not pin down: the files of a ``folder:`` data set ('' otherwise)."""
        return self.load().split_id if self.dataset.startswith(datasets.FOLDER_PREFIX) else ""


@lru_cache(maxsize=4)
def _load(
    train_subset: int | None, val_subset: int | None, val_size: int | None, split_seed: int, dataset: str, _sig: str
) -> DataSplits:
    return load_splits(val_size, split_seed, train_subset, val_subset, dataset=dataset)
