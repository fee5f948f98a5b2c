"""Has the no-dropout control stopped improving? The budget check behind H1 (02).

Dropout is a regulariser: it can only pay once a model overfits, so H1 is asked at a budget where the
control (``dropout_p = 0``, at its own tuned lr and weight decay) has stopped improving. The check, declared
before the runs: train each control again for ``factor`` times the epochs on the same fresh seeds (a longer
cosine schedule, everything else equal) and take the paired gain, longer - budget, per seed. The control has
*stopped improving* when the upper end of that gain's 95% interval is below :data:`MATERIAL` (half a point):
training longer would not give it more than that. A learning curve is shown beside it, but it is not the
test: under a cosine schedule every curve flattens at its end, whatever the budget.

What this is not: a learning-curve fit or an early-stopping rule; the budget of other claims (03, 05).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine.grid import results_frame, run_trials
from lib.stats import paired_effect
from lib.store import FINISHED, epoch_histories, run_config

MATERIAL = 0.005  # half an accuracy point: smaller than every effect H1 is about
FACTOR = 2  # the longer run trains twice the epochs


def longer_configs(controls: pd.DataFrame, factor: int = FACTOR) -> list[TrialConfig]:
    """Each finished control run's configuration (MLflow run rows) with ``factor`` x its epochs, same seed."""
    done = controls[controls["status"] == FINISHED]
    return [
        TrialConfig.from_flat(run_config(row, without=()) | {"epochs": row["epochs"] * factor})
        for _, row in done.iterrows()
    ]


def run_longer(
    controls: pd.DataFrame, experiment: str, data: DataSpec, tags: dict[str, str], factor: int = FACTOR, **options: Any
) -> pd.DataFrame:
    """Train :func:`longer_configs` (cached like every grid) and return their results frame."""
    configs = longer_configs(controls, factor)
    return results_frame(run_trials(configs, experiment, data, tags=tags, **options))


def check(controls: pd.DataFrame, longer: pd.DataFrame, by: Sequence[str] = ("norm_type",)) -> pd.DataFrame:
    """One row per control arm: epochs of the budget and of the longer run, the means, the paired gain
    (accuracy points, longer - budget) with its 95% interval over the seeds, and ``stopped improving``."""
    rows = []
    done = controls[controls["status"] == FINISHED]
    finished_longer = longer[longer["status"] == FINISHED]
    for key, arm in done.groupby(list(by)):
        values = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        mask = pd.Series(True, index=finished_longer.index)
        for name, value in values.items():
            mask &= finished_longer[name] == value
        more = finished_longer[mask]
        short = arm.set_index("seed")["val_accuracy"]
        long = more.set_index("seed")["val_accuracy"]
        seeds = sorted(set(short.index) & set(long.index))
        if len(seeds) < 2:
            continue
        gain = paired_effect(long.loc[seeds], short.loc[seeds], "longer - budget")
        rows.append(
            values
            | {
                "epochs": int(arm["epochs"].max()),
                "longer epochs": int(more["epochs"].max()),
                "seeds": len(seeds),
                "accuracy at budget": short.loc[seeds].mean(),
                "accuracy longer": long.loc[seeds].mean(),
                "gain (pp)": 100 * gain.mean,
                "gain ci_low": 100 * gain.ci_low,
                "gain ci_high": 100 * gain.ci_high,
                "stopped improving": "yes" if gain.ci_high < MATERIAL else "no",
            }
        )
    return pd.DataFrame(rows)


def histories(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch metrics of the finished runs (MLflow rows), with their configuration (for the curves)."""
    return epoch_histories(runs)
