"""The final model's declared candidates of study v5 (notebook 06): the list as data, each candidate's
tuning, its validation interval over seeds and images, and what the whole costs.

1. :func:`declare` turns the profile's ``candidate_*`` knobs into the candidates, *before any of their runs*:
   the v4 recipe at its schedule, the recipe with random erasing at a longer one, and (knob
   ``candidate_wide``) the same with a wider first block. Each is a :class:`Candidate`: a configuration
   over the library defaults, its own schedule, and whether its lr and weight decay are tuned.
2. :func:`tune` tunes lr x weight decay of every candidate by successive halving at its own schedule,
   through :func:`lib.engine.halving.run_halving` (as 02 and 03 tune their arms); :func:`tuned` puts each
   winner into its candidate.
3. :func:`validation_summary`: each candidate's mean validation accuracy with the seeds-only t-interval and
   the interval over seeds *and* the validation images (:func:`lib.stats.combined_test_interval`).
4. :func:`cost`: the images a profile's 06 trains, and its time at a measured rate (the profile's comment
   shows the arithmetic).

What this is not: the comparison's rule and its paired effects (``final.compare_candidates``), the protocol
and the test-set ledger (``ledger``), or the halving itself (``lib.engine.halving``, used by its public API).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine.halving import HalvingGrid, parse_range, run_halving
from lib.stats import combined_test_interval, mean_ci
from lib.study.final import GOAL, STRETCH
from lib.study.inputs import finished
from lib.study.ledger import ordinal
from lib.study.profiles import pinned

# Study v4's recipe (06), declared there before its runs: two blocks of (3x3 conv -> BatchNorm -> ReLU) x 2 with
# 16 and 32 channels, max-pooling, no dropout, a random 2-pixel shifted crop, left-right flips, a cosine schedule.
RECIPE_V4: dict[str, Any] = {
    "norm_type": "batch",
    "dropout_p": 0.0,
    "num_conv_blocks": 2,
    "conv_out_channels": 16,
    "channel_multiplier": 2,
    "convs_per_block": 2,
    "conv_kernel_size": 3,
    "pool_type": "max",
    "pool_kernel_size": 2,
    "hidden_sizes": (128,),
    "augment_crop_padding": 2,
    "augment_flip": True,
    "scheduler": "cosine",
}
# What the recipe borrows from 04's sweep best when it is not tuned (v4's caveat): the tuned ones are replaced.
FROM_SWEEP = ("optimizer", "lr", "weight_decay", "batch_size")
TUNED = ("lr", "weight_decay")
# A halving study needs one scientific factor (its arms); a candidate is one arm, named by its first-block width.
ARM_FACTOR = "conv_out_channels"


@dataclass(frozen=True)
class Candidate:
    """One declared candidate: a name, its configuration (flat, without seed and epochs), its schedule, why it
    is in the list, and whether its lr and weight decay are tuned (``tuning`` says how, once tuned)."""

    name: str
    config: dict[str, Any]
    epochs: int
    reason: str
    tuned: bool = True
    tuning: str = "not tuned yet"

    def row(self) -> dict[str, Any]:
        """The candidate as one row of the protocol's table."""
        return {"candidate": self.name, "epochs": self.epochs, "tuned": "lr x weight decay" if self.tuned else "no",
                "why": self.reason, "tuning": self.tuning}  # fmt: skip


def declare(
    knobs: dict[str, Any], borrowed: dict[str, Any], adjust: Callable[[dict], dict] | None = None
) -> list[Candidate]:
    """The v5 candidates from the profile's knobs, in order (module docstring, step 1).

    ``borrowed``: 04's sweep best (its optimizer and batch size are kept; lr and weight decay are the start of
    nothing, they are tuned); ``adjust``: 02b's adjustment of a configuration (``final.final_choice``), applied to
    the recipe as in v4. Raises ``ValueError`` naming the knob when a schedule is not a whole number >= 1.
    """
    for name in ("candidate_recipe_epochs", "candidate_long_epochs"):
        if int(knobs[name]) != knobs[name] or knobs[name] < 1:
            raise ValueError(f"{name}={knobs[name]!r}: give a whole number of epochs >= 1")
    base = RECIPE_V4 | {name: borrowed[name] for name in FROM_SWEEP if name in borrowed} | pinned(knobs)
    recipe = _flat(adjust(_flat(base)) if adjust else base)
    erase = recipe | {"augment_erase_p": float(knobs["candidate_erase_p"])}
    long = int(knobs["candidate_long_epochs"])
    listed = [
        Candidate("v4 recipe", recipe, int(knobs["candidate_recipe_epochs"]), "v4's recipe, lr and wd now tuned"),
        Candidate(
            "recipe + erasing", erase, long, f"random erasing (p={knobs['candidate_erase_p']}), a longer schedule"
        ),
    ]
    if knobs.get("candidate_wide"):
        wide = erase | {"conv_out_channels": 2 * int(erase["conv_out_channels"])}
        listed.append(Candidate("recipe + erasing, wide", wide, long, "a wider first block (twice the channels)"))
    return listed


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """A configuration as the config holds it, without seed and epochs (a candidate's schedule is its own)."""
    return {k: v for k, v in TrialConfig.from_flat(config).flat().items() if k not in ("seed", "epochs")}


def rungs(epochs: int, fractions: Sequence[float]) -> list[int]:
    """The halving's rungs for a schedule: each fraction of ``epochs`` (at least 1, rising), the last ``epochs``."""
    steps = sorted({max(1, round(f * epochs)) for f in fractions if f < 1} | {epochs})
    return steps


def design(candidate: Candidate, knobs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`lib.engine.halving.run_halving` that tune ``candidate`` at its schedule:
    its own rungs, the tuning seeds, ``candidate_seeds`` for the re-measure, no fixed-nuisance rows."""
    return {
        "rungs": rungs(candidate.epochs, knobs["candidate_tune_fractions"]),
        "eta": knobs["candidate_tune_eta"],
        "n_points": knobs["candidate_tune_points"],
        "max_extensions": knobs["candidate_tune_extensions"],
        "fixed_seeds": [],
        "workers": knobs["workers"],
    }


def tuning_data(knobs: dict[str, Any]) -> DataSpec:
    """The images the candidates are tuned on: ``candidate_tune_subset`` training images, the grids' validation ones."""
    return DataSpec(
        train_subset=knobs["candidate_tune_subset"],
        val_subset=knobs.get("val_subset"),
        dataset=knobs.get("dataset", "fashion_mnist"),
    )


def tune(
    candidates: Sequence[Candidate],
    knobs: dict[str, Any],
    experiment: str,
    tags: dict[str, str],
    run: Callable[..., HalvingGrid] = run_halving,
) -> dict[str, HalvingGrid]:
    """Tune lr x weight decay of every tuned candidate at its own schedule (one halving study each)."""
    studies = {}
    for candidate in candidates:
        if not candidate.tuned:
            continue
        base = {k: v for k, v in candidate.config.items() if k not in (*TUNED, ARM_FACTOR)}
        studies[candidate.name] = run(
            base | {"epochs": candidate.epochs},
            {ARM_FACTOR: [candidate.config[ARM_FACTOR]]},
            [parse_range(text) for text in knobs["tune_ranges"]],
            knobs["candidate_tune_seeds"],
            knobs["candidate_seeds"],
            experiment,
            tuning_data(knobs),
            tags | {"candidate": candidate.name},
            **design(candidate, knobs),
        )
    return studies


def tuned(candidates: Sequence[Candidate], studies: dict[str, HalvingGrid]) -> list[Candidate]:
    """Each candidate with its halving winner's lr and weight decay and a line saying how it was tuned."""
    out = []
    for candidate in candidates:
        study = studies.get(candidate.name)
        if study is None:
            out.append(candidate)
            continue
        arm = study.arms[0]
        if arm.winner is None:
            raise ValueError(f"candidate '{candidate.name}': its tuning has no finished winner; rerun 06")
        winner = {name: float(arm.winner[name]) for name in TUNED}
        rung_sizes = "/".join(str(int(n)) for n in study.rung_table().query("round == 0")["points"])
        text = (f"halving at {'/'.join(map(str, study.rung_epochs))} epochs ({rung_sizes} points, eta {study.eta}), "
                f"lr {winner['lr']:.3g}, wd {winner['weight_decay']:.3g}, decided: {arm.verdict()}")  # fmt: skip
        out.append(replace(candidate, config=candidate.config | winner, tuning=text))
    return out


def tuning_table(studies: dict[str, HalvingGrid]) -> pd.DataFrame:
    """Per tuned candidate: the winner, its tuning score (the best last-rung mean over the tuning seeds), its
    re-measure on fresh seeds (same images) and the difference, the winner's curse, in accuracy points."""
    rows = []
    for name, study in studies.items():
        row = study.summary().iloc[0]
        tuning, remeasured = float(row["tune_score_pct"]), float(row["remeasured_pct"])
        rows.append({"candidate": name, "lr": row["best lr"], "weight_decay": row["best weight_decay"],
                     "tuning_pct": tuning, "remeasured_pct": remeasured, "curse_pp": tuning - remeasured,
                     "decided": row.get("decided", "yes")})  # fmt: skip
    return pd.DataFrame(rows)


def trial_configs(candidates: Sequence[Candidate], seeds: Sequence[int]) -> list[tuple[str, TrialConfig]]:
    """``(candidate name, config)`` of every candidate x seed at its own schedule, the longest schedule first (so
    two workers stay busy): what the comparison on validation trains, or with the final seeds the final."""
    ordered = sorted(candidates, key=lambda c: -c.epochs)
    return [(c.name, TrialConfig.from_flat(c.config | {"epochs": c.epochs, "seed": s})) for c in ordered for s in seeds]


def validation_summary(frame: pd.DataFrame, n_val: int) -> pd.DataFrame:
    """Per candidate (a ``candidate`` column, one row per finished trial with ``val_accuracy``): the mean, the
    seeds-only t-interval and the interval over seeds *and* the ``n_val`` validation images."""
    rows = []
    for name, group in finished(frame).groupby("candidate", sort=False):
        values = group["val_accuracy"].astype(float).tolist()
        mean, low, high = mean_ci(values)
        both = combined_test_interval(values, n_test=n_val)
        row = {"candidate": name, "n": len(values), "mean": mean, "seeds_low": low, "seeds_high": high}
        rows.append(row | {"ci_low": both["low"], "ci_high": both["high"], "interval": "seeds + validation images"})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Cost:
    """Training images of a 06 run, by part, and the time at ``rate`` images/s over all workers."""

    parts: dict[str, float]
    rate: float
    overhead_s: float

    @property
    def images(self) -> float:
        return sum(self.parts.values())

    @property
    def seconds(self) -> float:
        return self.images / self.rate + self.overhead_s

    def text(self) -> str:
        parts = "; ".join(f"{name} {images / 1e6:.2f}M" for name, images in self.parts.items())
        return (f"{parts}: {self.images / 1e6:.2f}M images / {self.rate:,.0f} img/s + {self.overhead_s:.0f} s = "
                f"{self.seconds:,.0f} s ({self.seconds / 60:.0f} min), estimated")  # fmt: skip


def cost(knobs: dict[str, Any], rate: float, overhead_s: float, eval_share: float = 1 / 3, wide: float = 2.6) -> Cost:
    """The training images of 06's v5 design at ``knobs`` (worst case: the dearest candidate wins, no range
    extension), each epoch's validation pass counted as ``eval_share`` of a training image per image (5,000
    validation images): tuning, its re-measure, the comparison on ``candidate_train_subset`` (None: 55,000)
    and the final on 60,000 (``final_train_subset``) x ``final_seeds``. The wide candidate's images count
    ``wide`` times (v4 measured 3,150 vs 1,200 img/s for 16 vs 32 channels, two convs per block)."""
    tune_n = knobs["candidate_tune_subset"] or 55_000
    compare_n = knobs["candidate_train_subset"] or 55_000
    val = 5_000 * eval_share
    parts = {"tuning": 0.0, "re-measure": 0.0, "comparison": 0.0}
    schedules = [(knobs["candidate_recipe_epochs"], 1.0), (knobs["candidate_long_epochs"], 1.0)]
    schedules += [(knobs["candidate_long_epochs"], wide)] if knobs.get("candidate_wide") else []
    for epochs, factor in schedules:
        steps, size = rungs(epochs, knobs["candidate_tune_fractions"]), knobs["candidate_tune_points"]
        for rung in steps:
            parts["tuning"] += factor * size * len(knobs["candidate_tune_seeds"]) * rung * (tune_n + val)
            size = math.ceil(size / knobs["candidate_tune_eta"])
        parts["re-measure"] += factor * len(knobs["candidate_seeds"]) * epochs * (tune_n + val)
        parts["comparison"] += factor * len(knobs["candidate_seeds"]) * epochs * (compare_n + val)
    epochs, factor = max(schedules, key=lambda item: item[0] * item[1])
    parts["final"] = factor * len(knobs["final_seeds"]) * epochs * (knobs["final_train_subset"] or 60_000)
    return Cost(parts, rate, overhead_s)


def protocol(
    candidates: Sequence[Candidate], knobs: dict[str, Any], compare_images: int, used: set[int], reading: int
) -> dict[str, str]:
    """The v5 protocol in words, to be logged (``test_protocol.csv``) and declared to the ledger
    (:func:`lib.study.ledger.declare_protocol`) before any candidate trains."""
    fractions = "/".join(f"{f:g}" for f in knobs["candidate_tune_fractions"])
    return {
        "candidates": " | ".join(f"{c.name} ({c.epochs} ep)" for c in candidates),
        "tuning": (
            f"lr x weight decay per tuned candidate at its own schedule by successive halving: "
            f"{knobs['candidate_tune_points']} quasi-random points over {', '.join(knobs['tune_ranges'])}, keep 1/"
            f"{knobs['candidate_tune_eta']} per rung, rungs at {fractions or 'no'} fraction(s) of the schedule and "
            f"the schedule itself, tuning seeds {knobs['candidate_tune_seeds']}, "
            f"{knobs['candidate_tune_subset'] or 55_000:,} training images, up to {knobs['candidate_tune_extensions']} "
            "range extension(s)"
        ),
        "selection": (
            f"highest mean validation accuracy over seeds {knobs['candidate_seeds']}, each candidate at its own "
            f"schedule on {compare_images:,} training images; intervals over seeds and validation images"
        ),
        "final": "the winner alone, at its own schedule, on training + validation images",
        "final seeds": "/".join(map(str, knobs["final_seeds"])),
        "seeds already used on the test set": "/".join(map(str, sorted(used))) or "none",
        "reading": f"the {ordinal(reading)} reading of this test set",
        "precision": pinned(knobs)["precision"],
        "success criterion": (
            f"mean test accuracy >= {GOAL:.1%} (stretch {STRETCH:.1%}), with its seeds + test-sampling interval"
            if knobs.get("dataset", "fashion_mnist") == "fashion_mnist"
            else "none declared"
        ),
        "reported": "whatever it is: a miss is reported as a miss",
    }
