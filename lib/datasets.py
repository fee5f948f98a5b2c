"""Which image data sets a study can use, and how each one is found, fetched, verified and read.

What this module does:

- names the data sets a :class:`lib.engine.trial.DataSpec` may ask for: ``fashion_mnist`` (the default),
  ``mnist``, ``kmnist`` and ``cifar10`` (the official files, fetched by torchvision's data-set
  classes where the internet is reachable), ``digits`` (scikit-learn's 8x8 digits, shipped inside
  the package, so it works offline) and ``folder:PATH`` (an ImageFolder tree of your own images:
  one sub-folder per class, optionally under ``train/`` and ``test/``; ``folder:PATH@32`` or
  ``@32x48`` resizes every image to that height x width, otherwise to the most common size);
- verifies every downloaded file against a recorded checksum (Fashion-MNIST: SHA-256 of the
  uncompressed files, as before; MNIST, KMNIST, CIFAR-10: the MD5s that torchvision publishes in
  its classes) and turns a missing, corrupt or unreachable data set into a one-line
  :class:`DataError` naming the data set, the folder it looked in and the command that fixes it;
- downloads into a temporary folder and moves only verified files into ``data/``, so an
  interrupted or failed download leaves nothing half-written there; ``HYPERTUNE_OFFLINE=1``
  forbids downloads, and an unreachable server is detected in seconds, never a hang;
- reads a data set's training part and its official test part as ``(N, C, H, W)`` arrays (uint8,
  or float32 in [0, 1]) with integer labels; channels, size and class names come from the files.

What it is not: splitting, normalisation and batching (that is :mod:`lib.data`, which also carves
a seeded, stratified test set for data sets without an official one), nor an augmentation pipeline.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import shutil
import socket
import tempfile
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from lib.paths import data_dir

DEFAULT = "fashion_mnist"
FOLDER_PREFIX = "folder:"
OFFLINE_ENV = "HYPERTUNE_OFFLINE"  # set to 1: never try a download
PROBE_SECONDS = 5.0  # how long we wait to learn that a download server is unreachable
DOWNLOAD_TIMEOUT = 30.0  # a stalled connection during a download fails after this many seconds


class DataError(RuntimeError):
    """A data set is missing, corrupt or unreadable; the message says which, where, and the fix."""


@dataclass(frozen=True)
class Part:
    """Images ``(N, C, H, W)`` (uint8, or float32 in [0, 1]) and int64 labels of one part of a data set.

    ``source_id`` identifies the exact files (their checksums); ``note`` says anything a reader of
    the results should know (e.g. how many images were resized).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source_id: str
    note: str = ""


# --- names ----------------------------------------------------------------------------------------

_FOLDER_SIZE = re.compile(r"(?P<path>.+?)(?:@(?P<height>\d+)(?:x(?P<width>\d+))?)?")


def check_name(name: str) -> str:
    """The canonical form of a data-set name (``folder:`` paths made absolute); ValueError if unknown."""
    if name in REGISTRY:
        return name
    if isinstance(name, str) and name.startswith(FOLDER_PREFIX) and len(name) > len(FOLDER_PREFIX):
        path, size = _parse_folder(name)
        return FOLDER_PREFIX + str(path) + (f"@{size[0]}x{size[1]}" if size else "")
    raise ValueError(
        f"dataset={name!r}: unknown. Allowed: {', '.join(REGISTRY)}, or folder:PATH for an ImageFolder "
        "tree of your own images (folder:PATH@32 or folder:PATH@32x48 resizes them to that size)"
    )


def _parse_folder(name: str) -> tuple[Path, tuple[int, int] | None]:
    match = _FOLDER_SIZE.fullmatch(name[len(FOLDER_PREFIX) :])
    assert match is not None  # the pattern matches any non-empty text
    path = Path(match["path"]).expanduser().resolve()
    if match["height"] is None:
        return path, None
    height = int(match["height"])
    width = int(match["width"] or height)
    if not (1 <= height <= 4096 and 1 <= width <= 4096):
        raise ValueError(f"dataset={name!r}: the size must be 1..4096 pixels per side; got {height}x{width}")
    return path, (height, width)


def slug(name: str) -> str:
    """A short file- and experiment-name-safe label: the name itself, or ``folder-<base>-<hash>`` for a folder."""
    name = check_name(name)
    if not name.startswith(FOLDER_PREFIX):
        return name
    path, _ = _parse_folder(name)
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", path.name)[:24] or "root"
    return f"folder-{base}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def fetch_command(name: str) -> str:
    """The command that places and verifies ``name`` under ``data/`` (where the internet is reachable)."""
    return "make data" if name == DEFAULT else f"python -m lib data --dataset {name}"


def has_test_part(name: str) -> bool:
    """Whether ``name`` has an official test part (otherwise :mod:`lib.data` carves one)."""
    name = check_name(name)
    if name.startswith(FOLDER_PREFIX):
        path, _ = _parse_folder(name)
        return (path / "train").is_dir() and (path / "test").is_dir()
    return REGISTRY[name].has_test


def signature(name: str) -> str:
    """A cheap fingerprint of what is on disk for ``name``: changes when a folder's files change.

    Registered data sets are fixed by their checksums, so their signature is empty.
    """
    name = check_name(name)
    if not name.startswith(FOLDER_PREFIX):
        return ""
    path, _ = _parse_folder(name)
    digest = hashlib.sha256()
    for file in _image_files(path):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def read(name: str, part: str, root: Path | None = None, download: bool = True) -> Part:
    """One part of data set ``name``: ``train`` or ``test`` (data sets with a test part) or ``all``.

    Fetches and verifies the files first when needed (see :func:`fetch`). Results are cached per
    process; a folder is re-read when its files change.
    """
    name = check_name(name)
    if part not in ("train", "test", "all"):
        raise ValueError(f"part={part!r}: must be 'train', 'test' or 'all'")
    expected = ("train", "test") if has_test_part(name) else ("all",)
    if part not in expected:
        raise ValueError(f"{name} has parts {expected}; got part={part!r}")
    return _read_cached(name, part, str(Path(root or data_dir()).resolve()), download, signature(name))


@lru_cache(maxsize=6)
def _read_cached(name: str, part: str, root: str, download: bool, _signature: str) -> Part:
    if name.startswith(FOLDER_PREFIX):
        path, size = _parse_folder(name)
        return _read_folder(path, size, part)
    return REGISTRY[name].read(part, Path(root), download)


def fetch(name: str, root: Path | None = None, download: bool = True) -> str:
    """Make ``name`` available and verified (downloading it if allowed); return where it lives."""
    name = check_name(name)
    if name.startswith(FOLDER_PREFIX):
        path, size = _parse_folder(name)
        _folder_layout(path, size, signature(name))
        return str(path)
    return str(REGISTRY[name].fetch(Path(root or data_dir()).resolve(), download))


# --- shared helpers -------------------------------------------------------------------------------


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm, usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path, expected: str, algorithm: str) -> str:
    """``ok``, ``missing`` or ``corrupt`` (the file exists but its checksum differs)."""
    if not path.is_file():
        return "missing"
    return "ok" if _digest(path, algorithm) == expected else "corrupt"


def _unreachable(urls: Sequence[str]) -> str:
    """'' when one of the servers of ``urls`` accepts a connection, else why none did.

    The probe runs in a daemon thread, so even a name lookup that never returns costs at most
    :data:`PROBE_SECONDS` per server.
    """
    reasons: list[str] = []
    for url in urls:
        parsed = urlparse(url)
        host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
        outcome: list[str] = []

        def probe(host: str = host, port: int = port, outcome: list[str] = outcome) -> None:
            try:
                socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
                outcome.append("")
            except OSError as exc:
                outcome.append(f"{host}: {exc.strerror or exc}")

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(PROBE_SECONDS + 0.5)
        if outcome and not outcome[0]:
            return ""
        reasons.append(outcome[0] if outcome else f"{host}: no answer within {PROBE_SECONDS:.0f} s")
    return "offline? cannot reach " + "; ".join(reasons)


def _download(
    urls: Sequence[str], root: Path, fetch_into: Callable[[Path], object], place: Callable[[Path], str]
) -> str:
    """Download with torchvision into a temporary folder under ``root``, then ``place`` verified files.

    Returns '' on success, else a one-line reason. Offline it fails in seconds (never a hang), and
    whatever happens the temporary folder is removed: ``root`` gets verified files or nothing.
    """
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return f"{OFFLINE_ENV} is set, downloads are off"
    reason = _unreachable(urls)
    if reason:
        return reason
    root.mkdir(parents=True, exist_ok=True)
    area = Path(tempfile.mkdtemp(prefix=".download-", dir=root))  # same disk: moving files out is atomic
    previous = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # torchvision's urllib calls use the default timeout
        try:
            fetch_into(area)
        except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ...
            text = str(exc).strip().splitlines()
            return f"download failed: {type(exc).__name__}: {text[0] if text else ''}"
        finally:
            socket.setdefaulttimeout(previous)
        return place(area)
    finally:
        shutil.rmtree(area, ignore_errors=True)


def _move_verified(fetched: Path, target: Path, status: Callable[[Path], dict[str, str]]) -> str:
    """Move every file of ``fetched`` into ``target`` if all recorded files there verify; '' or a reason."""
    bad = sorted(name for name, state in status(fetched).items() if state != "ok")
    if bad:
        return f"the downloaded file(s) {', '.join(bad)} do not match the recorded checksums"
    target.mkdir(parents=True, exist_ok=True)
    for file in sorted(fetched.iterdir()):
        os.replace(file, target / file.name)
    return ""


def _torchvision_class(base_name: str, **attributes: object) -> type:
    """torchvision's data-set class ``base_name`` with our recorded URLs and checksums (same class name)."""
    import torchvision.datasets as tv_datasets

    base = getattr(tv_datasets, base_name)
    return type(base.__name__, (base,), dict(attributes))


def _read_idx_bytes(data: bytes) -> np.ndarray:
    """Parse an IDX file (already checksum-verified) into a numpy array."""
    n_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(shape)


def _problem_error(
    label: str, folder: Path, problems: dict[str, str], fix: str, reason: str, also: str = ""
) -> DataError:
    corrupt = [name for name, status in problems.items() if status == "corrupt"]
    missing = [name for name, status in problems.items() if status == "missing"]
    looked = f"{folder}" + (f" and {also}" if also else "")
    tried = f"; download: {reason}" if reason else ""
    if corrupt:
        files = ", ".join(str(folder / name) for name in corrupt)
        also = f"; also missing: {', '.join(missing)}" if missing else ""
        return DataError(
            f"{label}: file(s) corrupt (checksum mismatch): {files}{also}; no verified copy was found to restore "
            f"them (looked in {looked}{tried}). Delete the file(s) and run `{fix}`."
        )
    return DataError(
        f"{label} is not on disk: file(s) missing: {', '.join(missing)} (looked in {looked}{tried}). "
        f"Run `{fix}` where the internet is reachable, or copy the files into that folder."
    )


# --- Fashion-MNIST (IDX files, SHA-256 of the uncompressed bytes, Debian package) -----------------

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
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)  # torchvision's FashionMNIST.mirrors


def raw_dir(root: Path | None = None) -> Path:
    """torchvision's raw folder for Fashion-MNIST under ``root`` (default: the project's ``data/``)."""
    return Path(root or data_dir()) / "FashionMNIST" / "raw"


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


def _place_file(name: str, raw: Path, sources: Sequence[Path]) -> str:
    """Make ``raw/name`` exist with the right checksum from a local ``.gz``; ``ok``, ``missing`` or ``corrupt``.

    ``corrupt``: the file is there but its checksum differs and no source could restore it.
    """
    target = raw / name
    status = _check(target, CHECKSUMS[name], "sha256")
    if status == "ok":
        return status
    for folder in sources:
        source = folder / f"{name}.gz"
        if not source.exists():
            continue
        if source.parent != raw:
            shutil.copyfile(source, raw / source.name)
        _decompress(raw / source.name, target)
        if _digest(target, "sha256") == CHECKSUMS[name]:
            return "ok"
        target.unlink()
        raise DataError(
            f"{source} does not match the recorded checksum of {name} (corrupt or a different "
            f"data set). Delete {raw / source.name} and run `{FIX_COMMAND}`."
        )
    return status


def ensure_fashion_mnist(root: Path | None = None, download: bool = True) -> Path:
    """Make the four verified IDX files available under ``root`` and return the raw folder.

    Sources in order: ``data/``, the Debian package ``dataset-fashion-mnist`` in
    ``/usr/share/datasets/fashion-mnist``, torchvision's downloader (into a temporary folder).
    Idempotent: files already present and verified are left alone.
    """
    return _ensure_fashion_cached(str(Path(root or data_dir()).resolve()), download)


@lru_cache(maxsize=4)
def _ensure_fashion_cached(root: str, download: bool) -> Path:
    raw = raw_dir(Path(root))
    raw.mkdir(parents=True, exist_ok=True)
    status = {name: _place_file(name, raw, (raw, SYSTEM_DIR)) for name in CHECKSUMS}
    reason = ""
    if any(s != "ok" for s in status.values()) and download:
        fetcher = _torchvision_class("FashionMNIST", mirrors=list(FASHION_MIRRORS))

        def place(area: Path) -> str:
            fetched = area / "FashionMNIST" / "raw"
            for name in CHECKSUMS:
                _place_file(name, raw, (raw, SYSTEM_DIR, fetched))
            return ""

        reason = _download(FASHION_MIRRORS, Path(root), lambda area: fetcher(root=str(area), download=True), place)
        status = {name: _place_file(name, raw, (raw, SYSTEM_DIR)) for name in CHECKSUMS}
    problems = {name: s for name, s in status.items() if s != "ok"}
    if problems:
        if all(s == "missing" for s in problems.values()):
            tried = f" Download: {reason}." if reason else ""
            raise DataError(
                f"Fashion-MNIST file(s) missing: {', '.join(problems)} (looked in {raw} and "
                f"{SYSTEM_DIR}). Run `{FIX_COMMAND}` (installs the Debian package "
                f"dataset-fashion-mnist) or download the files into that folder.{tried}"
            )
        raise _problem_error("Fashion-MNIST", raw, problems, FIX_COMMAND, reason, str(SYSTEM_DIR))
    return raw


@dataclass(frozen=True)
class _FashionMNIST:
    name: str = "fashion_mnist"
    has_test: bool = True

    def fetch(self, root: Path, download: bool) -> Path:
        return ensure_fashion_mnist(root, download)

    def read(self, part: str, root: Path, download: bool) -> Part:
        raw = ensure_fashion_mnist(root, download)
        prefix = "train" if part == "train" else "t10k"
        images = _read_idx_bytes((raw / f"{prefix}-images-idx3-ubyte").read_bytes())
        labels = _read_idx_bytes((raw / f"{prefix}-labels-idx1-ubyte").read_bytes())
        source_id = "fashion-mnist:" + CHECKSUMS["train-images-idx3-ubyte"][:12]
        return Part(images[:, None, :, :], labels.astype(np.int64), CLASS_NAMES, source_id)


def _fetch_verified(
    name: str, target: Path, status_of: Callable[[Path], dict[str, str]], download: bool, source: tuple
) -> Path:
    """``target`` once every file in it verifies; when some do not and ``download`` is on, fetch them
    first (``source`` = urls, root, fetch into a temporary area, move the verified files from it)."""
    status, reason = status_of(target), "" if download else "not tried (--no-download)"
    if any(s != "ok" for s in status.values()) and download:
        reason = _download(*source)
        status = status_of(target)
    problems = {file: s for file, s in status.items() if s != "ok"}
    if problems:
        raise _problem_error(name, target, problems, fetch_command(name), reason)
    return target


# --- MNIST and KMNIST (IDX .gz files, torchvision's MD5s) -----------------------------------------


@dataclass(frozen=True)
class _IdxGz:
    """An MNIST-like data set in torchvision's layout ``<Class>/raw/*.gz``, verified by torchvision's MD5s."""

    name: str
    torchvision_class: str
    mirrors: tuple[str, ...]
    resources: tuple[tuple[str, str], ...]  # (file name, MD5), copied from torchvision's class
    class_names: tuple[str, ...]
    has_test: bool = True

    def raw(self, root: Path) -> Path:
        return root / self.torchvision_class / "raw"

    def _status(self, raw: Path) -> dict[str, str]:
        return {file: _check(raw / file, md5, "md5") for file, md5 in self.resources}

    def fetch(self, root: Path, download: bool) -> Path:
        raw = self.raw(root)

        def fetch_into(area: Path) -> None:
            fetcher = _torchvision_class(
                self.torchvision_class, mirrors=list(self.mirrors), resources=list(self.resources)
            )
            fetcher(root=str(area), download=True)

        def move(area: Path) -> str:
            return _move_verified(self.raw(area), raw, self._status)  # .gz files and unpacked copies

        return _fetch_verified(self.name, raw, self._status, download, (self.mirrors, root, fetch_into, move))

    def read(self, part: str, root: Path, download: bool) -> Part:
        raw = self.fetch(root, download)
        prefix = "train" if part == "train" else "t10k"
        images = _read_idx_bytes(gzip.decompress((raw / f"{prefix}-images-idx3-ubyte.gz").read_bytes()))
        labels = _read_idx_bytes(gzip.decompress((raw / f"{prefix}-labels-idx1-ubyte.gz").read_bytes()))
        source_id = f"{self.name}:{self.resources[0][1][:12]}"
        return Part(images[:, None, :, :].copy(), labels.astype(np.int64), self.class_names, source_id)


# --- CIFAR-10 (python pickles, torchvision's MD5s) ------------------------------------------------


@dataclass(frozen=True)
class _Cifar10:
    name: str = "cifar10"
    has_test: bool = True
    url: str = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # torchvision's CIFAR10.url
    archive: str = "cifar-10-python.tar.gz"
    archive_md5: str = "c58f30108f718f92721af3b95e74349a"
    folder: str = "cifar-10-batches-py"
    # torchvision's CIFAR10.train_list, test_list and meta
    files: tuple[tuple[str, str], ...] = (
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ("test_batch", "40351d587109b95175f43aff81a1287e"),
        ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
    )

    def _status(self, folder: Path) -> dict[str, str]:
        return {file: _check(folder / file, md5, "md5") for file, md5 in self.files}

    def fetch(self, root: Path, download: bool) -> Path:
        target = root / self.folder

        def fetch_into(area: Path) -> None:
            fetcher = _torchvision_class("CIFAR10", url=self.url, filename=self.archive, tgz_md5=self.archive_md5)
            fetcher(root=str(area), download=True)

        def move(area: Path) -> str:
            return _move_verified(area / self.folder, target, self._status)  # not the archive

        return _fetch_verified(self.name, target, self._status, download, ((self.url,), root, fetch_into, move))

    def read(self, part: str, root: Path, download: bool) -> Part:
        folder = self.fetch(root, download)
        names = [f for f, _ in self.files if f.startswith("data_batch")] if part == "train" else ["test_batch"]
        images, labels = [], []
        for file in names:  # checksum-verified above, so unpickling reads exactly the published files
            with open(folder / file, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(entry["labels"], dtype=np.int64))
        with open(folder / "batches.meta", "rb") as handle:
            class_names = tuple(pickle.load(handle, encoding="latin1")["label_names"])
        return Part(np.concatenate(images), np.concatenate(labels), class_names, f"cifar10:{self.files[0][1][:12]}")


# --- scikit-learn's digits (inside the package, offline) ------------------------------------------


@dataclass(frozen=True)
class _Digits:
    name: str = "digits"
    has_test: bool = False  # 1797 images, no official test set: lib.data carves one

    def fetch(self, root: Path, download: bool) -> str:
        from sklearn import datasets as sk_datasets

        return str(Path(sk_datasets.__file__).parent / "data" / "digits.csv.gz")

    def read(self, part: str, root: Path, download: bool) -> Part:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # grey levels 0..16 -> [0, 1]
        labels = bunch.target.astype(np.int64)
        source_id = "digits:" + hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:12]
        return Part(images, labels, tuple(str(c) for c in bunch.target_names), source_id)


# --- folder:PATH (ImageFolder tree) ---------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GREY_MODES = ("1", "L", "LA", "I;16", "I;16B", "I;16L")


def _image_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def _class_folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class _Layout:
    classes: tuple[str, ...]
    channels: int
    size: tuple[int, int]  # (height, width)
    parts: dict[str, list[tuple[Path, int]]]  # part -> [(file, label)]
    note: str


@lru_cache(maxsize=4)
def _folder_layout(path: Path, size: tuple[int, int] | None, _signature: str) -> _Layout:
    """Classes, channels and size of an ImageFolder tree, read from its training images' headers."""
    from PIL import Image, UnidentifiedImageError

    name = f"{FOLDER_PREFIX}{path}"
    if not path.is_dir():
        raise DataError(f"{name}: no such folder. Give folder:PATH with one sub-folder of images per class.")
    split = (path / "train").is_dir() and (path / "test").is_dir()
    train_root = path / "train" if split else path
    classes = tuple(p.name for p in _class_folders(train_root))
    if len(classes) < 2:
        raise DataError(
            f"{name}: found {len(classes)} class folder(s) in {train_root}; an ImageFolder tree needs one "
            "sub-folder of images per class (at least 2), optionally under train/ and test/."
        )
    parts: dict[str, list[tuple[Path, int]]] = {}
    for part, part_root in (("train", path / "train"), ("test", path / "test")) if split else (("all", path),):
        present = [p.name for p in _class_folders(part_root)]
        unknown = sorted(set(present) - set(classes))
        if unknown:
            raise DataError(f"{name}: {part_root} has class folder(s) {unknown} that train/ does not have.")
        files = [(f, label) for label, cls in enumerate(classes) for f in _image_files(part_root / cls)]
        empty = [cls for label, cls in enumerate(classes) if part != "test" and not any(lb == label for _, lb in files)]
        if empty:
            raise DataError(
                f"{name}: class folder(s) {empty} in {part_root} hold no images ({', '.join(IMAGE_SUFFIXES)})."
            )
        if not files:
            raise DataError(f"{name}: {part_root} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        parts[part] = files
    modes, sizes = set(), Counter()
    for file, _ in parts["train" if split else "all"]:
        try:
            with Image.open(file) as image:
                modes.add(image.mode)
                sizes[(image.height, image.width)] += 1
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{name}: cannot read image {file} ({exc}). Remove or replace it.") from exc
    channels = 1 if modes <= set(_GREY_MODES) else 3
    if size is None:  # the most common size; ties go to the larger image, then the taller one
        size = max(sizes, key=lambda hw: (sizes[hw], hw[0] * hw[1], hw[0]))
        how = "the most common size"
    else:
        how = "as asked"
    resized = sum(count for hw, count in sizes.items() if hw != size)
    note = (
        f"{name}: {len(classes)} classes, {'grey' if channels == 1 else 'RGB'}, {size[0]}x{size[1]} ({how}); "
        f"{resized} of {sum(sizes.values())} training images resized"
    )
    return _Layout(classes, channels, size, parts, note)


def _read_folder(path: Path, size: tuple[int, int] | None, part: str) -> Part:
    from PIL import Image, UnidentifiedImageError

    layout = _folder_layout(path, size, signature(f"{FOLDER_PREFIX}{path}"))
    height, width = layout.size
    files = layout.parts[part]
    images = np.empty((len(files), layout.channels, height, width), dtype=np.uint8)
    labels = np.array([label for _, label in files], dtype=np.int64)
    content = hashlib.sha256()
    for index, (file, _) in enumerate(files):
        payload = file.read_bytes()
        content.update(f"{file.relative_to(path)}|{len(payload)}|".encode() + hashlib.sha256(payload).digest())
        try:
            with Image.open(io.BytesIO(payload)) as image:
                image = image.convert("L" if layout.channels == 1 else "RGB")
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{FOLDER_PREFIX}{path}: cannot read image {file} ({exc}). Remove or replace it.") from exc
        images[index] = pixels[None] if layout.channels == 1 else pixels.transpose(2, 0, 1)
    source_id = f"folder:{content.hexdigest()[:16]}:{layout.channels}x{height}x{width}"
    return Part(images, labels, layout.classes, source_id, layout.note)


# --- the registry ---------------------------------------------------------------------------------

REGISTRY: dict[str, _FashionMNIST | _IdxGz | _Cifar10 | _Digits] = {
    "fashion_mnist": _FashionMNIST(),
    "mnist": _IdxGz(
        name="mnist",
        torchvision_class="MNIST",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        resources=(  # torchvision.datasets.MNIST.resources
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        class_names=tuple(str(digit) for digit in range(10)),
    ),
    "kmnist": _IdxGz(
        name="kmnist",
        torchvision_class="KMNIST",
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        resources=(  # torchvision.datasets.KMNIST.resources
            ("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
            ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
            ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
            ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
        ),
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),  # torchvision's KMNIST.classes
    ),
    "cifar10": _Cifar10(),
    "digits": _Digits(),
}
NAMES = tuple(REGISTRY)
# Images in the official training part of the data sets that have one (known without reading the files);
# lib.data carves the validation split out of it. Others (digits, folders) must be read to be counted.
TRAIN_PART_IMAGES: dict[str, int] = {"fashion_mnist": 60_000, "mnist": 60_000, "kmnist": 60_000, "cifar10": 50_000}


def train_part_images(name: str) -> int | None:
    """The number of images in ``name``'s official training part, or ``None`` when it must be read."""
    return TRAIN_PART_IMAGES.get(name)
