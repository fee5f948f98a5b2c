"""The report's figures: accuracy against each factor, learning rate vs weight decay, validation curves,
hyperparameter importance and expected-max curves ("would more trials have helped?").

Each function takes the trial frame of :func:`lib.report.trial_runs` and returns a matplotlib figure (or
``None`` when there is nothing to compare). What this is not: the checks (``lib.report.checks``) or the
markdown that puts figures and captions together (``lib.report.markdown``).
"""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import expected_max, plots
from lib.report.table import LOG_SCALE, _same_budget, _short, budget_label, controlled, role_names, usable, varied
from lib.stats import eta_squared, mean_ci
from lib.store.schema import FINISHED, PHASE, PHASE_TUNE, SWEEP

# The week-2 assignment's file names: acc_vs_dropout.png (not acc_vs_dropout_p.png), acc_vs_num_conv_blocks.png,
# lr_weight_decay_scatter.png and top_runs.csv; every other factor is acc_vs_<name>.png.
FIGURE_NAMES = {"dropout_p": "acc_vs_dropout"}

def factor_figure_name(factor: str) -> str:
    """The file stem of the accuracy-vs-``factor`` figure (the assignment's names where it has one)."""
    return FIGURE_NAMES.get(factor, f"acc_vs_{factor}")


TOP_CURVES = 5  # trials highlighted in the validation-curves figure

def _label(name: str) -> str:
    return f"{name} (log scale)" if name in LOG_SCALE else name

def factor_figure(runs: pd.DataFrame, factor: str) -> plt.Figure | None:
    """Validation accuracy against ``factor`` (``None`` when no grid or search compares it).

    Grid trials: mean and 95% CI over seeds, a line per value of the one other factor of the grid (or per
    ``norm_type``), so nothing is pooled silently; with more factors, each seed's accuracy is averaged
    over the rest and the figure says over which, so the interval is over seeds. Only trials of
    :func:`controlled` comparisons and of one budget are used.
    Sweep trials: every trial a point plus binned means. With both, the grid is drawn (a
    controlled comparison) and the sweep trials are left to the scatter and the table. Collapsed trials
    (at chance accuracy) are left out of the means; the report counts them apart.
    """
    finished = usable(runs)
    grid = controlled(finished[finished["source"] == "grid"], factor)
    use_grid = len(grid) > 0
    data = grid if use_grid else finished[finished["source"] == "sweep"]
    if data[factor].astype(str).nunique() < 2:
        return None
    data, left_out = _same_budget(data, factor)
    hue = _hue(data, factor, use_grid)
    budget = budget_label(data) + (f" | {left_out} trials at other budgets not shown" if left_out else "")
    log_x = factor in LOG_SCALE and pd.api.types.is_numeric_dtype(data[factor]) and (data[factor] > 0).all()
    if use_grid:
        keys = [k for k in (hue, factor) if k]
        per_seed = data.groupby([*keys, "seed"], dropna=False)["val_accuracy"].mean().reset_index()
        summary = _summarize(per_seed, keys)
        others = [v for v in varied(data) if v not in (factor, hue)]
        title = f"Validation accuracy vs {factor} (grid)"
        fig = plots.accuracy_vs(summary, factor, hue, title, _label(factor), log_x=log_x, budget=budget)
        if others:
            fig.axes[0].text(
                0.01, 0.01, f"averaged per seed over: {', '.join(others)}", transform=fig.axes[0].transAxes, fontsize=7
            )
        return fig
    title = f"Validation accuracy vs {factor} (search: {len(data)} trials)"
    return plots.sweep_points(data, factor, title, _label(factor), hue=hue, log_x=log_x, budget=budget)

def _hue(data: pd.DataFrame, factor: str, grid: bool) -> str | None:
    """The factor drawn as one line per value: the grid's one other factor when it has a few values (a
    dropout x blocks grid: a line per block count), else ``norm_type`` when it varies, else none."""
    others = [v for v in varied(data) if v != factor]
    if grid and len(others) == 1 and data[others[0]].astype(str).nunique() <= 6:
        return others[0]
    return "norm_type" if factor != "norm_type" and data["norm_type"].nunique() > 1 else None

def _summarize(per_seed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rows = []
    for key, group in per_seed.groupby(keys, sort=True):
        mean, low, high = mean_ci(group["val_accuracy"].tolist())
        rows.append(
            dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
            | {
                "n": int(group["val_accuracy"].notna().sum()),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows)

def scatter_figure(runs: pd.DataFrame) -> plt.Figure:
    """Learning rate vs weight decay of the trials (finished and failed) at the most common budget."""
    kept, left_out = _same_budget(runs, "lr")
    budget = budget_label(kept) + (f" | {left_out} trials at other budgets not shown" if left_out else "")
    fixed = [n for n in ("lr", "weight_decay") if kept[n].nunique() <= 1]
    title = "Learning rate vs weight decay" + (f" ({' and '.join(fixed)} fixed in these runs)" if fixed else "")
    return plots.lr_weight_decay_scatter(kept, budget=budget, title=title)

def curves_figure(runs: pd.DataFrame, histories: pd.DataFrame, top: int = TOP_CURVES) -> plt.Figure:
    """Validation accuracy per epoch of every finished trial, the best ``top`` (by last-epoch score)
    in colour, each curve's best epoch marked."""
    done = runs[(runs["status"] == FINISHED) & runs["run_id"].isin(histories["run_id"])]
    ranked = done.sort_values("val_accuracy", ascending=False)
    names = [n for n in varied(runs) if n in runs][:4]
    labels = {
        row["run_id"]: f"#{i + 1} {row['val_accuracy'] * 100:.1f}%: "
        + ", ".join(f"{n}={_short(row[n])}" for n in [*names, "seed"] if n in row)
        for i, (_, row) in enumerate(ranked.head(top).iterrows())
    }
    kept, left_out = _same_budget(done, "lr")
    budget = budget_label(kept) if len(kept) else None
    return plots.validation_curves(histories, list(labels), labels, budget=budget)

def _eta_groups(frame: pd.DataFrame, column: str, bins: int = 4) -> pd.Series:
    """The grouping :func:`lib.stats.eta_squared` uses: numbers with many values in equal-count bins."""
    groups = frame[column]
    if pd.api.types.is_numeric_dtype(groups) and groups.nunique() > bins:
        groups = pd.qcut(groups.rank(method="first"), bins, labels=False)
    return groups

def _eta_matrix(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """η² of each row of ``values`` (permutations x trials) for the fixed grouping ``codes``."""
    onehot = np.eye(codes.max() + 1)[codes]  # trials x levels
    counts = onehot.sum(axis=0)
    grand = values.mean(axis=1, keepdims=True)
    means = (values @ onehot) / counts
    between = ((means - grand) ** 2 * counts).sum(axis=1)
    total = ((values - grand) ** 2).sum(axis=1)
    return np.divide(between, total, out=np.zeros_like(between), where=total > 0)

def importance_table(
    runs: pd.DataFrame,
    columns: Iterable[str] | None = None,
    value: str = "val_accuracy",
    permutations: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """η² per hyperparameter with its chance level for these trials (permutation test).

    Shuffling the accuracies over the trials keeps the number of trials and levels but breaks any
    link to the hyperparameter: ``chance_mean`` is the average η² of the shuffles (close to
    (levels - 1) / (trials - 1)), ``chance_95`` their 95th percentile and ``p_value`` the share of
    shuffles at least as large as the observed η².
    """
    data = runs.dropna(subset=[value])
    names = list(columns) if columns is not None else [n for n in varied(data) if n in data]
    rng = np.random.default_rng(seed)
    y = data[value].to_numpy(dtype=float)
    shuffled = np.array([rng.permutation(y) for _ in range(permutations)]) if len(y) else np.empty((0, 0))
    rows = {}
    for name in names:
        part = data[[name, value]].dropna()
        if part[name].astype(str).nunique() < 2 or len(part) < 3:
            continue
        codes = pd.factorize(_eta_groups(part, name))[0]
        observed = eta_squared(part, name, value)
        keep = data.index.get_indexer(part.index)
        chance = _eta_matrix(shuffled[:, keep], codes)
        rows[name] = {
            "eta_squared": observed,
            "chance_mean": float(chance.mean()),
            "chance_95": float(np.quantile(chance, 0.95)),
            "p_value": float((np.sum(chance >= observed - 1e-12) + 1) / (len(chance) + 1)),
            "levels": int(codes.max() + 1),
            "trials": len(part),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("hyperparameter")


def expected_max_figure(runs: pd.DataFrame, by: str = SWEEP) -> tuple[plt.Figure, str] | None:
    """Expected best validation accuracy against the number of trials (:mod:`lib.expected_max`, Tang et al.'s
    unbiased estimator, 95% bootstrap band), one curve per sweep (``by``: the sweep's tag column,
    ``lib.store.schema.SWEEP``) or per arm of the sweeps (``by="norm_type"``, a scientific hyperparameter).
    Only sweep trials count (a grid is not a random draw), at the budget with the most of them; failed trials
    are dropped, collapsed ones kept (real draws).
    ``(figure, caption)``, or ``None`` when no group has 2 finished trials."""
    sweeps = runs[runs["source"] == "sweep"]
    if sweeps.empty or by not in sweeps:
        return None
    left_out = 0
    if sweeps["budget"].nunique() > 1:
        kept = sweeps[sweeps["budget"] == sweeps["budget"].value_counts().idxmax()]
        left_out, sweeps = len(sweeps) - len(kept), kept
    table = expected_max.curves(sweeps, by)
    table = table[table["trials"] >= 2]
    if table.empty:
        return None
    shown = sweeps[sweeps[by].astype(str).isin(set(table["group"].astype(str)))]
    fig = plots.expected_max_figure(table, budget=budget_label(shown))
    parts = []
    for group, curve in table.groupby("group", sort=True):
        top, half = curve.iloc[-1], curve.iloc[max(len(curve) // 2 - 1, 0)]
        parts.append(
            f"{group}: {half['expected_max'] * 100:.1f}% expected from {half['n']:.0f} trials, "
            f"{top['expected_max'] * 100:.1f}% from all {top['n']:.0f} "
            f"(+{(top['expected_max'] - half['expected_max']) * 100:.1f} points for the second half)"
        )
    failed = int(table.groupby("group")["failed"].first().sum())
    fell = int(shown.loc[shown["status"] == FINISHED, "collapsed"].sum()) if "collapsed" in shown else 0
    arm = "sweep" if by == SWEEP else by
    caption = (
        f"Expected best validation accuracy of n trials drawn without replacement from the N finished ones "
        f"(Tang et al. 2020), one line per {arm}, band: 95% bootstrap over the trials; the dot is all N. "
        f"{'; '.join(parts)}. Still rising at the dot: more trials would probably have found a better "
        "configuration; flat: not in this search space at this budget. n counts finished trials "
        f"({failed} failed left out; {fell} collapsed kept, as real draws). A TPE sweep's trials are not "
        "independent draws: its curve is what a random subset of them would give, not TPE stopped at n."
        + (f" {left_out} trials of other budgets left out." if left_out else "")
    )
    return fig, caption


def tuning_draws(runs: pd.DataFrame) -> pd.DataFrame:
    """The quasi-random points of a tuned study as draws for an expected-max curve: its tune-phase runs at
    their smallest budget (rung 0 of a halving study, where every point ran; all of a plain tuned grid), one
    row per arm and nuisance point, ``val_accuracy`` the mean over the tuning seeds, ``arm`` the scientific
    value. Empty without a tuned study."""
    if PHASE not in runs or not (runs[PHASE] == PHASE_TUNE).any():
        return pd.DataFrame()
    tune = runs[(runs[PHASE] == PHASE_TUNE) & (runs["status"] == FINISHED)]
    tune = tune[tune["epochs"] == tune["epochs"].min()]
    scientific, nuisance = role_names(tune, "scientific"), role_names(tune, "nuisance")
    points = tune.groupby([*scientific, *nuisance], dropna=False)["val_accuracy"].mean().reset_index()
    points["arm"] = points[scientific].astype(str).agg(", ".join, axis=1).radd(f"{', '.join(scientific)}=")
    return points.assign(status=FINISHED, budget=int(tune["budget"].iloc[0]))


def tuning_expected_max_figure(runs: pd.DataFrame) -> tuple[plt.Figure, str] | None:
    """Per arm of a tuned study: the expected best tuning score of n quasi-random points (:func:`tuning_draws`),
    "would more points have changed the arm's winner?". ``(figure, caption)`` or ``None``."""
    draws = tuning_draws(runs)
    if draws.empty:
        return None
    table = expected_max.curves(draws, "arm")
    table = table[table["trials"] >= 2]
    if table.empty:
        return None
    epochs = int(runs.loc[runs[PHASE] == PHASE_TUNE, "epochs"].min())
    unit = "epoch" if epochs == 1 else "epochs"
    fig = plots.expected_max_figure(table, budget=f"tuning points at {epochs} {unit} (mean over the tuning seeds)")
    caption = (
        "Expected best tuning score of n of each arm's quasi-random nuisance points (Tang et al. 2020, without "
        "replacement; band: 95% bootstrap over the points), at the first rung's budget where every point ran. "
        "Still rising at the dot: more points could have found a better setting for that arm; flat: its winner "
        "is unlikely to be an artefact of too few points."
    )
    return fig, caption
