"""The test-set ledger: every reading of the test set this repository has committed, one row each.

``figures/test_readings.csv`` lists them (date, commit, notebook, candidate, config, budget, seeds,
per-seed accuracies, mean and interval). :func:`append_reading` adds the next one; :func:`readings`
reads the ledger, so a notebook or the README can say how many readings there were. The ledger guards
seeds (a new reading needs seeds never used) *and* configurations: a reading of a configuration that
has read the test set before is a **re-reading**; :func:`append_reading` says so in its note with the
earlier readings' dates and accuracies, and :func:`rereadings` flags every such row of the ledger.

A protocol comes first (study v5): :func:`declare_protocol` writes what a reading will be (its number in the
ledger, the candidates, the rule, the final seeds, the goal) to ``figures/test_protocols.csv`` *before* anything
trains, and :func:`append_reading` with ``require_protocol=True`` refuses a reading that no protocol declared
(its number and seeds). Every reading is counted: :func:`counted` numbers the ledger's rows, and a reading
appended with ``count=True`` says in its note which reading of this test set it is and how many came before.

What this is not: the test-set evaluation itself (the final trials compute it) or a place that decides
anything: a reading is recorded whatever it says.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    require_protocol: bool = False,
    count: bool = False,
) -> dict[str, object]:
    """Append one test-set reading (its mean and the seeds + test-sampling interval) and return the row.

    Raises ``ValueError`` naming the field when ``seeds`` and ``accuracies`` differ in length or a
    seed already read the test set in an earlier reading (a new reading needs seeds never used before).
    ``require_protocol``: refuse it unless :func:`declare_protocol` declared it first (:func:`check_declared`);
    ``count``: the note says which reading of this test set it is (:func:`count_note`).
    """
    if len(seeds) != len(accuracies) or not seeds:
        raise ValueError(
            f"seeds and accuracies must be equally long and not empty; got {len(seeds)} and {len(accuracies)}"
        )
    path = path or ledger_path()
    used = used_seeds(path)
    if reused := sorted(used & {int(s) for s in seeds}):
        raise ValueError(f"seeds {reused} already read the test set (see {path}): use seeds never used before")
    if require_protocol:
        check_declared(candidate, seeds, path)
    interval = combined_test_interval(accuracies, n_test)
    note = _flagged(note, config, count, path)
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
    _append(path, COLUMNS, row)
    return row


def _flagged(note: str, config: str, count: bool, path: Path) -> str:
    """``note`` behind its flags: a re-reading of a configuration (with the earlier readings' dates and
    accuracies), and with ``count`` which reading of this test set it is (:func:`count_note`)."""
    earlier = earlier_readings(config, path)
    if len(earlier):
        before = "; ".join(f"{r['date']} ({100 * float(r['accuracy']):.2f}%)" for _, r in earlier.iterrows())
        note = f"re-reading: this configuration read the test set before, {before}" + (f"; {note}" if note else "")
    if count:
        note = count_note(path) + (f"; {note}" if note else "")
    return note


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


PROTOCOL_COLUMNS = ["declared", "reading", "candidates", "final_seeds", "protocol"]


def protocol_path(path: Path | None = None) -> Path:
    """The protocols' file beside the ledger (``figures/test_protocols.csv``)."""
    return (path or ledger_path()).with_name("test_protocols.csv")


def protocols(path: Path | None = None) -> pd.DataFrame:
    """The declared protocols (no rows when none was declared): the ledger ``path`` they belong to."""
    where = protocol_path(path)
    text = {"final_seeds": str, "candidates": str, "protocol": str}
    return pd.read_csv(where, dtype=text) if where.exists() else pd.DataFrame(columns=PROTOCOL_COLUMNS)


def declare_protocol(
    protocol: dict[str, str], candidates: Sequence[str], seeds: Sequence[int], path: Path | None = None
) -> tuple[dict[str, object], bool]:
    """Write the protocol of the next reading before anything trains; return its row and whether it was appended.

    ``protocol``: the declared words (rule, schedules, goal; kept as ``name: value`` text); ``candidates``: the
    names that may read the test set; ``seeds``: the final seeds. The row holds the number the reading will have
    in the ledger (:func:`reading_number`). The same protocol declared again (a rerun from the cache, before or
    after its reading) is not appended twice; seeds that already read the test set under anything else are
    refused (``ValueError``)."""
    path = path or ledger_path()
    row = {
        "declared": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "reading": reading_number(path),
        "candidates": " | ".join(candidates),
        "final_seeds": _joined_seeds(seeds),
        "protocol": "; ".join(f"{key}: {value}" for key, value in protocol.items()),
    }
    same = _same_protocol(row, path)
    if same is not None:
        return same, False
    if reused := sorted(used_seeds(path) & {int(s) for s in seeds}):
        raise ValueError(f"final seeds {reused} already read the test set (see {path}): declare seeds never used")
    _append(protocol_path(path), PROTOCOL_COLUMNS, row)
    return row, True


def _same_protocol(row: dict[str, object], path: Path) -> dict[str, object] | None:
    """The declared row equal to ``row`` (candidates, seeds, words) whose reading is next or already made with
    those seeds (a rerun of the same protocol), else ``None``."""
    declared = protocols(path)
    same = declared[
        (declared["candidates"].astype(str) == row["candidates"])
        & (declared["final_seeds"].astype(str) == row["final_seeds"])
        & (declared["protocol"].astype(str) == row["protocol"])
    ] if len(declared) else declared  # fmt: skip
    if not len(same):
        return None
    last = same.iloc[-1].to_dict()
    number, seen = int(last["reading"]), readings(path)
    made = number <= len(seen) and str(seen.iloc[number - 1]["seeds"]) == row["final_seeds"]
    return last if number == row["reading"] or made else None


def check_declared(candidate: str, seeds: Sequence[int], path: Path | None = None) -> None:
    """Raise ``ValueError`` unless a protocol declared this reading before it: its number, these seeds, and
    ``candidate`` among its candidates (the protocol comes first, the reading after)."""
    number, wanted = reading_number(path), _joined_seeds(seeds)
    declared = protocols(path)
    match = declared[(declared["reading"].astype(int) == number) & (declared["final_seeds"].astype(str) == wanted)]
    if not len(match):
        raise ValueError(
            f"no protocol declared reading {number} with seeds {wanted}: call declare_protocol before any "
            "candidate trains (the protocol comes before the reading)"
        )
    if candidate not in str(match.iloc[-1]["candidates"]).split(" | "):
        raise ValueError(
            f"candidate {candidate!r} is not among the declared candidates: {match.iloc[-1]['candidates']}"
        )


def reading_number(path: Path | None = None) -> int:
    """The number the next reading will have in the ledger (1 for an empty ledger)."""
    return len(readings(path)) + 1


def ordinal(number: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th`` ... ``11th``, ``12th``, ``13th``, ``21st``."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def count_note(path: Path | None = None) -> str:
    """The flag of the next reading: which reading of this test set it is and when the earlier ones were."""
    seen = readings(path)
    number = len(seen) + 1
    if not len(seen):
        return "the 1st reading of this test set"
    dates = sorted(seen["date"].astype(str))
    return (
        f"the {ordinal(number)} reading of this test set ({len(seen)} before it, {dates[0]} to {dates[-1]}: "
        "its goal is blind to this reading, not to the test set's history)"
    )


def counted(path: Path | None = None) -> pd.DataFrame:
    """The ledger with ``reading``: each row's 1-based number, the count a flagged note quotes."""
    seen = readings(path).reset_index(drop=True)
    seen.insert(0, "reading", range(1, len(seen) + 1))
    return seen


def _append(path: Path, columns: Sequence[str], row: dict[str, Any]) -> None:
    """Append ``row`` to the CSV at ``path`` (its folder and header made when it is new)."""
    fresh = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        if fresh:
            writer.writeheader()
        writer.writerow(row)
