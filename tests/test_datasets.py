"""lib.datasets and the data-set choice: digits, a folder of images, the offline errors, Fashion-MNIST's split.

Everything here runs offline: ``digits`` ships inside scikit-learn, the image folder is generated in
``tmp_path``, and the download path is exercised against a local HTTP server or an unreachable one.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lib import cli, datasets, tracking
from lib.cli import commands
from lib.config import ConfigError
from lib.data import (
    CHECKSUMS,
    SYSTEM_DIR,
    DataError,
    DataSpec,
    carve_test_indices,
    load_splits,
    load_test_set,
)
from lib.engine.grid import run_grid
from lib.engine.search import run_sweep
from lib.engine.trial import trial_key
from lib.model import build_model, max_conv_blocks
from lib.paths import PROJECT_ROOT
from lib.study import profiles

TINY = {"epochs": 1, "conv_out_channels": 4, "hidden_sizes": [16], "batch_size": 64}
SPACE = {"lr": {"loguniform": [1e-3, 3e-3]}, "dropout_p": {"uniform": [0.0, 0.5]}}


@pytest.fixture
def fresh_caches():
    """Data sets are cached per process and per data folder; start and end with empty caches."""

    def clear():
        datasets._read_cached.cache_clear()
        datasets._ensure_fashion_cached.cache_clear()
        datasets._folder_layout.cache_clear()

    clear()
    yield
    clear()


def _png_tree(root: Path, classes=("cat", "dog", "owl"), per_class=10, size=(12, 10), mode="RGB", odd=1) -> Path:
    """An ImageFolder tree of small PNGs; each class has its own colour, ``odd`` images per class are 16x16."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            height, width = (16, 16) if index < odd else size
            base = np.zeros((height, width, 3), dtype=np.uint8)
            base[..., label % 3] = 200
            pixels = np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels, "RGB")
            (image if mode == "RGB" else image.convert(mode)).save(folder / f"{name}_{index:02d}.png")
    return root


# --- Fashion-MNIST keeps its split ---------------------------------------------------------------

# Recorded with the code before data sets could be chosen (commit 41dfd56): the split id, a hash of
# the validation images (de-normalised to their uint8 pixels) with their labels, and the exact
# float32 tensors of a subset split. Any change to files, split, order or normalisation shows here.
FASHION_SPLIT_ID = "1daebaefb8e89bb7"
FASHION_VAL_HASH = "6077a6947b8570ce38b0233c26aefa5645c8ca5ddc40cd8fb1177581402202cd"
FASHION_VAL_INDEX_HASH = "ae8a098dd8dca01be3984d12b34a1cebaac297ca104420853329db94b31ac89b"
FASHION_SUBSET_SPLIT_ID = "1d96787414cb5e2c"
FASHION_SUBSET_TRAIN_IMAGES = "655fe621f1eff1ecbc2b2d360519e60cd8d62bc52bf57a3d71ac444660d22629"
FASHION_SUBSET_VAL_IMAGES = "e4f18816ee038b50a98b37c1f0af4713e20d8c4ad8d6397d116809bdb3f0782a"


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.slow
def test_fashion_mnist_keeps_its_split_id_and_validation_images():
    splits = DataSpec().load()  # the default data set through the trial's own path
    assert splits.dataset == "fashion_mnist"
    assert splits.split_id == FASHION_SPLIT_ID
    assert (len(splits.train), len(splits.val)) == (55000, 5000)
    pixels = np.rint((splits.val.images.numpy() * splits.std + splits.mean) * 255).astype(np.uint8)
    assert _sha(pixels.tobytes() + splits.val.labels.numpy().astype(np.int64).tobytes()) == FASHION_VAL_HASH
    labels = datasets.read("fashion_mnist", "train").labels
    from lib.data import stratified_indices

    assert _sha(stratified_indices(labels, 5000, 20241).astype(np.int64)) == FASHION_VAL_INDEX_HASH

    subset = load_splits(train_subset=2000, val_subset=500)
    assert subset.split_id == FASHION_SUBSET_SPLIT_ID
    assert _sha(subset.train.images.numpy()) == FASHION_SUBSET_TRAIN_IMAGES  # bit for bit, normalisation included
    assert _sha(subset.val.images.numpy()) == FASHION_SUBSET_VAL_IMAGES


# --- names, checksums, DataSpec, profiles ---------------------------------------------------------


def test_recorded_checksums_and_urls_are_torchvisions():
    from torchvision import datasets as tv

    for name, cls in (("mnist", tv.MNIST), ("kmnist", tv.KMNIST)):
        entry = datasets.REGISTRY[name]
        assert [tuple(r) for r in cls.resources] == list(entry.resources), name
        assert list(cls.mirrors) == list(entry.mirrors), name
        assert cls.__name__ == entry.torchvision_class
    cifar = datasets.REGISTRY["cifar10"]
    published = [*tv.CIFAR10.train_list, *tv.CIFAR10.test_list, [tv.CIFAR10.meta["filename"], tv.CIFAR10.meta["md5"]]]
    assert [tuple(f) for f in published] == list(cifar.files)
    assert (cifar.url, cifar.archive, cifar.archive_md5, cifar.folder) == (
        tv.CIFAR10.url,
        tv.CIFAR10.filename,
        tv.CIFAR10.tgz_md5,
        tv.CIFAR10.base_folder,
    )
    assert list(datasets.FASHION_MIRRORS) == list(tv.FashionMNIST.mirrors)
    assert list(datasets.REGISTRY["kmnist"].class_names) == tv.KMNIST.classes


def test_unknown_data_set_names_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match="dataset='fashion-mnist': unknown. Allowed: fashion_mnist, mnist"):
        DataSpec(dataset="fashion-mnist")
    spec = DataSpec(dataset=f"folder:{tmp_path}/../{tmp_path.name}@24")
    assert spec.dataset == f"folder:{tmp_path.resolve()}@24x24"  # absolute, so the cache key is the same from any cwd
    assert DataSpec(dataset="folder:imgs@16x8").dataset == f"folder:{Path.cwd() / 'imgs'}@16x8"
    assert datasets.slug("mnist") == "mnist"
    assert datasets.slug(f"folder:{tmp_path}/my pets").startswith("folder-my_pets-")
    assert datasets.slug(f"folder:{tmp_path}/a@8") != datasets.slug(f"folder:{tmp_path}/a@16")


def test_data_spec_logs_and_keys_its_data_set():
    fashion, digits = DataSpec(train_subset=100), DataSpec(train_subset=100, dataset="digits")
    assert fashion.params()["data_dataset"] == "fashion_mnist"
    assert digits.params()["data_dataset"] == "digits"
    assert digits.tags() == {"dataset": "digits"}
    from lib.config import TrialConfig

    config = TrialConfig.from_flat(TINY)
    assert trial_key(config, fashion) != trial_key(config, digits)
    assert pickle.loads(pickle.dumps(digits)) == digits  # what the Ray back-end ships to its workers


def test_profiles_pass_the_data_set_knob():
    knobs = profiles.resolve("smoke")
    assert profiles.grid_data(knobs).dataset == "fashion_mnist"
    assert profiles.final_data(knobs).dataset == "fashion_mnist"
    knobs = knobs | {"dataset": "digits"}
    assert profiles.grid_data(knobs) == DataSpec(train_subset=600, val_subset=300, dataset="digits")
    assert profiles.final_data(knobs) == DataSpec(train_subset=1000, val_subset=None, final=True, dataset="digits")


# --- digits ---------------------------------------------------------------------------------------


def test_digits_shapes_classes_and_a_carved_stratified_test_set():
    whole = datasets.read("digits", "all")
    assert whole.images.shape == (1797, 1, 8, 8) and whole.images.dtype == np.float32
    splits = load_splits(dataset="digits")
    assert splits.input_shape == (1, 8, 8)
    assert splits.n_classes == 10 and splits.class_names == tuple(str(d) for d in range(10))
    assert "carved" in splits.note and "seed" in splits.note

    tuning, test = carve_test_indices(whole.labels)
    assert len(test) == round(1797 * 0.2) and not set(tuning) & set(test)
    assert sorted([*tuning, *test]) == list(range(1797))
    counts = Counter(whole.labels[test].tolist())
    assert max(counts.values()) - min(counts.values()) <= 2  # stratified (digits' classes are near-equal)
    assert len(splits.train) + len(splits.val) == len(tuning)
    assert len(splits.val) == len(tuning) // 6
    # the test set is the carved part, normalised with the training statistics
    held_out = load_test_set(splits)
    assert torch.equal(held_out.labels, torch.from_numpy(whole.labels[test]))
    expected = (torch.from_numpy(whole.images[test]) - splits.mean) / splits.std
    assert torch.allclose(held_out.images, expected, atol=1e-6)
    # statistics come from the training part only: de-normalised training pixels have that mean
    assert float((splits.train.images * splits.std + splits.mean).double().mean()) == pytest.approx(splits.mean)
    # the carved test set does not move with the validation seed
    other = load_splits(dataset="digits", seed=5)
    assert torch.equal(load_test_set(other).labels, held_out.labels)
    assert other.split_id != splits.split_id


def test_subsets_larger_than_a_small_data_set_mean_all_of_it():
    with pytest.warns(UserWarning, match="val_subset=300 is more than the 239 images"):
        splits = load_splits(dataset="digits", train_subset=600, val_subset=300)
    assert (len(splits.train), len(splits.val)) == (600, 239)
    assert splits.split_id == load_splits(dataset="digits", train_subset=600).split_id


def test_four_blocks_do_not_fit_8x8_and_the_error_gives_the_maximum():
    assert max_conv_blocks(2, (1, 8, 8)) == 3
    with pytest.raises(ConfigError, match="at most 3 blocks for this input"):
        build_model({"num_conv_blocks": 4}, (1, 8, 8), 10)


@pytest.mark.slow
@pytest.mark.usefixtures("mlflow_store")
def test_a_config_that_does_not_fit_8x8_fails_with_the_named_error_in_a_grid():
    frame = run_grid(
        TINY, {"num_conv_blocks": [3, 4]}, [0], "digits-fit", DataSpec(dataset="digits"), workers=1, progress=False
    )
    assert list(frame["status"]) == ["finished", "failed"]
    assert list(frame["failure_kind"]) == ["", "invalid_config"]
    failed = tracking.runs_frame("digits-fit", status=tracking.FAILED)
    assert len(failed) == 1
    assert "at most 3 blocks for this input" in failed["tag.failure_reason"].iloc[0]
    assert "8x8" in failed["tag.failure_reason"].iloc[0]


# --- tiny grids and sweeps end FINISHED and carry their data set ----------------------------------


def _check_runs(experiment: str, dataset: str, n: int) -> None:
    runs = tracking.runs_frame(experiment, status=None)
    assert len(runs) == n
    assert set(runs["status"]) == {tracking.ROW_FINISHED}
    assert set(runs["data_dataset"]) == {dataset}


def _grid_and_sweep(dataset: str, train_subset: int | None = None) -> None:
    data = DataSpec(dataset=dataset, train_subset=train_subset)
    frame = run_grid(TINY, {"dropout_p": [0.0, 0.3]}, [0], "grid", data, workers=1, progress=False)
    assert list(frame["status"]) == ["finished", "finished"]
    assert frame["val_accuracy"].between(0, 1).all()
    _check_runs("grid", data.dataset, 2)
    result = run_sweep(SPACE, "sweep", "tiny", 2, base=TINY, data=data, progress=False)
    assert len(result.trials) == 2 and all(t.ok for t in result.trials)
    _check_runs("sweep", data.dataset, 3)  # the parent and its two trials


@pytest.mark.slow
@pytest.mark.usefixtures("mlflow_store")
def test_tiny_grid_and_sweep_on_digits():
    _grid_and_sweep("digits", train_subset=300)


@pytest.mark.slow
@pytest.mark.usefixtures("mlflow_store")
def test_tiny_grid_and_sweep_on_a_folder_of_rgb_pngs(tmp_path, fresh_caches):
    root = _png_tree(tmp_path / "pets", per_class=12)
    spec = DataSpec(dataset=f"folder:{root}")
    splits = spec.load()
    assert splits.input_shape == (3, 12, 10)  # RGB, the most common size (one image per class was 16x16)
    assert splits.class_names == ("cat", "dog", "owl")
    assert "3 of 36 training images resized" in splits.note and "carved" in splits.note
    _grid_and_sweep(spec.dataset)


@pytest.mark.slow
@pytest.mark.usefixtures("mlflow_store")
def test_trial_runs_are_tagged_with_their_data_set():
    run_grid(TINY, {"dropout_p": [0.0]}, [0], "tagged", DataSpec(dataset="digits"), workers=1, progress=False)
    runs = tracking.runs_frame("tagged")
    assert list(runs["tag.dataset"]) == ["digits"]


# --- folders ---------------------------------------------------------------------------------------


def test_folder_with_train_and_test_uses_them(tmp_path, fresh_caches):
    root = tmp_path / "split"
    _png_tree(root / "train", per_class=8, odd=0)
    _png_tree(root / "test", classes=("cat", "owl"), per_class=3, odd=0)
    splits = load_splits(dataset=f"folder:{root}")
    assert datasets.has_test_part(f"folder:{root}")
    assert len(splits.train) + len(splits.val) == 24
    assert "carved" not in splits.note
    test = load_test_set(splits)
    assert len(test) == 6
    assert sorted(Counter(test.labels.tolist())) == [0, 2]  # labels follow train/'s class order


def test_grey_folder_resized_to_the_size_asked(tmp_path, fresh_caches):
    root = _png_tree(tmp_path / "grey", mode="L", per_class=6)
    splits = load_splits(dataset=f"folder:{root}@8x6")
    assert splits.input_shape == (1, 8, 6)
    assert "as asked" in splits.note


def test_folder_contents_are_part_of_the_cache_key(tmp_path, fresh_caches):
    from lib.config import TrialConfig

    root = _png_tree(tmp_path / "pets", per_class=6)
    spec, config = DataSpec(dataset=f"folder:{root}"), TrialConfig.from_flat(TINY)
    before = trial_key(config, spec)
    shutil.copyfile(root / "cat" / "cat_01.png", root / "cat" / "cat_99.png")
    assert trial_key(config, spec) != before


def test_folder_errors_name_the_folder_and_the_fix(tmp_path, fresh_caches):
    with pytest.raises(DataError, match="no such folder"):
        load_splits(dataset=f"folder:{tmp_path / 'nothing'}")
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="needs one sub-folder of images per class"):
        load_splits(dataset=f"folder:{tmp_path / 'one'}")
    root = _png_tree(tmp_path / "broken", per_class=3)
    (root / "dog" / "dog_00.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*dog_00.png"):
        load_splits(dataset=f"folder:{root}")


# --- offline: missing, unreachable, corrupt --------------------------------------------------------


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_missing_data_set_offline_names_it_where_and_the_command(tmp_path, monkeypatch, fresh_caches):
    monkeypatch.setenv("HYPERTUNE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    started = time.perf_counter()
    with pytest.raises(DataError) as excinfo:
        DataSpec(dataset="mnist").load()
    message = str(excinfo.value)
    assert time.perf_counter() - started < 2
    assert message.startswith("mnist is not on disk")
    assert str(tmp_path / "data" / "MNIST" / "raw") in message
    assert "`python -m lib data --dataset mnist`" in message
    assert "\n" not in message
    assert not (tmp_path / "data").exists()  # nothing written


def test_unreachable_server_fails_fast_and_writes_nothing(tmp_path, monkeypatch, fresh_caches):
    with socket.socket() as sock:  # a port nobody listens on: connections are refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name in ("kmnist",):
        entry = datasets.REGISTRY[name]
        monkeypatch.setitem(datasets.REGISTRY, name, dataclasses.replace(entry, mirrors=(f"http://127.0.0.1:{port}/",)))
    monkeypatch.delenv(datasets.OFFLINE_ENV, raising=False)
    (tmp_path / "data").mkdir()
    started = time.perf_counter()
    with pytest.raises(DataError, match=r"kmnist is not on disk.*cannot reach 127\.0\.0\.1.*--dataset kmnist"):
        datasets.read("kmnist", "train", root=tmp_path / "data")
    assert time.perf_counter() - started < 10
    assert _listing(tmp_path / "data") == []


class _Server:
    """A local HTTP server for a folder, standing in for a download mirror."""

    def __init__(self, folder: Path) -> None:
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _fake_mnist(folder: Path, n_train=60, n_test=20) -> dict[str, str]:
    """Small valid MNIST-format .gz files; returns their MD5s."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    md5s = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, payload in (
            (
                "images-idx3",
                b"\x00\x00\x08\x03" + b"".join(d.to_bytes(4, "big") for d in images.shape) + images.tobytes(),
            ),
            ("labels-idx1", b"\x00\x00\x08\x01" + n.to_bytes(4, "big") + labels.tobytes()),
        ):
            name = f"{prefix}-{kind}-ubyte.gz"
            (folder / name).write_bytes(gzip.compress(payload, mtime=0))
            md5s[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    return md5s


def test_download_goes_through_a_temporary_folder_and_is_verified(tmp_path, monkeypatch, fresh_caches):
    md5s = _fake_mnist(tmp_path / "mirror")
    server = _Server(tmp_path / "mirror")
    monkeypatch.delenv(datasets.OFFLINE_ENV, raising=False)
    entry = datasets.REGISTRY["mnist"]
    try:
        # wrong recorded checksums: torchvision refuses, nothing reaches data/
        wrong = tuple((name, "0" * 32) for name, _ in entry.resources)
        monkeypatch.setitem(
            datasets.REGISTRY, "mnist", dataclasses.replace(entry, mirrors=(server.url,), resources=wrong)
        )
        with pytest.raises(DataError, match="mnist is not on disk.*download failed"):
            datasets.read("mnist", "train", root=tmp_path / "data")
        assert _listing(tmp_path / "data") == []

        # the right checksums: verified files land in torchvision's layout, the temporary folder is gone
        right = tuple((name, md5s[name]) for name, _ in entry.resources)
        monkeypatch.setitem(
            datasets.REGISTRY, "mnist", dataclasses.replace(entry, mirrors=(server.url,), resources=right)
        )
        part = datasets.read("mnist", "train", root=tmp_path / "data")
        assert part.images.shape == (60, 1, 28, 28)
        listing = _listing(tmp_path / "data")
        assert {f"MNIST/raw/{name}" for name in md5s} <= set(listing)
        assert not [p for p in listing if ".download" in p]
    finally:
        server.close()


@pytest.mark.slow
def test_corrupt_file_without_a_source_is_reported_as_corrupt_not_missing(tmp_path, monkeypatch, fresh_caches):
    # issue 12, point 5: Fashion-MNIST with no .gz and no Debian package to restore from
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "no-system-package")
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in CHECKSUMS:
        if name != "t10k-labels-idx1-ubyte":
            with gzip.open(SYSTEM_DIR / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01 flipped bits")
    with pytest.raises(DataError) as excinfo:
        datasets.ensure_fashion_mnist(root=tmp_path, download=False)
    message = str(excinfo.value)
    assert "corrupt (checksum mismatch)" in message
    assert str(raw / "t10k-labels-idx1-ubyte") in message
    assert "missing" not in message
    assert "Delete the file(s) and run `make data`" in message

    # the same for a torchvision data set offline: a damaged .gz is corrupt, not missing
    monkeypatch.setenv(datasets.OFFLINE_ENV, "1")
    mnist_raw = tmp_path / "MNIST" / "raw"
    mnist_raw.mkdir(parents=True)
    (mnist_raw / "train-labels-idx1-ubyte.gz").write_bytes(b"half a download")
    with pytest.raises(DataError) as excinfo:
        datasets.read("mnist", "train", root=tmp_path)
    message = str(excinfo.value)
    assert "corrupt (checksum mismatch)" in message and str(mnist_raw / "train-labels-idx1-ubyte.gz") in message
    assert "also missing" in message and "`python -m lib data --dataset mnist`" in message


# --- the command line ------------------------------------------------------------------------------


def test_cli_dataset_option_on_grid_sweep_and_data():
    parser = cli.build_parser()
    args = parser.parse_args(["grid", "--experiment", "x", "--factor", "dropout_p=0", "--dataset", "digits"])
    assert commands._data_spec(args) == DataSpec(dataset="digits")
    args = parser.parse_args(["sweep", "--experiment", "x", "--name", "s", "--max-evals", "1", "--dataset", "kmnist"])
    assert commands._data_spec(args).dataset == "kmnist"
    assert (
        commands._data_spec(parser.parse_args(["grid", "--experiment", "x", "--factor", "a=1"])).dataset
        == "fashion_mnist"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "--dataset", "imagenet"])


@pytest.mark.slow
@pytest.mark.usefixtures("mlflow_store")
def test_cli_grid_and_data_on_digits(capsys):
    assert cli.main(["data", "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "digits verified in" in out and "1x8x8 images, 10 classes" in out and "carved" in out
    argv = ["grid", "--experiment", "cli-digits", "--factor", "dropout_p=0,0.2", "--seeds", "0", "--workers", "1"]
    argv += ["--dataset", "digits", "--train-subset", "200", *[f"--set={k}={v}" for k, v in TINY.items()]]
    assert cli.main(argv) == 0
    _check_runs("cli-digits", "digits", 2)


@pytest.mark.slow
def test_cli_data_offline_is_one_line_and_quick(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), "HYPERTUNE_DATA_DIR": str(tmp_path)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lib", "data", "--dataset", "cifar10", "--no-download"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode != 0
    assert "cifar10 is not on disk" in done.stderr and "--dataset cifar10" in done.stderr
    assert time.perf_counter() - started < 60
    assert _listing(tmp_path) == []


def test_experiment_names_per_data_set_and_per_user(monkeypatch):
    monkeypatch.delenv("HYPERTUNE_EXPERIMENT_PREFIX", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    assert profiles.experiment_name("02_norm_dropout") == "02_norm_dropout"
    assert profiles.experiment_name("02_norm_dropout", "digits") == "02_norm_dropout-digits"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")  # logged in to a class server
    assert profiles.experiment_name("02_norm_dropout", "digits") == "alice-02_norm_dropout-digits"
    assert profiles.experiment_name("alice-mine") == "alice-mine"  # already personal: not prefixed twice
    monkeypatch.setenv("HYPERTUNE_EXPERIMENT_PREFIX", "team3")
    assert profiles.experiment_name("04_analysis") == "team3-04_analysis"
    monkeypatch.setenv("HYPERTUNE_EXPERIMENT_PREFIX", "")  # explicitly none, e.g. the teacher's reference runs
    assert profiles.experiment_name("04_analysis") == "04_analysis"
