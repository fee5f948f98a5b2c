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

from lib import plots, tracking
from lib.config import TrialConfig
from lib.data import DEFAULT_VAL_SIZE, DataSpec
from lib.stats import eta_squared, mean_ci

FULL_TRAIN_FILE = 60_000  # Fashion-MNIST's training file; the validation split is carved out of it
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
    found = tracking.client().search_experiments(max_results=1000)
    return sorted(e.name for e in found if e.name != "Default" or tracking.search_ids([e.experiment_id]))


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
    """Sizes of a data set's training and validation parts (Fashion-MNIST's without loading it)."""
    if dataset == "fashion_mnist" and val_size in (None, DEFAULT_VAL_SIZE):
        return FULL_TRAIN_FILE - DEFAULT_VAL_SIZE, DEFAULT_VAL_SIZE
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
    cell = grid[others].astype(str).agg("|".join, axis=1)
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
    table[["mean_val_acc_pct", "ci_low_pct", "ci_high_pct"]] = table[
        ["mean_val_acc_pct", "ci_low_pct", "ci_high_pct"]
    ].round(2)
    table.insert(0, "rank_in_budget", table.groupby("budget").cumcount() + 1)
    return table[table["rank_in_budget"] <= top].reset_index(drop=True)


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

    Files: ``acc_vs_<factor>.png`` for every hyperparameter that varies, ``lr_weight_decay_scatter.png``,
    ``hyperparameter_importance.png`` when there are at least 8 finished search trials, ``top_runs.csv``
    and ``report.md`` embedding them. Returns the path of ``report.md``.
    """
    names = [experiments] if isinstance(experiments, str) else list(experiments)
    runs = trial_runs(names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    finished = runs[runs["status"] == tracking.FINISHED]
    factors = varied(runs)
    lines = [
        f"# Report: {', '.join(names)}",
        "",
        f"Store: `{tracking.tracking_uri()}`. {len(finished)} finished and {len(runs) - len(finished)} failed "
        f"trial runs ({', '.join(f'{n} {s}' for s, n in runs['source'].value_counts().items())}); "
        f"{budget_label(runs)}.",
        "",
        "Validation accuracy in %. Configurations are compared only at equal budget (training images × epochs) "
        "and on the same validation data; a grid gives a mean and a 95% CI over seeds, a search gives points.",
        "",
    ]
    if runs["tag.code_version"].nunique() > 1 if "tag.code_version" in runs else False:
        lines += [
            f"Note: these runs come from {runs['tag.code_version'].nunique()} versions of the training code; "
            "configurations of different versions are listed separately.",
            "",
        ]
    lines += ["## Accuracy per hyperparameter", ""]
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
    fig = scatter_figure(runs)
    caption = "Each point is one trial, colour = validation accuracy; the ringed point is the best trial."
    plots.save_figure(fig, "lr_weight_decay_scatter", caption, folder=out)
    plt.close(fig)
    lines += ["## Learning rate and weight decay", "", "![lr_weight_decay_scatter](lr_weight_decay_scatter.png)", ""]
    lines += [f"*{caption}*", ""]
    search = finished[finished["source"] == "sweep"]
    if len(search) >= 8:
        table = importance_table(search)
        if len(table):
            fig = plots.importance(table, budget=budget_label(search))
            caption = "η² per hyperparameter over the search trials; pale bars are within what chance gives."
            plots.save_figure(fig, "hyperparameter_importance", caption, folder=out)
            plt.close(fig)
            lines += ["## Hyperparameter importance (search)", "", "![importance](hyperparameter_importance.png)", ""]
            lines += [f"*{caption}*", ""]
    best = top_configs(runs, top)
    best.to_csv(out / "top_runs.csv", index=False)
    lines += ["## Best configurations per budget", "", "Full table: [top_runs.csv](top_runs.csv).", ""]
    show = [c for c in ["budget", "rank_in_budget", "n", "mean_val_acc_pct", "ci_low_pct", "ci_high_pct"] if c in best]
    show += [f for f in factors if f in best and f not in show]
    if len(best):
        lines += [_markdown_table(best[show].head(3 * top)), ""]
    links = [f"- {name}: {runs_url(name, ui_base)}" for name in names]
    lines += ["## In the MLflow UI", "", "Start it with `make ui`, then open:", "", *links, ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


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
    exp = tracking.client().get_experiment_by_name(experiment)
    if exp is None:
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
    tracking.client().set_experiment_tag(exp.experiment_id, f"mlflow.sharedViewState.{SHARE_KEY}", json.dumps(state))
    return SHARE_KEY


def runs_url(experiment: str, base: str | None = None, view: bool = True) -> str:
    """Link that opens ``experiment``'s runs table in MLflow's model-training mode.

    ``workflowType=machine_learning`` skips the GenAI "Traces" overview MLflow 3 opens by default.
    With ``view=True`` the link also carries a saved view (:func:`share_view`): the varied
    hyperparameters and ``val_accuracy`` as columns, best run first.
    """
    exp = tracking.client().get_experiment_by_name(experiment)
    if exp is None:
        raise ReportError(f"unknown experiment '{experiment}'; the store has: {', '.join(experiment_names())}")
    url = f"{(base or ui_base()).rstrip('/')}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
    if view:
        with contextlib.suppress(Exception):  # a read-only store still gets the plain link
            url += f"&viewStateShareKey={share_view(experiment)}"
    return url


def ui_links(experiments: Iterable[str] | None = None, base: str | None = None) -> dict[str, str]:
    """``{experiment: runs_url}`` for the given experiments (default: all in the store)."""
    return {name: runs_url(name, base) for name in (experiments if experiments is not None else experiment_names())}
