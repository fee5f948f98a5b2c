"""Benchmark: our training against the course stack, the tutorial stack and the machine's limit.

Rows, all measured in this one run on the same 32/64-channel CNN (BatchNorm, dropout 0.25) and
batch size 128, each the median of ``--reps`` timed repetitions after one warm-up:

1. course stack   - a per-sample Python streamer (``__getitem__``, ``/255``, ``torch.stack`` per
                    batch) feeding a plain training loop with ``nn.Dropout``, as the course's
                    week-2 code does;
2. tutorial stack - ``torchvision.datasets.FashionMNIST`` + ``ToTensor()`` + ``DataLoader``;
3. ours, 1 trial  - ``lib.train.fit`` with its defaults (tensors in memory, index batches,
                    channels_last, ``FastDropout``);
4. ours, engine   - a 4-trial grid through ``lib.engine`` (2 workers x 1 thread), aggregate img/s
                    including process start-up, per-epoch evaluation and MLflow logging;
5. the limit      - a bare training step on pre-made tensors with the best settings, in one
                    process with all threads and in two 1-thread processes side by side; the
                    faster is the limit. Its FLOP rate (counted by ``torch.utils.flop_counter``)
                    is compared with a large matmul's in the same precision (the peak).

Rows 3-5 are measured in both precisions (``fp32``, and ``bf16`` = ``torch.autocast`` with
bfloat16, ``TrainConfig.precision``); each row's ratio is to the course stack of this same run.
Also: the cost of training-batch augmentation (crop + flip + erasing) as a share of a training
step, evaluation cost as a share of an epoch, and peak memory (max RSS) of one trial and of the
engine's worker processes. Run with ``make bench`` (about 8 minutes on 2 cores); ``--device cuda``
runs the rows on a GPU (``benchmarks/gpu_check.sh``), ``--quick`` is a seconds-long smoke run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn

BATCH = 128
PRECISIONS = ("fp32", "bf16")


def _model(splits, dropout_impl: str = "fast", device: str = "cpu"):
    from lib.config import ModelConfig
    from lib.model import build_model

    torch.manual_seed(0)
    config = ModelConfig(norm_type="batch", dropout_p=0.25, dropout_impl=dropout_impl)
    return build_model(config, splits.input_shape, splits.n_classes).to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_rate(run: Callable[[], int], reps: int, device: str = "cpu") -> float:
    run()  # warm-up
    rates = []
    for _ in range(reps):
        _sync(device)
        started = time.perf_counter()
        images = run()
        _sync(device)
        rates.append(images / (time.perf_counter() - started))
    return statistics.median(rates)


def course_stack(splits, n_images: int, device: str = "cpu") -> Callable[[], int]:
    """Per-item Python streamer: index -> (pixels / 255, label), stacked per batch."""
    raw = ((splits.train.images[:n_images] * splits.std + splits.mean) * 255).round().to(torch.uint8)
    labels = splits.train.labels[:n_images]

    class Streamer:
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, index: int):
            return raw[index].float() / 255.0, labels[index]

    def run() -> int:
        model = _model(splits, dropout_impl="torch", device=device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        data = Streamer()
        order = torch.randperm(len(data)).tolist()
        for start in range(0, len(order), BATCH):
            items = [data[i] for i in order[start : start + BATCH]]
            x = torch.stack([item[0] for item in items]).to(device)
            y = torch.stack([item[1] for item in items]).to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return len(order)

    return run


def tutorial_stack(splits, n_images: int, device: str = "cpu") -> Callable[[], int]:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from lib.paths import data_dir

    dataset = Subset(
        datasets.FashionMNIST(root=str(data_dir()), train=True, transform=transforms.ToTensor()), range(n_images)
    )

    def run() -> int:
        model = _model(splits, dropout_impl="torch", device=device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for x, y in DataLoader(dataset, batch_size=BATCH, shuffle=True):
            x, y = x.to(device), y.to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return n_images

    return run


def ours_one_trial(splits, n_images: int, precision: str = "fp32", device: str = "cpu") -> Callable[[], int]:
    from lib.config import TrainConfig
    from lib.data import ArrayData
    from lib.train import fit

    data = ArrayData(splits.train.images[:n_images], splits.train.labels[:n_images])
    config = TrainConfig(epochs=1, scheduler="none", precision=precision)

    def run() -> int:
        fit(_model(splits), data, None, config, progress=False, device=device)
        return n_images

    return run


def bare_step(splits, n_images: int, precision: str = "fp32", device: str = "cpu") -> tuple[Callable[[], int], float]:
    """The limit: pre-made channels_last batches, no bookkeeping. Returns (run, FLOP per image)."""
    from torch.utils.flop_counter import FlopCounterMode

    batches = [
        (
            splits.train.images[i : i + BATCH].to(device).contiguous(memory_format=torch.channels_last),
            splits.train.labels[i : i + BATCH].to(device),
        )
        for i in range(0, n_images, BATCH)
    ]
    model = _model(splits, device=device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(batches[0][0]), batches[0][1]).backward()
    flop_per_image = counter.get_total_flops() / len(batches[0][1])
    dtype = torch.bfloat16 if precision == "bf16" else None

    def run() -> int:
        for x, y in batches:
            with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return n_images

    return run, flop_per_image


def _bare_step_worker(n_images: int, reps: int, barrier, results, precision: str = "fp32") -> None:
    """One of the side-by-side bare-step processes: 1 thread, warm-up, then ``reps`` timed runs."""
    torch.set_num_threads(1)
    from lib.data import load_splits

    run, _ = bare_step(load_splits(), n_images, precision)
    run()  # warm-up
    for _ in range(reps):
        barrier.wait()
        started = time.perf_counter()
        run()
        results.put(time.perf_counter() - started)


def bare_step_side_by_side(n_images: int, reps: int, processes: int, precision: str = "fp32") -> float:
    """Aggregate img/s of ``processes`` 1-thread bare-step processes started together (median rep)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_bare_step_worker, args=(n_images, reps, barrier, results, precision))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    seconds = [results.get(timeout=600) for _ in range(reps * processes)]
    for worker in workers:
        worker.join()
    # each rep ends when its slower process ends; results arrive in rep order per process
    per_rep = [max(seconds[i * processes : (i + 1) * processes]) for i in range(reps)]
    return processes * n_images / statistics.median(per_rep)


def dropout_layer_ms(reps: int = 20) -> tuple[float, float]:
    """Forward + backward of one dropout layer (p=0.25) on the first block's 128x32x28x28 channels_last
    map, 1 thread, median ms: ``nn.Dropout`` and ``FastDropout``."""
    from lib.dropout import FastDropout

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.randn(BATCH, 32, 28, 28).contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn_like(x)
    medians = []
    for layer in (nn.Dropout(0.25), FastDropout(0.25)):
        times = []
        for index in range(reps + 3):
            started = time.perf_counter()
            layer(x).backward(grad)
            if index >= 3:
                times.append(time.perf_counter() - started)
            x.grad = None
        medians.append(statistics.median(times) * 1000)
    torch.set_num_threads(previous)
    return medians[0], medians[1]


def augmentation_share(splits, reps: int = 20) -> tuple[float, float]:
    """Median ms of augmenting one 128-image batch (crop 2 + flip + erasing 0.25, 1 thread) and of one
    bare fp32 training step on it (1 thread)."""
    from lib.data import Augmentation

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    augment = Augmentation(crop_padding=2, flip=True, erase_p=0.25, pad_value=float(splits.train.images.min()))
    x = splits.train.images[:BATCH]
    generator = torch.Generator().manual_seed(0)
    run, _ = bare_step(splits, BATCH * 4)
    times = {"augment": [], "step": []}
    for index in range(reps + 3):
        started = time.perf_counter()
        augment(x, generator)
        middle = time.perf_counter()
        run()
        if index >= 3:
            times["augment"].append(middle - started)
            times["step"].append((time.perf_counter() - middle) / 4)
    torch.set_num_threads(previous)
    return statistics.median(times["augment"]) * 1000, statistics.median(times["step"]) * 1000


def matmul_flops(size: int = 2048, reps: int = 5, precision: str = "fp32", device: str = "cpu") -> float:
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        _sync(device)
        started = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times)


def engine_grid(
    train_subset: int | None, epochs: int, precision: str = "fp32", workers: int = 2
) -> tuple[float, float]:
    """Aggregate training img/s of a 4-trial grid and the workers' peak RSS in MiB (``device="auto"``)."""
    from lib.data import DataSpec
    from lib.engine.grid import run_grid

    started = time.perf_counter()
    frame = run_grid(
        {"epochs": epochs, "norm_type": "batch", "dropout_p": 0.25, "scheduler": "none", "precision": precision},
        {"lr": [1e-3, 2e-3]},
        [0, 1],
        f"bench-{time.time_ns()}",
        DataSpec(train_subset=train_subset),
        workers=workers,
        progress=False,
    )
    wall = time.perf_counter() - started
    if (frame["status"] != "finished").any():
        raise SystemExit(f"engine row: a trial failed: {frame['failure_reason'].tolist()}")
    workers_mib = float(frame["peak_rss_mib"].max())  # each worker reports its own peak
    images = (train_subset or 55_000) * epochs * len(frame)
    return images / wall, workers_mib


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6400, help="images per timed repetition")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per row (median reported)")
    parser.add_argument(
        "--engine-subset", type=int, default=None, help="training images per engine trial (default: all 55,000)"
    )
    parser.add_argument("--engine-epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: where rows 1-3 and 5a train")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds (numbers mean nothing)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.reps, args.engine_subset = 512, 1, 1000
    return args


def _rows(args, splits) -> tuple[list[tuple[str, float]], dict[str, dict[str, float]]]:
    """Every timed row, and per precision: limit, engine, one trial, FLOP rates."""
    device, reps, n = args.device, args.reps, args.images
    rows = [("1 course stack (per-item streamer, fp32)", _median_rate(course_stack(splits, n, device), reps, device))]
    rows.append(
        ("2 tutorial stack (torchvision + DataLoader)", _median_rate(tutorial_stack(splits, n, device), reps, device))
    )
    summary: dict[str, dict[str, float]] = {}
    for precision in args.precisions:
        one = _median_rate(ours_one_trial(splits, n, precision, device), reps, device)
        run, flop_per_image = bare_step(splits, n, precision, device)
        limit_one = _median_rate(run, reps, device)
        limit_two = bare_step_side_by_side(n, reps, 2, precision) if device == "cpu" else 0.0
        engine = [engine_grid(args.engine_subset, args.engine_epochs, precision) for _ in range(reps)]
        rate = statistics.median(r for r, _ in engine)
        rows += [
            (f"3 ours, one trial (lib.train.fit), {precision}", one),
            (f"4 ours, engine (4-trial grid, 2 workers), {precision}", rate),
            (f"5a bare step, pre-made tensors, 1 process, {precision}", limit_one),
        ]
        if limit_two:
            rows.append((f"5b bare step, 2 x 1-thread processes, {precision}", limit_two))
        summary[precision] = {
            "one": one,
            "engine": rate,
            "limit_one": limit_one,
            "limit": max(limit_one, limit_two),
            "flop_per_image": flop_per_image,
            "matmul": matmul_flops(precision=precision, device=device),
            "engine_rss": max(rss for _, rss in engine),
        }
    return rows, summary


def main() -> None:
    args = _arguments()
    store = tempfile.mkdtemp(prefix="hypertune-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["HYPERTUNE_STATE_DIR"] = f"{store}/state"
    from lib.data import load_splits

    torch.set_num_threads(os.cpu_count() or 1)
    splits = load_splits()
    name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
    )
    print(
        f"# hypertune speed benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {name}, device {args.device}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(f"# load average before: {os.getloadavg()[0]:.2f}")
    rows, summary = _rows(args, splits)
    trial_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = rows[0][1]
    print("\n| row | img/s | vs course stack |\n|---|---:|---:|")
    for label, rate in rows:
        print(f"| {label} | {rate:,.0f} | {rate / base:.2f}x |")
    print()
    for precision, row in summary.items():
        achieved = row["limit"] * row["flop_per_image"]
        print(
            f"{precision}: limit (faster of 5a/5b) {row['limit']:,.0f} img/s = {row['limit'] / base:.2f}x the course "
            f"stack; engine / limit {row['engine'] / row['limit']:.2f}x; "
            f"one trial / 5a {row['one'] / row['limit_one']:.2f}x; "
            f"the limit reaches {achieved / 1e9:.0f} GFLOP/s = {achieved / row['matmul']:.0%} of a 2048^3 {precision} "
            f"matmul ({row['matmul'] / 1e9:.0f} GFLOP/s); largest engine worker {row['engine_rss']:,.0f} MiB"
        )
    if "bf16" in summary and "fp32" in summary:
        ratio = {key: summary["bf16"][key] / summary["fp32"][key] for key in ("one", "engine", "limit", "matmul")}
        print("bf16 / fp32: " + ", ".join(f"{key} {value:.2f}x" for key, value in ratio.items()))
    _extras(splits, rows, trial_rss, args.device)
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


def _extras(splits, rows, trial_rss: float, device: str) -> None:
    from lib.train import evaluate

    training_fp32 = next(rate for label, rate in rows if label.startswith("3 "))
    model = _model(splits, device=device).to(memory_format=torch.channels_last)
    started = time.perf_counter()
    evaluate(model, splits.val, device=device)
    eval_seconds = time.perf_counter() - started
    epoch_seconds = len(splits.train) / training_fp32
    print(
        f"evaluation of the 5k validation split: {eval_seconds:.2f} s = {eval_seconds / epoch_seconds:.1%} of "
        f"a 55k-image training epoch ({epoch_seconds:.0f} s at the first row 3's rate)"
    )
    augment_ms, step_ms = augmentation_share(splits)
    print(
        f"augmentation (crop 2 + flip + erasing 0.25) of a 128-image batch, 1 thread: {augment_ms:.2f} ms "
        f"= {augment_ms / step_ms:.1%} of a bare fp32 training step ({step_ms:.1f} ms)"
    )
    print(f"peak memory: this process (one trial and the rows above) {trial_rss:,.0f} MiB")
    torch_ms, fast_ms = dropout_layer_ms()
    print(
        f"one dropout layer, forward + backward, 128x32x28x28, 1 thread: nn.Dropout {torch_ms:.1f} ms, "
        f"FastDropout {fast_ms:.1f} ms ({torch_ms / fast_ms:.1f}x)"
    )


if __name__ == "__main__":
    main()
