"""The test-set ledger: every reading of the test set this repository has committed, one row each.

``figures/test_readings.csv`` lists them (date, commit, notebook, candidate, config, budget, seeds,
per-seed accuracies, mean and interval). :func:`append_reading` adds the next one; :func:`readings`
reads the ledger, so a notebook or the README can say how many readings there were. The ledger guards
seeds (a new reading needs seeds never used) *and* configurations: a reading of a configuration that
has read the test set before is a **re-reading**; :func:`append_reading` says so in its note with the
earlier readings' dates and accuracies, and :func:`rereadings` flags every such row of the ledger.

What this is not: the test-set evaluation itself (the final trials compute it) or a place that decides
anything: a reading is recorded whatever it says.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lib.paths import figures_dir
from lib.stats import combined_test_interval

COLUMNS = [
    "date",
    "commit",
    "notebook",
    "candidate",
    "config",
    "epochs",
    "train_images",
    "seeds",
    "per_seed_accuracy",
    "accuracy",
    "ci_low",
    "ci_high",
    "interval",
    "note",
]


def ledger_path() -> Path:
    return figures_dir() / "test_readings.csv"


def readings(path: Path | None = None) -> pd.DataFrame:
    """The ledger as a frame (no rows when there is no ledger yet)."""
    path = path or ledger_path()
    text = {"commit": str, "seeds": str, "per_seed_accuracy": str, "config": str}  # "0.9000" stays as written
    return pd.read_csv(path, dtype=text) if path.exists() else pd.DataFrame(columns=COLUMNS)


def append_reading(
    *,
    commit: str,
    candidate: str,
    config: str,
    epochs: int,
    train_images: int,
    seeds: Sequence[int],
    accuracies: Sequence[float],
    n_test: int,
    notebook: str = "04_analysis",
    note: str = "",
    path: Path | None = None,
    date: dt.date | None = None,
) -> dict[str, object]:
    """Append one test-set reading (its mean and the seeds + test-sampling interval) and return the row.

    Raises ``ValueError`` naming the field when ``seeds`` and ``accuracies`` differ in length or a
    seed already read the test set in an earlier reading (a new reading needs seeds never used before).
    """
    if len(seeds) != len(accuracies) or not seeds:
        raise ValueError(
            f"seeds and accuracies must be equally long and not empty; got {len(seeds)} and {len(accuracies)}"
        )
    path = path or ledger_path()
    used = used_seeds(path)
    if reused := sorted(used & {int(s) for s in seeds}):
        raise ValueError(f"seeds {reused} already read the test set (see {path}): use seeds never used before")
    interval = combined_test_interval(accuracies, n_test)
    earlier = earlier_readings(config, path)
    if len(earlier):
        before = "; ".join(f"{r['date']} ({100 * float(r['accuracy']):.2f}%)" for _, r in earlier.iterrows())
        note = f"re-reading: this configuration read the test set before, {before}" + (f"; {note}" if note else "")
    row = {
        "date": (date or dt.date.today()).isoformat(),
        "commit": commit,
        "notebook": notebook,
        "candidate": candidate,
        "config": config,
        "epochs": int(epochs),
        "train_images": int(train_images),
        "seeds": _joined_seeds(seeds),
        "per_seed_accuracy": _joined_accuracies(accuracies),
        "accuracy": round(interval["mean"], 6),
        "ci_low": round(interval["low"], 6),
        "ci_high": round(interval["high"], 6),
        "interval": "seeds + test sampling (Welch-Satterthwaite df)",
        "note": note,
    }
    fresh = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        if fresh:
            writer.writeheader()
        writer.writerow(row)
    return row


def used_seeds(path: Path | None = None) -> set[int]:
    """Every seed that has read the test set in a reading of the ledger."""
    seen = readings(path)
    return {int(s) for text in seen["seeds"].astype(str) for s in text.split("/") if s.strip().isdigit()}


def earlier_readings(config: str, path: Path | None = None) -> pd.DataFrame:
    """The ledger's readings of this very configuration (its ``name=value`` parts in any order)."""
    seen = readings(path)
    wanted = _parts(config)
    return seen[seen["config"].astype(str).map(lambda text: _parts(text) == wanted)] if len(seen) else seen


def rereadings(path: Path | None = None) -> pd.DataFrame:
    """The ledger with ``rereading_of``: for each row, the 1-based numbers of the earlier rows that read the
    same configuration (empty for a first reading). A configuration read twice was chosen with the first
    reading in view, so the second is not a fresh test of it."""
    seen = readings(path).reset_index(drop=True)
    keys = seen["config"].astype(str).map(_parts)
    seen["rereading_of"] = [
        ", ".join(str(j + 1) for j in range(i) if keys.iloc[j] == keys.iloc[i]) for i in range(len(seen))
    ]
    return seen


def _joined_seeds(seeds: Sequence[int]) -> str:
    return "/".join(str(int(s)) for s in seeds)


def _joined_accuracies(accuracies: Sequence[float]) -> str:
    return "/".join(f"{a:.4f}" for a in accuracies)


IMPLEMENTATION_ONLY = ("dropout_impl",)  # how a layer is computed, not which model: ignored when comparing configs


def _parts(config: str) -> tuple[str, ...]:
    """A config's ``name=value`` parts in a fixed order (two spellings of one config compare equal), without
    the implementation-only fields."""
    parts = (part.strip() for part in config.split(", "))
    return tuple(sorted(p for p in parts if p.split("=", 1)[0] not in IMPLEMENTATION_ONLY))


def record_reading(**reading: object) -> tuple[dict[str, object], bool]:
    """:func:`append_reading`, unless the ledger already holds this very reading (the same config,
    seeds and per-seed accuracies: a rerun of the notebook from the cache, not a new look at
    the test set). Returns the row and whether it was appended."""
    path = reading.get("path") or ledger_path()
    seeds = _joined_seeds(reading["seeds"])  # type: ignore[arg-type]
    accuracies = _joined_accuracies(reading["accuracies"])  # type: ignore[arg-type]
    seen = readings(path)  # type: ignore[arg-type]
    wanted = _parts(str(reading["config"]))
    same = seen[
        (seen["seeds"].astype(str) == seeds)
        & (seen["per_seed_accuracy"].astype(str) == accuracies)
        & seen["config"].astype(str).map(lambda config: _parts(config) == wanted)
    ]
    if len(same):
        return same.iloc[-1].to_dict(), False
    return append_reading(**reading), True  # type: ignore[arg-type]
