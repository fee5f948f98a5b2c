"""A report of any experiments in the store: figures, the table of best configurations, UI links.

``python -m lib report --experiment NAME [--experiment ...] [--out DIR]`` and the notebooks call the
same functions: :func:`write_report` (everything), or the pieces: :func:`trial_runs` (the trials as
a DataFrame), :func:`factor_figure`, :func:`scatter_figure`, :func:`top_configs`,
:func:`importance_table` and :func:`budget_label`. Each figure function returns a matplotlib figure.

What this is not: the hypothesis verdicts (``lib.study.analysis``, fixed rules per hypothesis). A report
shows what the runs say about every hyperparameter that varied, with the budget each point cost.

Budget: a trial's cost is *training images x epochs* (``data_train_subset``, all 55,000 when
``None``, times the ``epochs`` param); configurations are only ranked against others of the same
budget and the same validation data, since more data or more epochs buys accuracy by itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import datasets, plots, tracking
from lib.config import TrialConfig
from lib.data import DEFAULT_VAL_SIZE, DataSpec
from lib.stats import eta_squared, mean_ci

DEFAULT_UI = "http://127.0.0.1:5000"
LOG_SCALE = {"lr", "weight_decay"}
DATA_COLUMNS = ("data_train_subset", "data_val_subset", "data_val_size", "data_split_seed")
SHARE_KEY = "hypertune-runs"


class ReportError(RuntimeError):
    """The experiments asked for cannot be reported on; the message says why and what exists."""


def hyperparameters() -> list[str]:
    """Every hyperparameter of a trial (the params a trial run logs), seed excluded."""
    return [name for name in TrialConfig().flat() if name != "seed"]


def experiment_names() -> list[str]:
    """Names of the experiments in the store (``Default`` left out when it is empty)."""
    return tracking.experiment_names()


def runs_train_images(frame: pd.DataFrame) -> pd.Series:
    """Training images per trial: the subset, capped at (or else) the training part of its data set."""
    return pd.Series([_part_sizes(row)[0] for _, row in frame.iterrows()], index=frame.index, dtype=int)


def _val_labels(frame: pd.DataFrame) -> list[str]:
    """The validation sets of these trials, largest first: ``all 5,000`` for a whole validation part."""
    labels = {}
    for _, row in frame.iterrows():
        images, whole = _part_sizes(row)[1], _part_sizes(row.drop("data_val_subset", errors="ignore"))[1]
        labels[images] = f"all {images:,}" if images == whole else f"{images:,}"
    return [labels[n] for n in sorted(labels, reverse=True)]


def _part_sizes(row: pd.Series) -> tuple[int, int]:
    """(training, validation) images of one trial run, from its ``data_*`` params: a subset larger than
    its part means all of it, as in :mod:`lib.data`; a final run trains on training + validation."""

    def value(name: str) -> Any:
        item = row.get(name)
        return None if item is None or (isinstance(item, float) and math.isnan(item)) or item == "None" else item

    final = str(value("data_final")) in ("True", "true", "1")
    dataset = str(value("data_dataset") or "fashion_mnist")
    val_size = value("data_val_size")
    train, val = _split_sizes(dataset, None if val_size is None else int(val_size), value("data_split_seed"))
    if final:
        train += val
    subsets = [value("data_train_subset"), value("data_val_subset")]
    return tuple(int(min(float(s), n)) if s is not None else n for s, n in zip(subsets, (train, val), strict=True))


@lru_cache(maxsize=32)
def _split_sizes(dataset: str, val_size: int | None, split_seed: Any) -> tuple[int, int]:
    """Sizes of a data set's training and validation parts (from :mod:`lib.datasets` without loading the
    images when it knows the size of the official training part)."""
    whole = datasets.train_part_images(dataset)
    if whole is not None and val_size in (None, DEFAULT_VAL_SIZE):
        return whole - DEFAULT_VAL_SIZE, DEFAULT_VAL_SIZE
    extra = {"split_seed": int(float(split_seed))} if split_seed is not None else {}
    splits = DataSpec(dataset=dataset, val_size=val_size, **extra).load()
    return len(splits.train), len(splits.val)


def trial_runs(experiments: str | Sequence[str]) -> pd.DataFrame:
    """Finished and failed trial runs of ``experiments`` with ``source``, ``train_images``, ``budget``.

    Raises :class:`ReportError` for an unknown experiment (listing the ones that exist) and for
    experiments without a finished trial. Sweep parents, analysis runs and final (test-set) runs
    are left out: a report compares validation accuracy. A trial stored twice (the same config,
    data and code in two experiments) counts once.
    """
    names = [experiments] if isinstance(experiments, str) else list(experiments)
    if not names:
        raise ReportError("no experiment given; the store has: " + (", ".join(experiment_names()) or "none"))
    known = experiment_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ReportError(
            f"unknown experiment {', '.join(map(repr, unknown))} in {tracking.tracking_uri()}; "
            f"the store has: {', '.join(known) or 'no experiments'}"
        )
    frame = tracking.runs_frame(names, status=None)
    empty = []
    for name in names:
        rows = frame[frame["experiment"] == name] if len(frame) else frame
        trials = rows[rows["tag.trial_key"].notna()] if "tag.trial_key" in rows else rows.iloc[0:0]
        if not (trials["status"] == tracking.FINISHED).any() if len(trials) else True:
            statuses = ", ".join(f"{k}: {v}" for k, v in rows["status"].value_counts().items()) if len(rows) else ""
            empty.append(
                f"'{name}' ({len(trials)} trial runs{'; all runs by status: ' + statuses if statuses else ''})"
            )
    if empty:
        raise ReportError(
            "no finished trial runs in " + ", ".join(empty) + ": run a grid or sweep into it first "
            "(python -m lib grid/sweep --experiment NAME ...) or wait for the running trials to end"
        )
    frame = frame[frame["tag.trial_key"].notna() & frame["status"].isin([tracking.FINISHED, tracking.FAILED])]
    if "data_final" in frame:
        frame = frame[~frame["data_final"].fillna(False).astype(bool)]
    frame = frame.sort_values("start_time").drop_duplicates("tag.trial_key", keep="last").copy()
    frame.loc[frame["status"] != tracking.FINISHED, "val_accuracy"] = np.nan
    sweep = frame["tag.sweep"] if "tag.sweep" in frame else pd.Series(np.nan, frame.index)
    frame["source"] = np.where(sweep.notna(), "sweep", "grid")
    frame["train_images"] = runs_train_images(frame)
    frame["budget"] = frame["train_images"] * frame["epochs"].astype(int)
    return frame.reset_index(drop=True)


def varied(frame: pd.DataFrame) -> list[str]:
    """Hyperparameters (and the training subset) that take more than one value among finished trials."""
    done = frame[frame["status"] == tracking.FINISHED]
    names = [*hyperparameters(), "data_train_subset"]
    return [n for n in names if n in done and done[n].astype(str).nunique() > 1]


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"


def budget_label(frame: pd.DataFrame) -> str:
    """One line saying what a point cost: training images x epochs, and the validation images.

    ``frame``: trial runs as from :func:`trial_runs` (or any frame with ``epochs`` and the
    ``data_*`` params). Several budgets are listed with their number of trials.
    """
    frame = frame.copy()
    if "train_images" not in frame:
        if "data_train_subset" not in frame:
            raise ValueError(
                "budget_label needs the data_* params of the runs (tracking.runs_frame or report.trial_runs); "
                "for a grid's results frame use report.budget_of(data, epochs)"
            )
        frame["train_images"] = runs_train_images(frame)
    frame["epochs"] = frame["epochs"].astype(int)
    combos = frame.groupby(["train_images", "epochs"]).size().sort_index(ascending=False)
    parts = [
        f"{images:,} training images × {_plural(epochs, 'epoch')}"
        + (f" ({_plural(n, 'trial')})" if len(combos) > 1 else "")
        for (images, epochs), n in combos.items()
    ]
    val_sizes = _val_labels(frame)
    final = frame["data_final"].fillna(False).astype(bool) if "data_final" in frame else pd.Series(False, frame.index)
    if final.all():
        fashion = "data_dataset" not in frame or set(frame["data_dataset"].fillna("fashion_mnist")) == {"fashion_mnist"}
        test_set = "the 10,000 test images" if fashion else "the held-out test set"
        return "budget per trial: " + "; ".join(parts) + f" | scored once on {test_set}"
    return "budget per trial: " + "; ".join(parts) + f" | validated on {' / '.join(val_sizes)} images"


def budget_of(data: DataSpec, epochs: int | Iterable[int]) -> str:
    """The budget line for trials on ``data`` (a :class:`lib.engine.trial.DataSpec`) for ``epochs``, e.g. in a
    notebook: ``plots.accuracy_vs(..., budget=report.budget_of(data, knobs["epochs"]))``."""
    splits = data.load()  # the images a trial really gets: any data set, a subset larger than its part means all
    params = data.params() | {"data_train_subset": len(splits.train) + (len(splits.val) if data.final else 0)}
    if not data.final and (data.val_subset is not None or data.dataset != "fashion_mnist"):
        params["data_val_subset"] = len(splits.val)
    rows = [{**params, "epochs": e} for e in ([epochs] if isinstance(epochs, int) else epochs)]
    return budget_label(pd.DataFrame(rows))


def _same_budget(frame: pd.DataFrame, factor: str) -> tuple[pd.DataFrame, int]:
    """The trials of one budget (unless the budget is what varies): the budget at which ``factor``
    takes the most values, then the one with the most trials; and how many trials were left out."""
    if not len(frame) or factor in ("epochs", "data_train_subset") or frame["budget"].nunique() <= 1:
        return frame, 0
    groups = frame.groupby("budget")
    score = pd.DataFrame({"levels": groups[factor].nunique(), "trials": groups.size()})
    chosen = score.sort_values(["levels", "trials"], ascending=False).index[0]
    kept = frame[frame["budget"] == chosen]
    return kept, len(frame) - len(kept)


def controlled(grid: pd.DataFrame, factor: str) -> pd.DataFrame:
    """The grid trials that compare ``factor`` with everything else held fixed.

    Trials are grouped by the other varied hyperparameters; a group counts when ``factor`` takes
    several values in it, and only groups with the most common set of values are kept. Two
    separate grids in one experiment (dropout at 12 epochs, learning rate at 3) thus never make a
    comparison that no grid ran.
    """
    if not len(grid):
        return grid
    others = [v for v in varied(grid) if v != factor]
    if not others:
        return grid if grid[factor].astype(str).nunique() > 1 else grid.iloc[0:0]
    cell = grid[others].map(str).agg("|".join, axis=1)  # map(str): astype(str) keeps NaN in pandas 3
    levels = grid.groupby(cell)[factor].agg(lambda s: frozenset(s.astype(str)))
    levels = levels[levels.map(len) >= 2]
    if levels.empty:
        return grid.iloc[0:0]
    common = levels.value_counts().index[0]
    return grid[cell.isin(levels[levels == common].index)]


def _label(name: str) -> str:
    return f"{name} (log scale)" if name in LOG_SCALE else name


def factor_figure(runs: pd.DataFrame, factor: str) -> plt.Figure | None:
    """Validation accuracy against ``factor`` (``None`` when no grid or search compares it).

    Grid trials: mean and 95% CI over seeds, a line per ``norm_type`` (when it varies and is not
    the factor); each seed's accuracy is first averaged over the other varied hyperparameters, so
    the interval is over seeds. Only trials of :func:`controlled` comparisons and of one budget are
    used. Sweep trials: every trial a point plus binned means. With both, the grid is drawn (a
    controlled comparison) and the sweep trials are left to the scatter and the table.
    """
    finished = runs[runs["status"] == tracking.FINISHED]
    grid = controlled(finished[finished["source"] == "grid"], factor)
    use_grid = len(grid) > 0
    data = grid if use_grid else finished[finished["source"] == "sweep"]
    if data[factor].astype(str).nunique() < 2:
        return None
    data, left_out = _same_budget(data, factor)
    hue = "norm_type" if factor != "norm_type" and data["norm_type"].nunique() > 1 else None
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


def top_configs(runs: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Configurations aggregated over seeds, ranked within each budget (best ``top`` per budget).

    One row per configuration (every hyperparameter but the seed, the same data): ``n`` seeds
    that finished, ``failed`` seeds, the mean and 95% t-interval of validation accuracy in %,
    ``budget`` (training images x epochs), ``train_subset``/``val_subset`` (empty = all),
    ``recalibrate_bn``, then every hyperparameter and the run ids. Rows of one budget are ranked
    by mean (``rank_in_budget``); budgets are listed largest first and are not compared.
    """
    names = [n for n in hyperparameters() if n in runs]
    data_cols = [c for c in DATA_COLUMNS if c in runs]
    keys = [*names, *data_cols, "budget", "train_images"]
    frame = runs.copy()
    frame[keys] = frame[keys].astype(str)  # group on text: NaN (= all data) and lists group safely
    rows = []
    for _, group in frame.groupby(keys, sort=False, dropna=False):
        first = runs.loc[group.index[0]]
        values = group["val_accuracy"].dropna()
        mean, low, high = mean_ci(values.tolist())
        subset = first.get("data_train_subset")
        val_subset = first.get("data_val_subset")
        rows.append(
            {
                "budget": int(first["budget"]),
                "train_images": int(first["train_images"]),
                "epochs": int(first["epochs"]),
                "n": len(values),
                "failed": len(group) - len(values),
                "mean_val_acc_pct": mean * 100,
                "ci_low_pct": max(low, 0.0) * 100 if low == low else low,  # accuracy stays in 0-100%
                "ci_high_pct": min(high, 1.0) * 100 if high == high else high,
            }
            | _best_epoch_columns(group)
            | {
                "recalibrate_bn": bool(first.get("recalibrate_bn", False)),
                "train_subset": "" if subset is None or subset != subset else int(subset),
                "val_subset": "" if val_subset is None or val_subset != val_subset else int(val_subset),
                "seeds": ",".join(str(int(s)) for s in sorted(group["seed"].astype(float))),
                "source": ",".join(sorted(group["source"].unique())),
                "experiments": ",".join(sorted(group["experiment"].unique())),
            }
            | {n: first[n] for n in names if n not in ("epochs", "recalibrate_bn")}
            | {"run_ids": ",".join(group["run_id"])}
        )
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


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}%"


def write_report(
    experiments: str | Sequence[str], out_dir: str | Path, top: int = 10, ui_base: str | None = None
) -> Path:
    """Write the figures, ``top_runs.csv`` and ``report.md`` for ``experiments`` into ``out_dir``.

    ``report.md`` opens with the study log (:func:`study_log`), then the checks (boundary warnings,
    failed trials per value), the isolation plot of a tuned study (``isolation.png``), the validation
    curves (``validation_curves.png``), ``acc_vs_<factor>.png`` for every hyperparameter that varies,
    ``lr_weight_decay_scatter.png``, ``hyperparameter_importance.png`` (8 or more finished search
    trials) and the best configurations (``top_runs.csv``). Returns the path of ``report.md``.
    """
    names = [experiments] if isinstance(experiments, str) else list(experiments)
    runs = trial_runs(names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    histories = epoch_histories(runs)
    runs = with_best_epoch(runs, histories)
    best = top_configs(runs, top)
    best.to_csv(out / "top_runs.csv", index=False)
    lines = [f"# Report: {', '.join(names)}", "", *study_log(runs, names, best), *_overview(runs)]
    lines += _checks_section(runs, names)
    lines += _isolation_section(runs, out)
    lines += _curves_section(runs, histories, out)
    lines += _factor_section(runs, out)
    lines += _figure_section(
        "Learning rate and weight decay",
        "lr_weight_decay_scatter",
        scatter_figure(runs),
        out,
        "Each point is one trial, colour = validation accuracy; the ringed point is the best trial.",
    )
    lines += _importance_section(runs, out)
    lines += _top_section(best, varied(runs), top)
    links = [f"- {name}: {runs_url(name, ui_base)}" for name in names]
    lines += ["## In the MLflow UI", "", "Start it with `make ui`, then open:", "", *links, ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _figure_section(heading: str, name: str, fig: plt.Figure, out: Path, caption: str) -> list[str]:
    plots.save_figure(fig, name, caption, folder=out)
    plt.close(fig)
    return [f"## {heading}", "", f"![{name}]({name}.png)", "", f"*{caption}*", ""]


def _overview(runs: pd.DataFrame) -> list[str]:
    finished = runs[runs["status"] == tracking.FINISHED]
    lines = [
        "## The runs",
        "",
        f"Store: `{tracking.tracking_uri()}`. {len(finished)} finished and {len(runs) - len(finished)} failed "
        f"trial runs ({', '.join(f'{n} {s}' for s, n in runs['source'].value_counts().items())}); "
        f"{budget_label(runs)}.",
        "",
        "Validation accuracy in %. Configurations are compared only at equal budget (training images × epochs) "
        "and on the same validation data; a grid gives a mean and a 95% CI over seeds, a search gives points.",
        "",
    ]
    versions = runs["tag.code_version"].nunique() if "tag.code_version" in runs else 1
    if versions > 1:
        note = f"Note: these runs come from {versions} versions of the training code; "
        lines += [note + "configurations of different versions are listed separately.", ""]
    return lines


def _factor_section(runs: pd.DataFrame, out: Path) -> list[str]:
    finished = runs[runs["status"] == tracking.FINISHED]
    factors = varied(runs)
    lines = ["## Accuracy per hyperparameter", ""]
    if not factors:
        lines += ["No hyperparameter varies among the finished trials: there is nothing to plot against.", ""]
    skipped = []
    for factor in factors:
        fig = factor_figure(runs, factor)
        if fig is None:
            skipped.append(factor)
            continue
        caption = f"Validation accuracy against {factor}. " + (
            "Grid: mean ± 95% CI over seeds, everything else fixed."
            if len(controlled(finished[finished["source"] == "grid"], factor))
            else "Search: each point is one trial, black = mean per bin; other settings vary too."
        )
        name = f"acc_vs_{factor}"
        plots.save_figure(fig, name, caption, folder=out)
        plt.close(fig)
        lines += [f"![{name}]({name}.png)", "", f"*{caption}*", ""]
    if skipped:
        lines += [
            f"No figure for {', '.join(skipped)}: it varies only between separate grids, never with "
            "everything else fixed, so a plot would compare different experiments.",
            "",
        ]
    return lines


def _importance_section(runs: pd.DataFrame, out: Path) -> list[str]:
    search = runs[(runs["status"] == tracking.FINISHED) & (runs["source"] == "sweep")]
    if len(search) < 8:
        return []
    table = importance_table(search)
    if not len(table):
        return []
    fig = plots.importance(table, budget=budget_label(search))
    caption = "η² per hyperparameter over the search trials; pale bars are within what chance gives."
    return _figure_section("Hyperparameter importance (search)", "hyperparameter_importance", fig, out, caption)


def _top_section(best: pd.DataFrame, factors: list[str], top: int) -> list[str]:
    lines = ["## Best configurations per budget", "", "Full table: [top_runs.csv](top_runs.csv).", ""]
    lines += [
        "`mean_val_acc_pct` scores each trial at its last epoch; `best_epoch_val_acc_pct` at the epoch of its "
        "highest validation accuracy (`best_epoch`, median over seeds). The best epoch is chosen on the same "
        "validation data it is scored on, so it reads optimistic: it says where to stop, not how good.",
        "",
    ]
    show = ["budget", "rank_in_budget", "n", "mean_val_acc_pct", "ci_low_pct", "ci_high_pct"]
    show += ["best_epoch", "best_epoch_val_acc_pct"]
    show = [c for c in show if c in best]
    show += [f for f in factors if f in best and f not in show]
    if len(best):
        lines += [_markdown_table(best[show].head(3 * top)), ""]
    return lines


def _checks_section(runs: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """Boundary warnings (grids: the span of their values; sweeps: their searched ranges) and the share
    of failed trials per hyperparameter value."""
    lines = ["## Checks before reading the results", ""]
    sweeps = runs[runs["source"] == "sweep"]
    grids = runs[runs["source"] == "grid"]
    warnings = boundary_warnings(grids) if len(grids) else []
    warnings += boundary_warnings(sweeps, searched_ranges(names)) if len(sweeps) else []
    lines += [
        "**Search-space boundaries** (the best configuration in the outer 10% of a searched range, "
        "log-scaled for log ranges):",
        "",
    ]
    lines += [f"- ⚠ {w}" for w in warnings] or ["- none: every best value lies inside its range."]
    shares = failure_shares(runs)
    failed = shares[shares["failed"] > 0] if len(shares) else shares
    lines += ["", "**Failed trials per hyperparameter value** (diverged, impossible or crashed):", ""]
    if len(failed):
        lines += [_markdown_table(shares[shares["hyperparameter"].isin(failed["hyperparameter"])]), ""]
    else:
        lines += [f"- none of the {len(runs)} trials failed.", ""]
    return lines


def _isolation_section(runs: pd.DataFrame, out: Path) -> list[str]:
    arms = tuned_arms(runs)
    if arms.empty:
        return []
    factor = str(runs["tag.role_scientific"].dropna().iloc[0]).split(",")[0]
    again = runs[(runs.get("tag.phase") == "remeasure") & (runs["status"] == tracking.FINISHED)]
    fig = plots.isolation(arms, factor, budget=budget_label(again))
    caption = (
        f"Each {factor} at its own best nuisance setting (chosen on the tuning seeds, scored by the "
        f"'{arms['rule'].iloc[0]}' rule) and re-measured on fresh seeds, next to the fixed-nuisance line."
    )
    lines = _figure_section("Isolation plot (nuisance tuned per arm)", "isolation", fig, out, caption)
    table = arms.assign(**{c: arms[c] * 100 for c in ("mean", "ci_low", "ci_high")})
    return lines + [_markdown_table(table.drop(columns=["rule"])), ""]


def _curves_section(runs: pd.DataFrame, histories: pd.DataFrame, out: Path) -> list[str]:
    if histories.empty:
        return []
    fig = curves_figure(runs, histories)
    caption = (
        "Every trial's validation accuracy per epoch (grey), the best five in colour, each best epoch marked. "
        "Still rising at the end: more epochs would help; a peak and a fall: overfitting."
    )
    return _figure_section("Validation curves", "validation_curves", fig, out, caption)


def study_log(runs: pd.DataFrame, names: Sequence[str], best: pd.DataFrame | None = None) -> list[str]:
    """The study log (markdown lines): per experiment its question, the role of each hyperparameter,
    trials finished/failed, the checkpoint rule, the best validation score with its interval, the
    budget, and the command and git commit that reproduce it (tags the CLI records)."""
    lines = ["## Study log", ""]
    for name in names:
        part = runs[runs["experiment"] == name]
        lines += [f"**{name}**", "", *_log_entries(part, best), ""]
    return lines


def _tag_values(frame: pd.DataFrame, tag: str) -> list[str]:
    column = f"tag.{tag}"
    return sorted(frame[column].dropna().astype(str).unique()) if column in frame else []


def _log_entries(part: pd.DataFrame, best: pd.DataFrame | None) -> list[str]:
    done = part[part["status"] == tracking.FINISHED]
    question = _tag_values(part, "question")
    entries = [f"- Question: {' / '.join(question) if question else 'not recorded (give --question next time)'}"]
    entries.append(f"- Roles: {_roles_text(part)}")
    phases = part["tag.phase"].fillna("—").value_counts().to_dict() if "tag.phase" in part else {}
    detail = f" (by phase: {', '.join(f'{k} {v}' for k, v in phases.items())})" if phases else ""
    entries.append(f"- Trials: {len(done)} finished, {len(part) - len(done)} failed{detail}")
    rules = _tag_values(part, "checkpoint_rule") or ["last"]
    entries.append(f"- Checkpoint rule: {', '.join(rules)} epoch (a trial's score is its validation accuracy there)")
    entries.append(f"- Best validation score: {_best_text(part, best)}")
    entries.append(f"- Budget per trial: {budget_label(part).removeprefix('budget per trial: ')}")
    commands = _tag_values(part, "study_command")
    commits = _tag_values(part, "git_commit")
    if commands:
        entries += [f"- Reproduce: `{c}`" for c in commands]
    else:
        entries.append("- Reproduce: no command recorded (these runs were not started by `python -m lib`)")
    entries.append(f"- Git commit: {', '.join(f'`{c}`' for c in commits) or 'unknown'}")
    return entries


def _roles_text(part: pd.DataFrame) -> str:
    declared = {role: _tag_values(part, f"role_{role}") for role in ("scientific", "nuisance", "fixed")}
    if any(declared.values()):
        return "; ".join(f"{role}: {', '.join(values) or '—'}" for role, values in declared.items())
    names = varied(part)
    return (
        f"not declared; varied: {', '.join(names) or 'nothing'}; everything else fixed at one value, a caveat on "
        "any conclusion (declare roles with grid --factor/--tune or sweep --role)"
    )


def _best_text(part: pd.DataFrame, best: pd.DataFrame | None) -> str:
    arms = tuned_arms(part)
    if len(arms):
        row = arms[arms["kind"] == "tuned"].sort_values("mean", ascending=False).iloc[0]
        factor = [c for c in arms.columns if c not in ("kind", "mean", "ci_low", "ci_high", "n", "nuisance", "rule")]
        arm = ", ".join(f"{c}={_short(row[c])}" for c in factor)
        return (
            f"{row['mean'] * 100:.2f}% (95% CI {row['ci_low'] * 100:.2f}–{row['ci_high'] * 100:.2f}, "
            f"{row['n']} fresh seeds) for {arm} at {row['nuisance']} (re-measured, not the tuning score)"
        )
    table = top_configs(part, 1)
    if not len(table):
        return "none finished"
    row = table.iloc[0]
    interval = (
        f" (95% CI {row['ci_low_pct']:.2f}–{row['ci_high_pct']:.2f}, {row['n']} seeds)"
        if row["ci_low_pct"] == row["ci_low_pct"]
        else f" ({row['n']} seed{'s' if row['n'] != 1 else ''}, no interval)"
    )
    changed = ", ".join(f"{n}={_short(row[n])}" for n in varied(part) if n in row)
    return f"{row['mean_val_acc_pct']:.2f}%{interval}" + (f" at {changed}" if changed else "")


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            if value != value:
                return ""
            return f"{value:.4g}" if abs(value) < 0.01 or value.is_integer() else f"{value:.2f}"
        return str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# ---- MLflow UI links ------------------------------------------------------------------------------


def ui_base() -> str:
    """Where the MLflow UI is: ``HYPERTUNE_UI_URL``, else a tracking server's own URL, else ``make ui``'s."""
    if os.environ.get("HYPERTUNE_UI_URL"):
        return os.environ["HYPERTUNE_UI_URL"].rstrip("/")
    uri = tracking.tracking_uri()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return DEFAULT_UI


def ui_columns(experiment: str) -> list[str]:
    """The runs-table columns worth seeing first: the varied hyperparameters, seed, val_accuracy."""
    try:
        runs = trial_runs(experiment)
    except ReportError:
        return ["metrics.`val_accuracy`"]
    names = [n for n in varied(runs) if n in runs]
    cols = [f"params.`{n}`" for n in names]
    if runs["seed"].nunique() > 1 and "seed" not in names:
        cols.append("params.`seed`")
    metrics = ["val_accuracy_pct", "val_accuracy"] if "val_accuracy_pct" in runs else ["val_accuracy"]
    return cols + [f"metrics.`{m}`" for m in metrics] + ["tags.`hypothesis`"] * ("tag.hypothesis" in runs)


def share_view(experiment: str, columns: Sequence[str] | None = None) -> str:
    """Store a saved view of the runs table (columns, best first) on the experiment; returns its key.

    MLflow 3's UI reads ``?viewStateShareKey=KEY`` from the URL and restores the view stored in the
    experiment tag ``mlflow.sharedViewState.KEY`` (what its own "Share" button writes): selected
    columns and sort order. Run names are cut to fit; hovering shows the full name.
    """
    exp_id = tracking.find_experiment_id(experiment)
    if exp_id is None:
        raise ReportError(f"unknown experiment '{experiment}'; the store has: {', '.join(experiment_names())}")
    state = {
        "searchFilter": "",
        "orderByKey": "metrics.`val_accuracy`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": ["attributes.`Run Name`", *(columns if columns is not None else ui_columns(experiment))],
        "runListHidden": False,
        "viewMaximized": False,
        "isAccordionReordered": False,
        "groupBy": None,
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
    }
    tracking.set_experiment_tag(exp_id, f"mlflow.sharedViewState.{SHARE_KEY}", json.dumps(state))
    return SHARE_KEY


def runs_url(experiment: str, base: str | None = None, view: bool = True) -> str:
    """Link that opens ``experiment``'s runs table in MLflow's model-training mode.

    ``workflowType=machine_learning`` skips the GenAI "Traces" overview MLflow 3 opens by default.
    With ``view=True`` the link also carries a saved view (:func:`share_view`): the varied
    hyperparameters and ``val_accuracy`` as columns, best run first.
    """
    exp_id = tracking.find_experiment_id(experiment)
    if exp_id is None:
        raise ReportError(f"unknown experiment '{experiment}'; the store has: {', '.join(experiment_names())}")
    url = f"{(base or ui_base()).rstrip('/')}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
    if view:
        with contextlib.suppress(Exception):  # a read-only store still gets the plain link
            url += f"&viewStateShareKey={share_view(experiment)}"
    return url


def ui_links(experiments: Iterable[str] | None = None, base: str | None = None) -> dict[str, str]:
    """``{experiment: runs_url}`` for the given experiments (default: all in the store)."""
    return {name: runs_url(name, base) for name in (experiments if experiments is not None else experiment_names())}


# ---- checkpoints, curves, boundaries, failures, roles and the study log --------------------------

TOP_CURVES = 5  # trials highlighted in the validation-curves figure
EDGE = 0.10  # the outer share of a searched range that counts as "at the boundary"


def epoch_histories(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch validation accuracy of the finished trials: columns run_id, epoch, val_accuracy."""
    frames = []
    for run_id in runs.loc[runs["status"] == tracking.FINISHED, "run_id"]:
        history = tracking.metric_history(run_id, ("val_accuracy",)).reset_index()
        if len(history):
            frames.append(history.assign(run_id=run_id))
    if not frames:
        return pd.DataFrame(columns=["run_id", "epoch", "val_accuracy"])
    return pd.concat(frames, ignore_index=True).dropna(subset=["val_accuracy"])


def with_best_epoch(runs: pd.DataFrame, histories: pd.DataFrame | None = None) -> pd.DataFrame:
    """``runs`` with ``best_epoch`` and ``best_val_accuracy`` (the epoch of the highest validation
    accuracy and that accuracy): the logged metrics where a run has them, else read from its curve."""
    frame = runs.copy()
    for column in ("best_epoch", "best_val_accuracy"):
        if column not in frame:
            frame[column] = np.nan
    missing = frame["best_val_accuracy"].isna() & (frame["status"] == tracking.FINISHED)
    if missing.any():
        curves = epoch_histories(frame[missing]) if histories is None else histories
        if len(curves):
            best = curves.loc[curves.groupby("run_id")["val_accuracy"].idxmax()].set_index("run_id")
            ids = frame.loc[missing, "run_id"]
            frame.loc[missing, "best_epoch"] = ids.map(best["epoch"]).to_numpy(dtype=float)
            frame.loc[missing, "best_val_accuracy"] = ids.map(best["val_accuracy"]).to_numpy(dtype=float)
    return frame


def curves_figure(runs: pd.DataFrame, histories: pd.DataFrame, top: int = TOP_CURVES) -> plt.Figure:
    """Validation accuracy per epoch of every finished trial, the best ``top`` (by last-epoch score)
    in colour, each curve's best epoch marked."""
    done = runs[(runs["status"] == tracking.FINISHED) & runs["run_id"].isin(histories["run_id"])]
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


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def searched_ranges(names: Sequence[str]) -> dict[str, tuple[float, float, bool]]:
    """``{hyperparameter: (low, high, log)}`` of the numeric ranges the sweeps of ``names`` searched
    (read from each sweep parent's ``space`` param)."""
    import ast

    frame = tracking.runs_frame(list(names), status=None)
    ranges: dict[str, tuple[float, float, bool]] = {}
    if "space" not in frame or "tag.sweep_parent" not in frame:
        return ranges
    for text in frame.loc[frame["tag.sweep_parent"].notna(), "space"].dropna():
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
            for side, near in (("lower", lambda p: p <= EDGE), ("upper", lambda p: p >= 1 - EDGE)):
                if near(places[0]):
                    count = sum(near(p) for p in places)
                    warnings.append(
                        f"{label}the best configuration's {name} = {best[name].iloc[0]:.4g} lies in the {side} 10% "
                        f"of the searched range [{low:.4g}, {high:.4g}]{' (log scale)' if log else ''} "
                        f"({count} of the best {len(places)}): widen the range "
                        f"{'below' if side == 'lower' else 'above'} it before trusting the comparison"
                    )
    return warnings


def _boundary_groups(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """What one boundary check looks at: each arm of a tuned study (its tuning runs, its nuisance
    names), else all finished trials and every varied hyperparameter."""
    done = runs[runs["status"] == tracking.FINISHED]
    if "tag.phase" in done and (done["tag.phase"] == "tune").any():
        tune = done[done["tag.phase"] == "tune"]
        nuisance = str(tune["tag.role_nuisance"].dropna().iloc[0]).split(",")
        scientific = str(tune["tag.role_scientific"].dropna().iloc[0]).split(",")
        groups = []
        for key, part in tune.groupby(scientific):
            values = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{n}={_short(v)}" for n, v in zip(scientific, values, strict=True)) + ": "
            groups.append((label, part, nuisance))
        return groups
    return [("", done, varied(done))]


def failure_shares(runs: pd.DataFrame, bins: int = 4) -> pd.DataFrame:
    """The share of failed trials per value of each varied hyperparameter (numbers with many values in
    ``bins`` equal-count bins): columns hyperparameter, value, trials, failed, failed_pct."""
    rows = []
    for name in [
        n for n in [*hyperparameters(), "data_train_subset"] if n in runs and runs[n].astype(str).nunique() > 1
    ]:
        values = runs[name]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and values.nunique() > bins:
            values = pd.qcut(values, bins, duplicates="drop").astype(str)
        for value, group in runs.groupby(values.astype(str), sort=True):
            failed = int((group["status"] != tracking.FINISHED).sum())
            rows.append({"hyperparameter": name, "value": value, "trials": len(group), "failed": failed})
    frame = pd.DataFrame(rows, columns=["hyperparameter", "value", "trials", "failed"])
    frame["failed_pct"] = (100 * frame["failed"] / frame["trials"]).round(1) if len(frame) else []
    return frame


def tuned_arms(runs: pd.DataFrame) -> pd.DataFrame:
    """The re-measured arms of a tuned study (``grid --tune``) in these runs: one row per scientific value
    and kind (``tuned``: the arm's winner on the tuning seeds, ``fixed``: the base's nuisance values),
    with the mean and 95% CI over the fresh seeds and the winner's nuisance values. Empty without one."""
    done = runs[runs["status"] == tracking.FINISHED]
    if "tag.phase" not in done or not (done["tag.phase"] == "remeasure").any():
        return pd.DataFrame()
    done = _latest_study(done)
    tune, again = done[done["tag.phase"] == "tune"], done[done["tag.phase"] == "remeasure"]
    scientific = str(again["tag.role_scientific"].dropna().iloc[0]).split(",")
    nuisance = str(again["tag.role_nuisance"].dropna().iloc[0]).split(",")
    rule = str(again["tag.checkpoint_rule"].dropna().iloc[0]) if "tag.checkpoint_rule" in again else "last"
    score = "best_val_accuracy" if rule == "best_epoch" else "val_accuracy"
    fixed = json.loads(str(again["tag.fixed_nuisance"].dropna().iloc[0])) if "tag.fixed_nuisance" in again else {}
    rows = []
    for key, arm in again.groupby(scientific):
        values = dict(zip(scientific, key if isinstance(key, tuple) else (key,), strict=True))
        mine = tune[np.logical_and.reduce([tune[n] == v for n, v in values.items()])] if len(tune) else tune
        grouped = mine.groupby(nuisance)[score] if len(mine) else None
        means = grouped.mean()[grouped.count() == grouped.count().max()] if grouped is not None else pd.Series()
        winner = dict(zip(nuisance, np.atleast_1d(means.idxmax()), strict=True)) if len(means) else {}
        for kind, wanted in (("tuned", winner), ("fixed", fixed)):
            chosen = _select(arm, wanted)
            mean, low, high = mean_ci(chosen[score].tolist())
            setting = ", ".join(f"{n}={_short(_number(v))}" for n, v in wanted.items())
            rows.append(values | {"kind": kind, "mean": mean, "ci_low": low, "ci_high": high, "n": len(chosen)})
            rows[-1] |= {"nuisance": setting, "rule": rule}
    return pd.DataFrame(rows)


def _latest_study(done: pd.DataFrame) -> pd.DataFrame:
    """The runs of the most recent tuned study (``tuning_id``) under its latest training code: an
    earlier design, or the same one under older code, is a different study."""
    if "tag.tuning_id" not in done or done["tag.tuning_id"].isna().all():
        return done
    tagged = done[done["tag.tuning_id"].notna()].sort_values("start_time")
    part = tagged[tagged["tag.tuning_id"] == tagged["tag.tuning_id"].iloc[-1]]
    if "tag.code_version" in part and part["tag.code_version"].notna().any():
        part = part[part["tag.code_version"] == part["tag.code_version"].dropna().iloc[-1]]
    return part


def _number(value: Any) -> Any:
    with contextlib.suppress(TypeError, ValueError):
        return float(value)
    return value


def _select(frame: pd.DataFrame, wanted: dict[str, Any]) -> pd.DataFrame:
    """The rows of ``frame`` with the ``wanted`` values (numbers compared with a tolerance)."""
    mask = pd.Series(True, index=frame.index)
    for name, value in wanted.items():
        number = _number(value)
        if isinstance(number, float) and pd.api.types.is_numeric_dtype(frame[name]):
            mask &= np.isclose(frame[name].astype(float), number)
        else:
            mask &= frame[name].astype(str) == str(value)
    return frame[mask]
