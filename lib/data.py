"""The real Fashion-MNIST, offline, verified, split and held in memory.

What this module does:

- finds the four IDX files (``data/`` first, then the Debian package ``dataset-fashion-mnist`` in
  ``/usr/share/datasets/fashion-mnist``, then torchvision's downloader) and keeps them in
  torchvision's layout, so ``torchvision.datasets.FashionMNIST(root="data")`` works too;
- verifies every file against a recorded SHA-256 of its *uncompressed* bytes (so a re-compressed
  ``.gz`` from another mirror is still accepted) and turns a missing or corrupt file into a
  :class:`DataError` that names the file and the command that fixes it;
- carves a fixed, seeded, stratified validation split from the 60k training images (used for all
  tuning) and keeps the official 10k test set apart: only :func:`load_test_set` reads it, and only
  the final evaluation should call that;
- holds tensors in memory and batches by index (no per-item Python, no PIL).

What it is not: an augmentation pipeline or a generic dataset zoo. Any ``(N, C, H, W)`` tensor data
set can still be used through :func:`make_splits`; shapes and class counts are read from the data.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from lib.paths import data_dir

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FIX_COMMAND = "make data"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# SHA-256 of the uncompressed IDX files (identical for Debian's package and the original mirror).
CHECKSUMS = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
DEFAULT_VAL_SIZE = 5000
DEFAULT_SPLIT_SEED = 20241


class DataError(RuntimeError):
    """A data file is missing or corrupt; the message says which one and how to fix it."""


def raw_dir(root: Path | None = None) -> Path:
    """torchvision's raw folder for Fashion-MNIST under ``root`` (default: the project's ``data/``)."""
    return Path(root or data_dir()) / "FashionMNIST" / "raw"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decompress(source: Path, target: Path) -> None:
    """Unzip ``source`` into ``target`` atomically; a broken archive becomes a DataError."""
    partial = target.with_suffix(".partial")
    try:
        with gzip.open(source, "rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError, zlib.error) as exc:
        partial.unlink(missing_ok=True)
        raise DataError(f"{source} is not a readable gzip file ({exc}). Delete it and run `{FIX_COMMAND}`.") from exc
    partial.replace(target)


def _place_file(name: str, raw: Path) -> bool:
    """Make ``raw/name`` exist with the right checksum from any local source; True on success."""
    target = raw / name
    if target.exists() and _sha256(target) == CHECKSUMS[name]:
        return True
    for source in (raw / f"{name}.gz", SYSTEM_DIR / f"{name}.gz"):
        if not source.exists():
            continue
        if source.parent != raw:
            shutil.copyfile(source, raw / source.name)
        _decompress(raw / source.name, target)
        if _sha256(target) == CHECKSUMS[name]:
            return True
        target.unlink()
        raise DataError(
            f"{source} does not match the recorded checksum of {name} (corrupt or a different "
            f"data set). Delete {raw / source.name} and run `{FIX_COMMAND}`."
        )
    return False


def ensure_fashion_mnist(root: Path | None = None, download: bool = True) -> Path:
    """Make the four verified IDX files available under ``root`` and return the raw folder.

    Idempotent: files already present and verified are left alone.
    """
    return _ensure_cached(str(Path(root or data_dir()).resolve()), download)


@lru_cache(maxsize=4)
def _ensure_cached(root: str, download: bool) -> Path:
    raw = raw_dir(Path(root))
    raw.mkdir(parents=True, exist_ok=True)
    missing = [name for name in CHECKSUMS if not _place_file(name, raw)]
    if missing and download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(root=root, download=True)
        except Exception as exc:  # no internet, no torchvision mirror: report below
            print(f"torchvision download failed: {exc}")
        missing = [name for name in CHECKSUMS if not _place_file(name, raw)]
    if missing:
        raise DataError(
            f"Fashion-MNIST file(s) missing: {', '.join(missing)} (looked in {raw} and "
            f"{SYSTEM_DIR}). Run `{FIX_COMMAND}` (installs the Debian package "
            "dataset-fashion-mnist) or download the files into that folder."
        )
    return raw


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (already checksum-verified) into a numpy array."""
    data = path.read_bytes()
    n_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(shape)


@lru_cache(maxsize=2)
def _read_raw(part: str, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    raw = ensure_fashion_mnist(Path(root) if root else None)
    prefix = "train" if part == "train" else "t10k"
    images = _read_idx(raw / f"{prefix}-images-idx3-ubyte")
    labels = _read_idx(raw / f"{prefix}-labels-idx1-ubyte")
    return images[:, None, :, :], labels.astype(np.int64)


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
class DataSplits:
    """The tuning data: a training part and a stratified validation part of the training set.

    ``split_id`` identifies the exact split (data checksums, sizes, seed) and is part of every
    trial's cache key. ``mean``/``std`` are computed on the training part only and reused for
    validation and the final test evaluation.
    """

    train: ArrayData
    val: ArrayData
    n_classes: int
    class_names: tuple[str, ...]
    mean: float
    std: float
    split_id: str

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
    # float64 numpy statistics: identical whatever torch's thread count (workers run with one thread)
    train_float = images_np[train_idx].astype(np.float64) / scale
    mean, std = float(train_float.mean()), float(train_float.std(ddof=1))

    def to_data(idx: np.ndarray) -> ArrayData:
        pixels = torch.from_numpy(images_np[idx].astype(np.float32) / scale)
        return ArrayData(((pixels - mean) / std).contiguous(), torch.from_numpy(labels_np[idx]))

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


def load_splits(
    val_size: int = DEFAULT_VAL_SIZE,
    seed: int = DEFAULT_SPLIT_SEED,
    train_subset: int | None = None,
    val_subset: int | None = None,
    root: Path | None = None,
) -> DataSplits:
    """Fashion-MNIST training set split into stratified train/validation parts (no test data)."""
    images, labels = _read_raw("train", str(root) if root else None)
    source_id = "fashion-mnist:" + CHECKSUMS["train-images-idx3-ubyte"][:12]
    return make_splits(images, labels, val_size, seed, train_subset, val_subset, CLASS_NAMES, source_id)


def load_test_set(splits: DataSplits, root: Path | None = None) -> ArrayData:
    """The official 10k test set, normalised with the training statistics of ``splits``.

    Only the final evaluation should call this: every tuning decision uses the validation split.
    """
    images, labels = _read_raw("test", str(root) if root else None)
    pixels = torch.from_numpy(images.astype(np.float32) / 255.0)
    return ArrayData(((pixels - splits.mean) / splits.std).contiguous(), torch.from_numpy(labels))
