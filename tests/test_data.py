"""lib.data: verified files, honest splits (no leakage, stratified, seeded) and batching."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import lib.data as data
from lib import datasets
from lib.data import (
    CHECKSUMS,
    SYSTEM_DIR,
    ArrayData,
    DataError,
    ensure_fashion_mnist,
    load_splits,
    load_test_set,
    make_splits,
    stratified_indices,
)


def _sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _row_hashes(images: torch.Tensor | np.ndarray) -> set[str]:
    array = np.ascontiguousarray(np.asarray(images))
    return {hashlib.sha1(row.tobytes()).hexdigest() for row in array}


def _copy_gz(tmp_path: Path, skip: tuple[str, ...] = ()) -> Path:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in CHECKSUMS:
        if name not in skip:
            shutil.copyfile(SYSTEM_DIR / f"{name}.gz", raw / f"{name}.gz")
    return raw


@pytest.fixture
def fresh_cache():
    """ensure_fashion_mnist caches per root; start and end every file test with an empty cache."""
    datasets._ensure_fashion_cached.cache_clear()
    yield
    datasets._ensure_fashion_cached.cache_clear()


# --- files and checksums -------------------------------------------------------------------------


def test_recorded_checksums_match_the_files():
    raw = ensure_fashion_mnist()
    assert set(CHECKSUMS) == {
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    }
    for name, expected in CHECKSUMS.items():
        assert _sha256_bytes((raw / name).read_bytes()) == expected, name
        # independently of lib: the system package's archive decompresses to the same bytes
        with gzip.open(SYSTEM_DIR / f"{name}.gz", "rb") as handle:
            assert _sha256_bytes(handle.read()) == expected, name


def test_ensure_places_verified_files_in_a_fresh_root(tmp_path, fresh_cache):
    raw = _copy_gz(tmp_path)
    assert ensure_fashion_mnist(root=tmp_path, download=False) == raw.resolve()
    for name, expected in CHECKSUMS.items():
        assert _sha256_bytes((raw / name).read_bytes()) == expected


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("train-images-idx3-ubyte", b"this is not a gzip archive at all"),  # unreadable archive
        ("train-labels-idx1-ubyte", None),  # truncated archive
        ("t10k-labels-idx1-ubyte", gzip.compress(b"\x00\x00\x08\x01 wrong data set")),  # bad checksum
    ],
    ids=["not-gzip", "truncated-gzip", "wrong-checksum"],
)
def test_corrupt_file_raises_data_error_naming_file_and_fix(tmp_path, fresh_cache, name, payload):
    raw = _copy_gz(tmp_path)
    target = raw / f"{name}.gz"
    if payload is None:
        payload = target.read_bytes()[: target.stat().st_size // 2]
    target.write_bytes(payload)
    with pytest.raises(DataError) as excinfo:
        ensure_fashion_mnist(root=tmp_path, download=False)
    message = str(excinfo.value)
    assert name in message
    assert "make data" in message
    assert not (raw / name).exists(), "a corrupt file must not be left behind as if verified"


def test_missing_file_without_download_raises_data_error_naming_it(tmp_path, fresh_cache, monkeypatch):
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "no-system-package")
    _copy_gz(tmp_path, skip=("t10k-images-idx3-ubyte",))
    with pytest.raises(DataError) as excinfo:
        ensure_fashion_mnist(root=tmp_path, download=False)
    message = str(excinfo.value)
    assert "t10k-images-idx3-ubyte" in message
    assert "make data" in message
    for present in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        assert present not in message


def test_empty_root_without_download_names_every_file(tmp_path, fresh_cache, monkeypatch):
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "no-system-package")
    with pytest.raises(DataError) as excinfo:
        ensure_fashion_mnist(root=tmp_path / "empty", download=False)
    for name in CHECKSUMS:
        assert name in str(excinfo.value)


# --- Fashion-MNIST splits ------------------------------------------------------------------------


def test_shapes_and_classes_come_from_the_data(small_splits):
    assert small_splits.input_shape == (1, 28, 28)
    assert small_splits.n_classes == 10
    assert len(small_splits.class_names) == 10
    assert len(small_splits.train) == 2000
    assert len(small_splits.val) == 500
    assert small_splits.train.images.dtype == torch.float32
    assert small_splits.train.labels.dtype == torch.int64
    # normalised with training statistics: mean ~0 and std ~1 on the training part
    assert abs(float(small_splits.train.images.mean())) < 1e-3
    assert abs(float(small_splits.train.images.std()) - 1.0) < 1e-3
    # the subsets are stratified too
    assert set(Counter(small_splits.train.labels.tolist()).values()) == {200}
    assert set(Counter(small_splits.val.labels.tolist()).values()) == {50}


def test_validation_split_is_stratified_and_disjoint_from_training():
    splits = load_splits(val_size=5000, train_subset=1000)
    assert len(splits.val) == 5000
    counts = Counter(splits.val.labels.tolist())
    assert sorted(counts) == list(range(10))
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(abs(count - 500) <= 1 for count in counts.values())
    # every Fashion-MNIST training image is unique, so equal hashes would mean a leaked image
    assert not _row_hashes(splits.train.images) & _row_hashes(splits.val.images)


def test_same_seed_gives_identical_split_and_other_seed_a_different_one():
    first = load_splits(seed=7, train_subset=300, val_subset=200)
    again = load_splits(seed=7, train_subset=300, val_subset=200)
    other = load_splits(seed=8, train_subset=300, val_subset=200)
    assert torch.equal(first.val.images, again.val.images)
    assert torch.equal(first.val.labels, again.val.labels)
    assert torch.equal(first.train.images, again.train.images)
    assert first.split_id == again.split_id
    assert first.split_id != other.split_id
    assert not torch.equal(first.val.images, other.val.images)
    assert not torch.equal(first.train.images, other.train.images)


def test_test_set_is_separate_and_never_read_by_load_splits(small_splits, monkeypatch):
    test = load_test_set(small_splits)
    assert len(test) == 10000
    assert test.input_shape == (1, 28, 28)
    assert set(Counter(test.labels.tolist()).values()) == {1000}
    # normalised with the training statistics of the splits (not its own)
    raw_test = datasets.read("fashion_mnist", "test").images
    expected = (torch.from_numpy(raw_test[:5].astype(np.float32) / 255.0) - small_splits.mean) / small_splits.std
    assert torch.equal(test.images[:5], expected)
    # no test image appears in the tuning data (same normalisation, so equal pixels hash equal)
    tuning = _row_hashes(small_splits.train.images) | _row_hashes(small_splits.val.images)
    assert not tuning & _row_hashes(test.images)

    parts = []
    real_read = datasets.read

    def spy(name, part, root=None, download=True):
        parts.append(part)
        return real_read(name, part, root, download)

    monkeypatch.setattr(datasets, "read", spy)
    load_splits(train_subset=100, val_subset=100)
    assert parts == ["train"]


def test_validation_part_does_not_depend_on_the_training_subset():
    small = load_splits(train_subset=100)
    larger = load_splits(train_subset=300)
    assert len(small.val) == len(larger.val) == data.DEFAULT_VAL_SIZE
    assert torch.equal(small.val.labels, larger.val.labels)
    # normalisation differs (training statistics), so compare the de-normalised pixels
    assert torch.allclose(
        small.val.images * small.std + small.mean, larger.val.images * larger.std + larger.mean, atol=1e-4
    )
    assert small.split_id != larger.split_id


# --- make_splits and friends on generated data ---------------------------------------------------


def _id_images(n: int, shape=(3, 32, 32)) -> np.ndarray:
    """Float images whose every pixel is the item's index, so an item can be traced after a split."""
    return np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, *shape)).copy()


def _ids(part: ArrayData, mean: float, std: float) -> np.ndarray:
    return np.rint(part.images[:, 0, 0, 0].numpy() * std + mean).astype(int)


def test_make_splits_on_generated_rgb_data_has_no_overlap():
    n = 1200
    labels = np.arange(n) % 6
    splits = make_splits(_id_images(n), labels, val_size=300, seed=3)
    assert splits.input_shape == (3, 32, 32)
    assert splits.n_classes == 6
    assert splits.class_names == tuple(str(c) for c in range(6))
    train_ids = _ids(splits.train, splits.mean, splits.std)
    val_ids = _ids(splits.val, splits.mean, splits.std)
    assert len(val_ids) == 300 and len(train_ids) == 900
    assert not set(train_ids) & set(val_ids)
    assert sorted(np.concatenate([train_ids, val_ids]).tolist()) == list(range(n))
    # labels travel with their images
    assert np.array_equal(splits.train.labels.numpy(), labels[train_ids])
    assert np.array_equal(splits.val.labels.numpy(), labels[val_ids])
    assert set(Counter(splits.val.labels.tolist()).values()) == {50}
    # statistics come from the training part only
    assert splits.mean == pytest.approx(float(train_ids.mean()), rel=1e-4)


def test_make_splits_subsets_stay_inside_their_parts():
    n = 1000
    labels = np.arange(n) % 10
    full = make_splits(_id_images(n, (1, 4, 4)), labels, val_size=200, seed=1)
    sub = make_splits(_id_images(n, (1, 4, 4)), labels, val_size=200, seed=1, train_subset=100, val_subset=50)
    full_train = set(_ids(full.train, full.mean, full.std))
    full_val = set(_ids(full.val, full.mean, full.std))
    sub_train = set(_ids(sub.train, sub.mean, sub.std))
    sub_val = set(_ids(sub.val, sub.mean, sub.std))
    assert len(sub_train) == 100 and len(sub_val) == 50
    assert sub_train <= full_train
    assert sub_val <= full_val
    assert full.split_id != sub.split_id


def test_make_splits_rejects_images_without_channel_axis():
    with pytest.raises(ValueError, match="N, C, H, W"):
        make_splits(np.zeros((100, 28, 28), dtype=np.uint8), np.arange(100) % 10, val_size=10)


@pytest.mark.parametrize("size", [1, 7, 33, 50, 99, 100])
def test_stratified_indices_sum_exactly_to_size(size):
    labels = np.repeat(np.arange(4), [7, 13, 29, 51])  # 100 items, uneven classes
    idx = stratified_indices(labels, size, seed=0)
    assert len(idx) == size
    assert len(np.unique(idx)) == size
    assert np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=4)
    expected = np.array([7, 13, 29, 51]) * size / 100
    assert np.all(np.abs(counts - expected) < 1)


@pytest.mark.parametrize("size", [0, 101, -5])
def test_stratified_indices_rejects_impossible_sizes(size):
    with pytest.raises(ValueError, match="sample size"):
        stratified_indices(np.arange(100) % 4, size, seed=0)


def test_batches_cover_every_index_once_when_shuffled():
    n = 103
    images = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 1, 2, 2).contiguous()
    part = ArrayData(images, torch.arange(n) * 10)
    seen, sizes = [], []
    for x, y in part.batches(16, shuffle=True, generator=torch.Generator().manual_seed(0)):
        ids = x[:, 0, 0, 0].long()
        assert torch.equal(y, ids * 10)  # images and labels stay paired
        seen += ids.tolist()
        sizes.append(len(y))
    assert sorted(seen) == list(range(n))
    assert seen != list(range(n))  # actually shuffled
    assert sizes == [16] * 6 + [7]
    ordered = [int(i) for x, _ in part.batches(50) for i in x[:, 0, 0, 0]]
    assert ordered == list(range(n))


def test_shuffled_batches_repeat_for_the_same_generator_seed():
    part = ArrayData(torch.randn(40, 1, 2, 2), torch.arange(40))

    def order(seed):
        return [y.tolist() for _, y in part.batches(8, shuffle=True, generator=torch.Generator().manual_seed(seed))]

    assert order(1) == order(1)
    assert order(1) != order(2)


def test_array_data_validates_shapes():
    with pytest.raises(ValueError, match="N, C, H, W"):
        ArrayData(torch.zeros(4, 28, 28), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        ArrayData(torch.zeros(4, 1, 28, 28), torch.zeros(3, dtype=torch.long))


def test_outputs_are_isolated_from_the_repo(isolated_outputs):
    from lib import paths

    assert paths.figures_dir() == isolated_outputs / "figures"
    assert paths.state_dir() == isolated_outputs / "state"
    assert paths.PROJECT_ROOT not in paths.figures_dir().parents
    # the data folder is deliberately left alone: the verified files are shared by every test
    assert paths.data_dir() == paths.PROJECT_ROOT / "data"


# --- augmentation of training batches -----


def _batch(n: int = 16, channels: int = 2, size: int = 8) -> torch.Tensor:
    return torch.arange(n * channels * size * size, dtype=torch.float32).reshape(n, channels, size, size)


def test_augmentation_repeats_for_a_seed_and_differs_for_another():
    from lib.data import Augmentation

    augment = Augmentation(crop_padding=2, flip=True, erase_p=0.5)
    x = _batch()
    first = augment(x, torch.Generator().manual_seed(0))
    again = augment(x, torch.Generator().manual_seed(0))
    other = augment(x, torch.Generator().manual_seed(1))
    assert first.shape == x.shape
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not Augmentation().active and augment.active


def test_flip_mirrors_each_image_or_leaves_it():
    from lib.data import Augmentation

    x = _batch(n=64)
    out = Augmentation(flip=True)(x, torch.Generator().manual_seed(3))
    mirrored = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(m != k for m, k in zip(mirrored, kept, strict=True))
    assert 16 < sum(mirrored) < 48  # about half


def test_crop_with_padding_is_a_shifted_window_of_the_padded_image():
    from lib.data import Augmentation

    pad, x = 2, _batch(n=32)
    out = Augmentation(crop_padding=pad, pad_value=-1.0)(x, torch.Generator().manual_seed(4))
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), value=-1.0)
    shifts = set()
    for image, source in zip(out, padded, strict=True):
        windows = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(image, source[:, dy : dy + 8, dx : dx + 8])
        ]
        assert len(windows) == 1
        shifts.add(windows[0])
    assert len(shifts) > 5  # offsets vary image by image
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_random_erasing_zeroes_one_rectangle_in_the_chosen_share_of_images():
    from lib.data import Augmentation

    x = _batch(n=400) + 1.0  # no zero anywhere before erasing
    out = Augmentation(erase_p=0.5)(x, torch.Generator().manual_seed(5))
    erased = (out == 0).all(dim=1)  # (N, H, W): every channel of a pixel erased together
    touched = erased.flatten(1).any(1)
    assert 150 < int(touched.sum()) < 250
    for mask in erased[touched][:50]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all() and int(mask.sum()) == box.numel()  # one solid rectangle
        assert 0.01 <= box.numel() / 64 <= 0.45
    assert torch.equal(out[~touched], x[~touched])


def test_training_feed_augments_training_batches_only_and_keeps_the_order(small_splits):
    from lib.config import TrainConfig
    from lib.train import TrainingFeed

    data = ArrayData(small_splits.train.images[:300], small_splits.train.labels[:300])
    plain = list(TrainingFeed(data, TrainConfig(batch_size=100), seed=7))
    augmented = list(TrainingFeed(data, TrainConfig(batch_size=100, augment_flip=True, augment_crop_padding=2), seed=7))
    assert all(torch.equal(a[1], p[1]) for a, p in zip(augmented, plain, strict=True))  # same shuffle
    assert not any(torch.equal(a[0], p[0]) for a, p in zip(augmented, plain, strict=True))
    assert float(data.images.min()) in augmented[0][0]  # padding is a black pixel of the data
