"""Has the control stopped improving? The plateau checks behind H1 and H2b, H2a (02) and H3 (03), and the budget
a failed check would need.

Dropout is a regulariser: it can only pay once a model overfits, so H1 is asked at a budget where the
control (``dropout_p = 0``, at its own tuned lr and weight decay) has stopped improving. The check, declared
before the runs: train each control again for ``factor`` times the epochs on the same fresh seeds (a longer
cosine schedule, everything else equal) and take the paired gain, longer - budget, per seed. The control has
*stopped improving* when the upper end of that gain's 95% interval is below :data:`MATERIAL` (half a point):
training longer would not give it more than that. A learning curve is shown beside it, but it is not the
test: under a cosine schedule every curve flattens at its end, whatever the budget.

Study v5 declares one check per decided family's claims (``lib.study.registry.BUDGET_CHECKS``: which control
arm(s) of which input, which factor) and makes it bind: ``lib.study.verdicts.adjust`` reads :func:`budget_table`
and a row whose check failed (or was not run) for an arm it depends on reads *not decided: budget*. The budget
that would be needed is measured, not guessed: :func:`run_ladder` repeats the check at 2x, 4x, ... the epochs
(each doubling only for the arms still improving, up to the profile's ``plateau_max_factor``) and
:func:`ladder` reports the first budget that stopped improving, or "not reached by Nx".

What this is not: a learning-curve fit or an early-stopping rule; the decision itself (``verdicts.adjust``);
05's budget comparison (``comparisons``).
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
from lib.study.contrast import select
from lib.study.registry import BUDGET_CHECKS, BudgetCheck, budget_check

MATERIAL = 0.005  # half an accuracy point: smaller than every effect H1 is about
FACTOR = 2  # the longer run trains twice the epochs
NOT_RUN = "not run"  # a check without its longer runs: its claims' rows are not decided


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


# --- study v5: the declared checks, the ladder of doublings and the table the verdicts bind to ----------------


def controls_of(check: BudgetCheck | str, frame: pd.DataFrame) -> pd.DataFrame:
    """The finished control trials of a check (or its name) in its input's runs: per arm (``check.by``), the
    trials of ``check.control`` (H2a's: each norm type's best learning rate)."""
    check = budget_check(check) if isinstance(check, str) else check
    done = frame[frame["status"] == FINISHED] if len(frame) else frame
    if done.empty or any(name not in done for name in check.by):
        return done.iloc[0:0]
    parts = [select(group, check.control) for _, group in done.groupby(list(check.by))]
    return pd.concat(parts) if parts else done.iloc[0:0]


def _arm(frame: pd.DataFrame, by: Sequence[str], values: dict[str, object]) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for name in by:
        mask &= frame[name] == values[name]
    return frame[mask]


def run_ladder(
    controls: pd.DataFrame,
    experiment: str,
    data: DataSpec,
    tags: dict[str, str],
    max_factor: int = FACTOR,
    by: Sequence[str] = ("norm_type",),
    step: int = FACTOR,
    **options: Any,
) -> pd.DataFrame:
    """The longer runs of the needed-budget ladder: every control at ``step`` (2) x its epochs; an arm that has not
    stopped improving there gets 4x, and so on while the factor is at most ``max_factor`` (0 or 1: nothing is
    trained, the check is *not run*). Each run is the control's configuration with the longer cosine schedule,
    same seed, cached like every grid. Returns all longer runs (a results frame)."""
    done = controls[controls["status"] == FINISHED] if len(controls) else controls
    frames, shorter, still, factor = [], done, done, step
    while factor <= max_factor and len(still):
        longer = run_longer(still, experiment, data, tags, factor=factor, **options)
        frames.append(longer)
        table = check(shorter, longer, by)
        failing = table[table["stopped improving"] != "yes"] if len(table) else table
        keep = [_arm(still, by, row[list(by)].to_dict()) for _, row in failing.iterrows()]
        still = pd.concat(keep) if keep else still.iloc[0:0]
        shorter, factor = longer, factor * step
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["status", "epochs", "seed"])


def ladder(
    controls: pd.DataFrame, longer: pd.DataFrame, by: Sequence[str] = ("norm_type",), step: int = FACTOR
) -> pd.DataFrame:
    """One row per control arm: :func:`check` at the decision budget (its epochs vs twice them; ``stopped
    improving`` is ``not run`` without longer runs) and ``budget needed``, measured on the ladder: the first
    budget (1x, 2x, ... the epochs) whose doubling gained less than half a point for sure, else ``not reached
    by Nx`` (N: the longest run trained). ``steps``: every doubling checked, ``12->24: +0.10 (<= +0.59)``."""
    done = controls[controls["status"] == FINISHED] if len(controls) else controls
    more = longer[longer["status"] == FINISHED] if len(longer) else longer
    rows = []
    for key, arm in done.groupby(list(by)) if len(done) else []:
        values = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        base = int(arm["epochs"].max())
        runs = pd.concat([arm, _arm(more, by, values)]) if len(more) else arm
        steps = _doublings(runs, base, by, step)
        first = steps[0] if len(steps) and steps[0]["epochs"] == base else None
        row = values | (first if first is not None else {"epochs": base, "stopped improving": NOT_RUN})
        row["budget needed"] = _needed(steps, base)
        row["steps"] = "; ".join(
            f"{s['epochs']}->{s['longer epochs']}: {s['gain (pp)']:+.2f} (<= {s['gain ci_high']:+.2f})" for s in steps
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _doublings(runs: pd.DataFrame, base: int, by: Sequence[str], step: int) -> list[dict[str, Any]]:
    """:func:`check` of each budget against ``step`` x it (base, 2 base, 4 base ... for 2) while both were run."""
    steps, epochs = [], base
    while (runs["epochs"] == step * epochs).any():
        table = check(runs[runs["epochs"] == epochs], runs[runs["epochs"] == step * epochs], by)
        if table.empty:
            break
        steps.append(table.iloc[0].to_dict())
        epochs *= step
    return steps


def _needed(steps: list[dict[str, Any]], base: int) -> str:
    for step in steps:
        if step["stopped improving"] == "yes":
            factor = step["epochs"] // base
            epochs = f"{step['epochs']} epoch" + ("s" if step["epochs"] != 1 else "")
            return f"{epochs} ({factor}x" + (", the decision budget)" if factor == 1 else ")")
    if not steps:
        return NOT_RUN
    return f"not reached by {steps[-1]['longer epochs'] // base}x"


def budget_table(inputs: dict[str, pd.DataFrame], checks: Sequence[BudgetCheck] = BUDGET_CHECKS) -> pd.DataFrame:
    """Every declared check on the study's inputs (``lib.study.inputs.grid_inputs``, longer runs included):
    :func:`ladder` per check, with its name in ``check``. A check whose input is missing gives no rows (its
    claims' rows then read *not decided: budget*); one without longer runs gives ``not run``."""
    parts = []
    for item in checks:
        controls = controls_of(item, inputs.get(item.input, pd.DataFrame()))
        longer = inputs.get(item.longer, pd.DataFrame())
        longer = longer if len(longer) and all(name in longer for name in item.by) else controls.iloc[0:0]
        table = ladder(controls, longer, item.by, item.factor)
        parts.append(table.assign(check=item.name) if len(table) else table)
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["check", "stopped improving"])


def run_check(
    name: str,
    frame: pd.DataFrame,
    experiment: str,
    data: DataSpec,
    profile: str,
    max_factor: int = FACTOR,
    **options: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A notebook's one call for a declared check: its controls in ``frame`` (MLflow runs of the check's input),
    the ladder trained up to ``max_factor`` (tag: the check's ``longer`` input), and its table (with ``check``),
    which ``verdicts.adjust(..., budget=table)`` binds. Returns (the longer runs, the table)."""
    item = budget_check(name)
    controls = controls_of(item, frame)
    tags = {"hypothesis": item.longer, "profile": profile}
    longer = run_ladder(controls, experiment, data, tags, max_factor, item.by, item.factor, **options)
    table = ladder(controls, longer, item.by, item.factor)
    return longer, table.assign(check=name) if len(table) else table
