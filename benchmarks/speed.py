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
                    is compared with a large fp32 matmul's.

Also: evaluation cost as a share of an epoch, and peak memory (max RSS) of one trial and of the
engine's worker processes. Run with ``make bench`` (a few minutes).
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


def _model(splits, dropout_impl: str = "fast"):
    from lib.config import ModelConfig
    from lib.model import build_model

    torch.manual_seed(0)
    config = ModelConfig(norm_type="batch", dropout_p=0.25, dropout_impl=dropout_impl)
    return build_model(config, splits.input_shape, splits.n_classes)


def _median_rate(run: Callable[[], int], reps: int) -> float:
    run()  # warm-up
    rates = []
    for _ in range(reps):
        started = time.perf_counter()
        images = run()
        rates.append(images / (time.perf_counter() - started))
    return statistics.median(rates)


def course_stack(splits, n_images: int) -> Callable[[], int]:
    """Per-item Python streamer: index -> (pixels / 255, label), stacked per batch."""
    raw = ((splits.train.images[:n_images] * splits.std + splits.mean) * 255).round().to(torch.uint8)
    labels = splits.train.labels[:n_images]

    class Streamer:
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, index: int):
            return raw[index].float() / 255.0, labels[index]

    def run() -> int:
        model = _model(splits, dropout_impl="torch")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        data = Streamer()
        order = torch.randperm(len(data)).tolist()
        for start in range(0, len(order), BATCH):
            items = [data[i] for i in order[start : start + BATCH]]
            x = torch.stack([item[0] for item in items])
            y = torch.stack([item[1] for item in items])
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return len(order)

    return run


def tutorial_stack(splits, n_images: int) -> Callable[[], int]:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from lib.paths import data_dir

    dataset = Subset(
        datasets.FashionMNIST(root=str(data_dir()), train=True, transform=transforms.ToTensor()), range(n_images)
    )

    def run() -> int:
        model = _model(splits, dropout_impl="torch")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for x, y in DataLoader(dataset, batch_size=BATCH, shuffle=True):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return n_images

    return run


def ours_one_trial(splits, n_images: int) -> Callable[[], int]:
    from lib.config import TrainConfig
    from lib.data import ArrayData
    from lib.train import fit

    data = ArrayData(splits.train.images[:n_images], splits.train.labels[:n_images])
    config = TrainConfig(epochs=1, scheduler="none")

    def run() -> int:
        fit(_model(splits), data, None, config, progress=False)
        return n_images

    return run


def bare_step(splits, n_images: int) -> tuple[Callable[[], int], float]:
    """The limit: pre-made channels_last batches, no bookkeeping. Returns (run, FLOP per image)."""
    from torch.utils.flop_counter import FlopCounterMode

    batches = [
        (
            splits.train.images[i : i + BATCH].contiguous(memory_format=torch.channels_last),
            splits.train.labels[i : i + BATCH],
        )
        for i in range(0, n_images, BATCH)
    ]
    model = _model(splits).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(batches[0][0]), batches[0][1]).backward()
    flop_per_image = counter.get_total_flops() / len(batches[0][1])

    def run() -> int:
        for x, y in batches:
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return n_images

    return run, flop_per_image


def _bare_step_worker(n_images: int, reps: int, barrier, results) -> None:
    """One of the side-by-side bare-step processes: 1 thread, warm-up, then ``reps`` timed runs."""
    torch.set_num_threads(1)
    from lib.data import load_splits

    run, _ = bare_step(load_splits(), n_images)
    run()  # warm-up
    for _ in range(reps):
        barrier.wait()
        started = time.perf_counter()
        run()
        results.put(time.perf_counter() - started)


def bare_step_side_by_side(n_images: int, reps: int, processes: int) -> float:
    """Aggregate img/s of ``processes`` 1-thread bare-step processes started together (median rep)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_bare_step_worker, args=(n_images, reps, barrier, results)) for _ in range(processes)
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


def matmul_flops(size: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times)


def engine_grid(train_subset: int | None, epochs: int) -> tuple[float, float]:
    """Aggregate training img/s of a 4-trial grid (2 workers) and the workers' peak RSS in MiB."""
    from lib.data import DataSpec
    from lib.engine.grid import run_grid

    started = time.perf_counter()
    frame = run_grid(
        {"epochs": epochs, "norm_type": "batch", "dropout_p": 0.25, "scheduler": "none"},
        {"lr": [1e-3, 2e-3]},
        [0, 1],
        f"bench-{time.time_ns()}",
        DataSpec(train_subset=train_subset),
        workers=2,
        progress=False,
    )
    wall = time.perf_counter() - started
    workers_mib = float(frame["peak_rss_mib"].max())  # each worker reports its own peak
    images = (train_subset or 55_000) * epochs * len(frame)
    return images / wall, workers_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6400, help="images per timed repetition")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per row (median reported)")
    parser.add_argument(
        "--engine-subset", type=int, default=None, help="training images per engine trial (default: all 55,000)"
    )
    parser.add_argument("--engine-epochs", type=int, default=1)
    args = parser.parse_args()
    store = tempfile.mkdtemp(prefix="hypertune-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["HYPERTUNE_STATE_DIR"] = f"{store}/state"
    from lib.data import load_splits
    from lib.train import evaluate

    torch.set_num_threads(os.cpu_count() or 1)
    splits = load_splits()
    print(
        f"# hypertune speed benchmark, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(f"# load average before: {os.getloadavg()[0]:.2f}")
    rows: list[tuple[str, float]] = []
    rows.append(("1 course stack (per-item streamer)", _median_rate(course_stack(splits, args.images), args.reps)))
    rows.append(
        ("2 tutorial stack (torchvision + DataLoader)", _median_rate(tutorial_stack(splits, args.images), args.reps))
    )
    rows.append(("3 ours, one trial (lib.train.fit)", _median_rate(ours_one_trial(splits, args.images), args.reps)))
    trial_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    run, flop_per_image = bare_step(splits, args.images)
    limit_one = _median_rate(run, args.reps)
    limit_two = bare_step_side_by_side(args.images, args.reps, processes=2)
    limit = max(limit_one, limit_two)
    engine_rates = [engine_grid(args.engine_subset, args.engine_epochs) for _ in range(args.reps)]
    engine_rate = statistics.median(rate for rate, _ in engine_rates)
    engine_rss = max(rss for _, rss in engine_rates)
    rows.append(("4 ours, engine (4-trial grid, 2 workers)", engine_rate))
    rows.append(("5a bare step, pre-made tensors, 1 process", limit_one))
    rows.append(("5b bare step, pre-made tensors, 2 x 1-thread processes", limit_two))
    matmul = matmul_flops()
    base = rows[0][1]
    print("\n| row | img/s | vs course stack |\n|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x |")
    print(
        f"\nlimit = the faster of 5a and 5b = {limit:,.0f} img/s; engine / limit: {engine_rate / limit:.2f}x; "
        f"one trial / 5a (same layout): {rows[2][1] / limit_one:.2f}x"
    )
    achieved = limit * flop_per_image
    print(
        f"training FLOP per image (counted): {flop_per_image / 1e6:.1f} MFLOP; the limit reaches "
        f"{achieved / 1e9:.0f} GFLOP/s = {achieved / matmul:.0%} of a 2048^3 fp32 matmul ({matmul / 1e9:.0f} GFLOP/s)"
    )
    model = _model(splits).to(memory_format=torch.channels_last)
    started = time.perf_counter()
    evaluate(model, splits.val)
    eval_seconds = time.perf_counter() - started
    epoch_seconds = len(splits.train) / rows[2][1]
    print(
        f"evaluation of the 5k validation split: {eval_seconds:.2f} s = {eval_seconds / epoch_seconds:.1%} of "
        f"a 55k-image training epoch ({epoch_seconds:.0f} s at row 3's rate)"
    )
    print(
        f"peak memory: this process (one trial and the rows above) {trial_rss:,.0f} MiB; "
        f"largest engine worker {engine_rss:,.0f} MiB"
    )
    torch_ms, fast_ms = dropout_layer_ms()
    print(
        f"one dropout layer, forward + backward, 128x32x28x28, 1 thread: nn.Dropout {torch_ms:.1f} ms, "
        f"FastDropout {fast_ms:.1f} ms ({torch_ms / fast_ms:.1f}x)"
    )
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
