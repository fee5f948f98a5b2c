"""The report's checks before reading results, and its table of best configurations.

Boundary warnings (the best value in the outer 10% of a range that can still move), the share of failed
and collapsed trials per hyperparameter value, the arms of a tuned study re-read from the store (their
winners picked by the tuning code's own rule, :func:`lib.engine.tuning.pick_winner`), and :func:`top_configs`.
What this is not: figures (``lib.report.figures``) or markdown (``lib.report.markdown``).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lib import store
from lib.config import hard_bounds
from lib.engine.tuning import pick_winner
from lib.report.table import (
    LOG_SCALE,
    _latest_study,
    _number,
    _select,
    _short,
    hyperparameters,
    role_names,
    varied,
)
from lib.stats import mean_ci
from lib.store.schema import (
    DATA_COLUMNS,
    FINISHED,
    KIND,
    KIND_SWEEP,
    PHASE,
    PHASE_REMEASURE,
    PHASE_TUNE,
    TAG_CHECKPOINT_RULE,
    TAG_FIXED_NUISANCE,
    column,
)

EDGE = 0.10  # the outer share of a searched range that counts as "at the boundary"
# the columns of :func:`tuned_arms` that are not the arm's scientific values
ARM_COLUMNS = ("kind", "mean", "ci_low", "ci_high", "n", "nuisance", "rule", "tune_mean", "curse_pp")

def searched_ranges(names: Sequence[str]) -> dict[str, tuple[float, float, bool]]:
    """``{hyperparameter: (low, high, log)}`` of the numeric ranges the sweeps of ``names`` searched
    (read from each sweep parent's ``space`` param)."""
    import ast

    frame = store.runs(list(names))
    ranges: dict[str, tuple[float, float, bool]] = {}
    if "space" not in frame or KIND not in frame:
        return ranges
    for text in frame.loc[frame[KIND] == KIND_SWEEP, "space"].dropna():
        with contextlib.suppress(ValueError, SyntaxError):
            for name, value in ast.literal_eval(str(text)).items():
                if isinstance(value, dict) and len(value) == 1:
                    ((kind, bounds),) = value.items()
                    if float(bounds[0]) < float(bounds[1]):
                        ranges[name] = (float(bounds[0]), float(bounds[1]), kind == "loguniform")
    return ranges

def _grid_ranges(runs: pd.DataFrame, names: Iterable[str]) -> dict[str, tuple[float, float, bool]]:
    """The range each numeric grid factor spanned (log when positive and over a decade or more, or a
    rate or decay)."""
    ranges = {}
    for name in names:
        values = pd.to_numeric(runs[name], errors="coerce").dropna() if name in runs else pd.Series(dtype=float)
        if values.nunique() >= 2 and runs[name].dtype != bool:
            low, high = float(values.min()), float(values.max())
            log = low > 0 and (name in LOG_SCALE or high / low >= 10)
            ranges[name] = (low, high, log)
    return ranges

def edge_position(value: float, low: float, high: float, log: bool) -> float:
    """Where ``value`` lies in ``[low, high]``, 0 to 1 (on a log scale when ``log``)."""
    if log:
        value, low, high = math.log(value), math.log(low), math.log(high)
    return (value - low) / (high - low)

def boundary_warnings(
    runs: pd.DataFrame, ranges: dict[str, tuple[float, float, bool]] | None = None, top: int = 3
) -> list[str]:
    """A warning for each searched range whose best configuration lies in its outer 10%.

    ``ranges``: the searched ``(low, high, log)`` per hyperparameter (default: the span of the grid
    values of every numeric hyperparameter that varies). The best configurations are ranked by mean
    validation accuracy over seeds (:func:`top_configs`, the largest budget); the warning also says how
    many of the best ``top`` lie at the same edge. A tuned study is checked per arm
    (:func:`tuned_arms`).
    """
    warnings = []
    for label, part, checked in _boundary_groups(runs):
        limits = ranges if ranges is not None else _grid_ranges(part, checked)
        best = top_configs(part, top)
        best = best[best["budget"] == best["budget"].iloc[0]] if len(best) else best
        for name, (low, high, log) in limits.items():
            if name not in checked or name not in best or not len(best):
                continue
            places = [edge_position(float(v), low, high, log) for v in best[name]]
            movable = _movable_sides(name, low, high, log)
            for side, near in (("lower", lambda p: p <= EDGE), ("upper", lambda p: p >= 1 - EDGE)):
                if near(places[0]) and side in movable:
                    count = sum(near(p) for p in places)
                    warnings.append(
                        f"{label}the best configuration's {name} = {best[name].iloc[0]:.4g} lies in the {side} 10% "
                        f"of the searched range [{low:.4g}, {high:.4g}]{' (log scale)' if log else ''} "
                        f"({count} of the best {len(places)}): widen the range "
                        f"{'below' if side == 'lower' else 'above'} it before trusting the comparison"
                    )
    return warnings

def _movable_sides(name: str, low: float, high: float, log: bool) -> set[str]:
    """The sides of ``[low, high]`` that a wider range could move: not a side already at the hard bound
    (a log range can always move toward a bound it cannot reach)."""
    floor, ceiling = hard_bounds(name)
    sides = set()
    if floor is None or low > floor + 1e-12 * max(1.0, abs(floor)):
        sides.add("lower")
    if ceiling is None or high < ceiling - 1e-12 * max(1.0, abs(ceiling)):
        sides.add("upper")
    return sides

def _boundary_groups(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """What one boundary check looks at: each arm of a tuned study (its tuning runs, its nuisance
    names), else all finished trials and every varied hyperparameter."""
    done = runs[runs["status"] == FINISHED]
    if PHASE in done and (done[PHASE] == PHASE_TUNE).any():
        tune = done[done[PHASE] == PHASE_TUNE]
        nuisance, scientific = role_names(tune, "nuisance"), role_names(tune, "scientific")
        groups = []
        for key, part in tune.groupby(scientific):
            values = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{n}={_short(v)}" for n, v in zip(scientific, values, strict=True)) + ": "
            groups.append((label, part, nuisance))
        return groups
    return [("", done, varied(done))]

def failure_shares(runs: pd.DataFrame, bins: int = 4) -> pd.DataFrame:
    """The share of failed and of collapsed trials per value of each varied hyperparameter (numbers with many
    values in ``bins`` equal-count bins): columns hyperparameter, value, trials, failed, collapsed, failed_pct,
    collapsed_pct."""
    rows = []
    for name in [
        n for n in [*hyperparameters(), "data_train_subset"] if n in runs and runs[n].astype(str).nunique() > 1
    ]:
        values = runs[name]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and values.nunique() > bins:
            values = pd.qcut(values, bins, duplicates="drop").astype(str)
        for value, group in runs.groupby(values.astype(str), sort=True):
            failed = int((group["status"] != FINISHED).sum())
            fell = int(group["collapsed"].sum()) if "collapsed" in group else 0
            rows.append({"hyperparameter": name, "value": value, "trials": len(group), "failed": failed,
                         "collapsed": fell})
    frame = pd.DataFrame(rows, columns=["hyperparameter", "value", "trials", "failed", "collapsed"])
    frame["failed_pct"] = (100 * frame["failed"] / frame["trials"]).round(1) if len(frame) else []
    frame["collapsed_pct"] = (100 * frame["collapsed"] / frame["trials"]).round(1) if len(frame) else []
    return frame

def _tuning_table(mine: pd.DataFrame, nuisance: list[str], score: str) -> pd.DataFrame:
    """One arm's tuning runs as the tuning code scores them: per nuisance combination, the mean over the
    tuning seeds, NaN unless every tuning seed finished (:func:`lib.engine.tuning.pick_winner` then decides)."""
    if not len(mine):
        return pd.DataFrame(columns=[*nuisance, "score"])
    seeds = mine["seed"].nunique()
    grouped = mine.groupby(nuisance)[score]
    table = grouped.mean().where(grouped.count() == seeds).rename("score").reset_index()
    return table


def tuned_arms(runs: pd.DataFrame) -> pd.DataFrame:
    """The re-measured arms of a tuned study (``grid --tune``) in these runs: one row per scientific value
    and kind (``tuned``: the arm's winner on the tuning seeds, ``fixed``: the base's nuisance values),
    with the mean and 95% CI over the fresh seeds and the winner's nuisance values; a tuned row adds its
    winner's tuning score (``tune_mean``) and the winner's curse (``curse_pp``: tuning score - re-measured
    mean, accuracy points; :func:`lib.engine.tuning.winners_curse` totals it). Empty without one."""
    done = runs[runs["status"] == FINISHED]
    if PHASE not in done or not (done[PHASE] == PHASE_REMEASURE).any():
        return pd.DataFrame()
    done = _latest_study(done)
    tune, again = done[done[PHASE] == PHASE_TUNE], done[done[PHASE] == PHASE_REMEASURE]
    scientific, nuisance = role_names(again, "scientific"), role_names(again, "nuisance")
    rule_column, fixed_column = column(TAG_CHECKPOINT_RULE), column(TAG_FIXED_NUISANCE)
    rule = str(again[rule_column].dropna().iloc[0]) if rule_column in again else "last"
    score = "best_val_accuracy" if rule == "best_epoch" else "val_accuracy"
    fixed = json.loads(str(again[fixed_column].dropna().iloc[0])) if fixed_column in again else {}
    rows = []
    for key, arm in again.groupby(scientific):
        values = dict(zip(scientific, key if isinstance(key, tuple) else (key,), strict=True))
        mine = tune[np.logical_and.reduce([tune[n] == v for n, v in values.items()])] if len(tune) else tune
        if len(mine):  # successive halving: the winner is chosen at the last rung (the claim's budget) only
            mine = mine[mine["epochs"] == mine["epochs"].max()]
        table = _tuning_table(mine, nuisance, score)
        winner = pick_winner(table, nuisance) or {}
        for kind, wanted in (("tuned", winner), ("fixed", fixed)):
            chosen = _select(arm, wanted)
            mean, low, high = mean_ci(chosen[score].tolist())
            setting = ", ".join(f"{n}={_short(_number(v))}" for n, v in wanted.items())
            rows.append(values | {"kind": kind, "mean": mean, "ci_low": low, "ci_high": high, "n": len(chosen)})
            tuned = float(table["score"].max()) if kind == "tuned" and winner else math.nan
            rows[-1] |= {"nuisance": setting, "rule": rule, "tune_mean": tuned, "curse_pp": 100 * (tuned - mean)}
    return pd.DataFrame(rows)

def top_configs(runs: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Configurations aggregated over seeds, ranked within each budget (best ``top`` per budget).

    One row per configuration (every hyperparameter but the seed, the same data): ``n`` seeds
    that finished and did not collapse, ``failed`` seeds, ``collapsed`` seeds (at chance accuracy, left
    out of the mean), the mean and 95% t-interval of validation accuracy in %,
    ``budget`` (training images x epochs), ``train_subset``/``val_subset`` (empty = all),
    ``recalibrate_bn``, then every hyperparameter and the run ids. Rows of one budget are ranked
    by mean (``rank_in_budget``); budgets are listed largest first and are not compared.
    """
    names = [n for n in hyperparameters() if n in runs]
    data_cols = [c for c in DATA_COLUMNS if c in runs]
    keys = [*names, *data_cols, "budget", "train_images"]
    frame = runs.copy()
    frame[keys] = frame[keys].astype(str)  # group on text: NaN (= all data) and lists group safely
    rows = [_config_row(runs, group, names) for _, group in frame.groupby(keys, sort=False, dropna=False)]
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for name in names:  # integer hyperparameters read as floats when another run lacks them
        if (
            name in table
            and pd.api.types.is_float_dtype(table[name])
            and table[name].dropna().apply(float.is_integer).all()
        ):
            table[name] = table[name].astype("Int64")
    table = table.sort_values(["budget", "mean_val_acc_pct"], ascending=[False, False], na_position="last")
    rounded = [c for c in ("mean_val_acc_pct", "ci_low_pct", "ci_high_pct", "best_epoch_val_acc_pct") if c in table]
    table[rounded] = table[rounded].round(2)
    table.insert(0, "rank_in_budget", table.groupby("budget").cumcount() + 1)
    return table[table["rank_in_budget"] <= top].reset_index(drop=True)

def _config_row(runs: pd.DataFrame, group: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """One configuration's row of :func:`top_configs`: its seeds' mean and interval (collapsed seeds left out)."""
    first = runs.loc[group.index[0]]
    flags = group["collapsed"].fillna(False).astype(bool) if "collapsed" in group else pd.Series(False, group.index)
    values = group.loc[~flags, "val_accuracy"].dropna()
    mean, low, high = mean_ci(values.tolist())
    subset = first.get("data_train_subset")
    val_subset = first.get("data_val_subset")
    return (
        {
            "budget": int(first["budget"]),
            "train_images": int(first["train_images"]),
            "epochs": int(first["epochs"]),
            "n": len(values),
            "failed": int(group["val_accuracy"].isna().sum()),
            "collapsed": int(flags.sum()),
            "mean_val_acc_pct": mean * 100,
            "ci_low_pct": low if math.isnan(low) else max(low, 0.0) * 100,  # accuracy stays in 0-100%
            "ci_high_pct": high if math.isnan(high) else min(high, 1.0) * 100,
        }
        | _best_epoch_columns(group)
        | {
            "recalibrate_bn": bool(first.get("recalibrate_bn", False)),
            "train_subset": "" if pd.isna(subset) else int(subset),
            "val_subset": "" if pd.isna(val_subset) else int(val_subset),
            "seeds": ",".join(str(s) for s in sorted(group["seed"].tolist())),
            "source": ",".join(sorted(group["source"].unique())),
            "experiments": ",".join(sorted(group["experiment"].unique())),
        }
        | {n: first[n] for n in names if n not in ("epochs", "recalibrate_bn")}
        | {"run_ids": ",".join(group["run_id"])}
    )

def _best_epoch_columns(group: pd.DataFrame) -> dict[str, float]:
    """``best_epoch`` (median over seeds) and ``best_epoch_val_acc_pct`` (mean) of one configuration, when
    the runs carry them (:func:`with_best_epoch`)."""
    if "best_val_accuracy" not in group:
        return {}
    finished = group[group["val_accuracy"].notna()]
    epochs = pd.to_numeric(finished.get("best_epoch"), errors="coerce").dropna()
    scores = pd.to_numeric(finished["best_val_accuracy"], errors="coerce").dropna()
    return {
        "best_epoch": float(epochs.median()) if len(epochs) else np.nan,
        "best_epoch_val_acc_pct": float(scores.mean()) * 100 if len(scores) else np.nan,
    }
