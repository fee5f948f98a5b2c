"""The study's figures: each has a title, labelled axes, a legend where needed and a caption.

Every function returns a matplotlib ``Figure``; :func:`save_figure` writes it to ``figures/`` and
logs it as an artifact of the MLflow run that produced it. The notebooks show the same figure
right under the code that makes it. Every figure of results takes ``budget``: one line under the
title that says what each point cost (training images x epochs, validation images), built by
:func:`lib.report.budget_label`; accuracy is shown in percent.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, NullFormatter

from lib import tracking
from lib.paths import figures_dir

sns.set_theme(style="whitegrid", context="notebook")


def save_figure(
    fig: plt.Figure, name: str, caption: str, run_id: str | None = None, folder: Path | None = None
) -> Path:
    """Save ``fig`` as ``<folder>/<name>.png`` (default ``figures/``) with its caption underneath, and
    log it to MLflow when ``run_id`` is given.

    The caption goes below everything already drawn (rotated tick labels included), so it never
    overlaps the axes.
    """
    fig.canvas.draw()
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, everything drawn so far
    fig.text(
        max(box.x0 / fig.get_figwidth(), 0.0),
        box.y0 / fig.get_figheight() - 0.03,
        caption,
        ha="left",
        va="top",
        fontsize=9,
        style="italic",
        wrap=True,
    )
    path = (folder or figures_dir()) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _remove_stale_table(path)
    if run_id:
        tracking.log_artifact(run_id, path)
    return path


_STARTED = time.time()  # this process's start, near enough: a table older than it was written by an earlier run


def _remove_stale_table(figure: Path) -> None:
    """A ``<name>.csv`` beside a figure just saved that this process did not write is an earlier run's table of
    what the figure used to show: removed, with a line saying so, instead of left to contradict the figure."""
    table = figure.with_suffix(".csv")
    if table.exists() and table.stat().st_mtime < _STARTED:
        table.unlink()
        print(f"removed {table}: an earlier run's table that no longer matches the new {figure.name}")


def class_examples(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    per_class: int = 6,
    title: str = "Fashion-MNIST: examples per class (training split)",
) -> plt.Figure:
    """A grid of ``per_class`` training images per class (grey as ink on paper, RGB as it is)."""
    fig, axes = plt.subplots(
        len(class_names), per_class, figsize=(per_class * 0.9, len(class_names) * 0.95), squeeze=False
    )
    for cls, name in enumerate(class_names):
        picks = np.flatnonzero(labels == cls)[:per_class]
        for col, idx in enumerate(picks):
            ax = axes[cls, col]
            if images.shape[1] == 3:
                ax.imshow(np.clip(images[idx].transpose(1, 2, 0), 0.0, 1.0))
            else:
                ax.imshow(images[idx, 0], cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    return fig


def subtitle(ax: plt.Axes, title: str, budget: str | None) -> None:
    """``title`` on ``ax`` with the budget line in small grey type right under it."""
    if not budget:
        ax.set_title(title)
        return
    ax.set_title(title, pad=18)
    ax.text(0.5, 1.015, budget, transform=ax.transAxes, ha="center", va="bottom", fontsize=8, color="0.35")


def suptitle(fig: plt.Figure, title: str, budget: str | None) -> None:
    """``title`` over the whole figure with the budget line under it."""
    fig.suptitle(f"{title}\n{budget}" if budget else title, fontsize=12)


def _finished(fig: plt.Figure, title: str | None, budget: str | None) -> plt.Figure:
    """A figure with its title and budget line (when ``title`` is given), laid out tight."""
    if title:
        suptitle(fig, title, budget)
    fig.tight_layout()
    return fig


def balance_summary(counts: pd.DataFrame) -> str:
    """One true sentence about ``counts`` (columns class, split, images), e.g. for a caption."""
    parts = []
    for split, group in counts.groupby("split", sort=False):
        low, high, total = int(group["images"].min()), int(group["images"].max()), int(group["images"].sum())
        if low == high:
            parts.append(f"{split}: {total:,} images, {low:,} per class ({100 * low / total:.1f}% each)")
        else:
            share = f"{100 * low / total:.1f}-{100 * high / total:.1f}%"
            parts.append(f"{split}: {total:,} images, {low:,} to {high:,} per class ({share})")
    return "; ".join(parts)


def class_balance(counts: pd.DataFrame) -> plt.Figure:
    """Share of each class in each split (%), with a line at the perfectly balanced share.

    ``counts``: columns class, split, images. Shares make splits of different sizes comparable
    (5,500 vs 500 images per class); the subtitle gives the counts.
    """
    shares = counts.assign(share=counts["images"] / counts.groupby("split")["images"].transform("sum") * 100)
    n_classes = counts["class"].nunique()
    fig, ax = plt.subplots(figsize=(9, 4))
    sns.barplot(data=shares, x="class", y="share", hue="split", ax=ax)
    ax.axhline(100 / n_classes, color="0.3", linestyle=":", label=f"balanced: {100 / n_classes:.0f}% each")
    subtitle(ax, "Class balance: share of each split per class", balance_summary(counts))
    ax.set(xlabel="class", ylabel="share of the split's images (%)")
    ax.tick_params(axis="x", rotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def learning_curves(histories: pd.DataFrame, budget: str | None = None) -> plt.Figure:
    """``histories``: columns seed, epoch, train_loss, val_loss, val_accuracy. One colour per seed in both
    panels (training loss solid, validation loss dashed), so three seeds are three colours, not six."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (seed, group) in enumerate(histories.groupby("seed")):
        colour = f"C{i % 10}"
        ax_loss.plot(group["epoch"], group["train_loss"], "-", color=colour, label=f"train, seed {seed}")
        ax_loss.plot(group["epoch"], group["val_loss"], "--", color=colour, label=f"validation, seed {seed}")
        ax_acc.plot(group["epoch"], group["val_accuracy"] * 100, "-o", ms=3, color=colour, label=f"seed {seed}")
    ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(title="Validation accuracy per epoch", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    return _finished(fig, "Baseline learning curves" if budget else None, budget)


def accuracy_vs(
    summary: pd.DataFrame,
    x: str,
    hue: str,
    title: str,
    xlabel: str,
    log_x: bool = False,
    value_label: str = "validation accuracy (%)",
    budget: str | None = None,
) -> plt.Figure:
    """Mean and 95% CI (from :func:`lib.stats.summarize`) of accuracy against ``x``, a line per ``hue``.

    ``hue=None`` draws one line. An integer ``x`` (number of blocks, batch size) gets one tick per
    level; a text ``x`` (optimizer, pool type) is drawn at evenly spaced positions.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if hue is None:
        summary, hue = summary.assign(_all="all"), "_all"
    categorical = not pd.api.types.is_numeric_dtype(summary[x]) or pd.api.types.is_bool_dtype(summary[x])
    levels = sorted(summary[x].unique(), key=str) if categorical else sorted(summary[x].unique())
    position = {level: i for i, level in enumerate(levels)}
    n_hues = summary[hue].nunique()
    for i, (level, group) in enumerate(summary.groupby(hue, sort=True)):
        group = group.sort_values(x)
        mean = group["mean"] * 100
        # an accuracy interval cannot leave [0, 100]: clip the t-interval there
        low = (group["mean"] - group["ci_low"].clip(lower=0.0)).fillna(0) * 100
        high = (group["ci_high"].clip(upper=1.0) - group["mean"]).fillna(0) * 100
        # text levels: dodge the lines a little so their error bars do not hide each other
        xs = group[x].map(position) + (i - (n_hues - 1) / 2) * 0.08 if categorical else group[x]
        shown = f"{level:g}" if isinstance(level, int | float) and not isinstance(level, bool) else level
        label = "all runs" if hue == "_all" else f"{hue}={shown}"
        style = "none" if categorical else "-"  # no line between unordered levels
        ax.errorbar(xs, mean, yerr=[low, high], marker="o", linestyle=style, capsize=4, label=label)
    if categorical:
        ax.set_xticks(range(len(levels)), [str(level) for level in levels])
        ax.set_xlim(-0.5, len(levels) - 0.5)
    elif log_x:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    elif len(levels) <= 8 or all(float(v).is_integer() for v in levels):  # a grid: a tick per level
        ax.set_xticks(levels, [f"{v:g}" for v in levels])
    subtitle(ax, title, budget)
    ax.set(xlabel=xlabel, ylabel=value_label)
    ax.legend(title="mean ± 95% CI (clipped to 0-100)", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    return fig


def lr_range(grid: pd.DataFrame, tolerance: float = 0.02, budget: str | None = None) -> plt.Figure:
    """Learning-rate range test per ``norm_type``: accuracy and the distance to the line's own best.

    ``grid``: one row per trial with ``lr``, ``norm_type``, ``seed``, ``val_accuracy`` (NaN for a
    failed trial) and ``status``. Left: mean and 95% CI over the seeds that finished; an empty
    marker where some seeds failed, an ``x`` on the bottom edge where all failed (nothing is
    filled in). Right: the mean's distance to the norm type's best mean in accuracy points, on an
    axis that shows the ``tolerance`` (2 points) the usable range is defined by.
    """
    from lib.stats import mean_ci

    frame = grid.copy()
    failed = frame["val_accuracy"].isna() | frame["status"].astype(str).str.lower().eq("failed")
    frame.loc[failed, "val_accuracy"] = np.nan
    fig, (ax_acc, ax_gap) = plt.subplots(1, 2, figsize=(12, 4.4))
    tol_pp = tolerance * 100
    lowest_gap = -3 * tol_pp
    for i, (norm, arm) in enumerate(frame.groupby("norm_type", sort=True)):
        colour = f"C{i}"
        rows = []
        for lr, group in arm.groupby("lr", sort=True):
            values = group["val_accuracy"].dropna().tolist()
            mean, low, high = mean_ci(values)
            rows.append({"lr": lr, "mean": mean, "low": low, "high": high, "n": len(group), "ok": len(values)})
        table = pd.DataFrame(rows)
        best = table["mean"].max()
        measured = table[table["ok"] > 0]
        ax_acc.plot(measured["lr"], measured["mean"] * 100, "-", color=colour, alpha=0.6)
        _lr_points(ax_acc, measured, colour)
        ax_acc.axhspan((best - tolerance) * 100, best * 100, color=colour, alpha=0.12)
        gap = (measured["mean"] - best) * 100
        ax_gap.plot(measured["lr"], gap.clip(lower=lowest_gap), "o-", color=colour, label=f"norm_type={norm}")
        for lr, value in zip(measured["lr"], gap, strict=True):
            if value < lowest_gap:
                ax_gap.annotate(f"{value:.0f}", (lr, lowest_gap), textcoords="offset points", xytext=(4, 4), fontsize=7)
        _lr_dead(ax_acc, ax_gap, table[table["ok"] == 0], colour, norm)
    _lr_axes(ax_acc, ax_gap, tol_pp, lowest_gap)
    return _finished(fig, "Learning-rate range test", budget)


def _lr_points(ax_acc: plt.Axes, measured: pd.DataFrame, colour: str) -> None:
    """Each learning rate's mean and CI (clipped to 0-100%: an accuracy cannot leave it, a t-interval over
    three seeds of a half-collapsed rate can); an empty marker and a note where some seeds failed."""
    for _, row in measured.iterrows():
        low = min(max(row["low"], 0.0), row["mean"]) if pd.notna(row["low"]) else row["mean"]
        high = max(min(row["high"], 1.0), row["mean"]) if pd.notna(row["high"]) else row["mean"]
        err = [[(row["mean"] - low) * 100], [(high - row["mean"]) * 100]]
        full = row["ok"] == row["n"]
        ax_acc.errorbar(
            row["lr"],
            row["mean"] * 100,
            yerr=err,
            fmt="o",
            color=colour,
            mfc=colour if full else "white",
            capsize=4,
        )
        if not full:
            ax_acc.annotate(
                f"{row['n'] - row['ok']:.0f}/{row['n']:.0f} failed",
                (row["lr"], row["mean"] * 100),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=7,
                color=colour,
            )


def _lr_dead(ax_acc: plt.Axes, ax_gap: plt.Axes, dead: pd.DataFrame, colour: str, norm: str) -> None:
    """An ``x`` on the bottom edge of both panels where every seed of a learning rate failed."""
    for ax in (ax_acc, ax_gap):
        ax.scatter(
            dead["lr"],
            [0.02] * len(dead),
            marker="x",
            s=60,
            color=colour,
            transform=ax.get_xaxis_transform(),
            label=f"all seeds failed ({norm})" if ax is ax_acc and len(dead) else None,
            clip_on=False,
        )


def _lr_axes(ax_acc: plt.Axes, ax_gap: plt.Axes, tol_pp: float, lowest_gap: float) -> None:
    ax_gap.axhspan(-tol_pp, 0, color="tab:green", alpha=0.12, label=f"usable: within {tol_pp:g} points of own best")
    ax_gap.axhline(-tol_pp, color="tab:green", linestyle="--")
    ax_gap.set_ylim(lowest_gap * 1.08, tol_pp * 0.5)
    for ax in (ax_acc, ax_gap):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("learning rate (log scale)")
    ax_acc.set(title="Validation accuracy (mean ± 95% CI over finished seeds)", ylabel="validation accuracy (%)")
    ax_acc.set_ylim(0, 100)  # an accuracy axis: an unclipped interval must not stretch it to -50%..150%
    ax_gap.set(
        title="Distance to the line's own best mean",
        ylabel="accuracy points vs own best (clipped)",
    )
    for ax in (ax_acc, ax_gap):
        if ax.get_legend_handles_labels()[0]:  # a smoke-sized grid may draw no labelled line: no empty legend
            ax.legend(fontsize=8, loc="lower left")


def sweep_points(
    runs: pd.DataFrame,
    x: str,
    title: str,
    xlabel: str,
    hue: str | None = None,
    log_x: bool = False,
    bins: int = 4,
    budget: str | None = None,
) -> plt.Figure:
    """Search results against one hyperparameter: every trial a point, plus the mean per bin.

    ``runs``: one row per finished trial with ``x`` and ``val_accuracy``. A number with more than
    ``bins`` values is cut into ``bins`` equal-count bins (on a log scale with ``log_x``); the
    black segments are the bin means. Other hyperparameters vary at the same time, so the spread
    around a bin mean is not noise alone.
    """
    frame = runs.dropna(subset=["val_accuracy"]).copy()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    categorical = not pd.api.types.is_numeric_dtype(frame[x]) or pd.api.types.is_bool_dtype(frame[x])
    if categorical:
        levels = sorted(frame[x].unique(), key=str)
        frame["_pos"] = frame[x].map({level: i for i, level in enumerate(levels)})
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(frame))
        xs = frame["_pos"] + jitter
    else:
        xs = frame[x]
    groups = frame.groupby(hue, sort=True) if hue else [("all", frame)]
    for i, (level, group) in enumerate(groups):
        ax.scatter(
            xs[group.index],
            group["val_accuracy"] * 100,
            s=36,
            alpha=0.8,
            color=f"C{i}",
            edgecolor="k",
            linewidth=0.3,
            label=f"{hue}={level}" if hue else "trial",
        )
    if categorical:
        means = frame.groupby("_pos")["val_accuracy"].mean() * 100
        ax.hlines(means.values, means.index - 0.3, means.index + 0.3, color="k", lw=2, label="mean per level")
        ax.set_xticks(range(len(levels)), [str(level) for level in levels])
    else:
        _bin_means(ax, frame, x, log_x, bins)
    if log_x and not categorical:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    subtitle(ax, title, budget)
    ax.set(xlabel=xlabel, ylabel="validation accuracy (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _bin_means(ax: plt.Axes, frame: pd.DataFrame, x: str, log_x: bool, bins: int) -> None:
    """The black mean segments of :func:`sweep_points` for a number: per level, or per equal-count bin."""
    if frame[x].nunique() <= bins:
        means = frame.groupby(x)["val_accuracy"].mean() * 100
        ax.scatter(means.index, means.values, marker="_", s=600, color="k", linewidths=2, label="mean per level")
        if all(float(v).is_integer() for v in means.index):
            ax.set_xticks(list(means.index), [f"{v:g}" for v in means.index])
    else:
        values = np.log10(frame[x]) if log_x else frame[x]
        cut = pd.qcut(values.rank(method="first"), min(bins, len(frame) // 2 or 1), labels=False)
        for _, group in frame.groupby(cut):
            ax.hlines(group["val_accuracy"].mean() * 100, group[x].min(), group[x].max(), color="k", lw=2)
        ax.plot([], [], color="k", lw=2, label=f"mean per bin ({int(cut.max()) + 1} equal-count bins)")


def _ring_best(ax: plt.Axes, best: pd.Series, points: pd.DataFrame) -> None:
    """The best trial ringed in red and labelled with its accuracy, the label on the side of the point that
    faces the middle of ``points`` (a best point at the right edge is labelled to its left, never under the
    colour bar)."""
    ax.scatter(best["lr"], best["weight_decay"], s=260, facecolor="none", edgecolor="red", linewidth=2, zorder=3)
    right = _log_position(points["lr"], best["lr"]) > 0.5
    top = _log_position(points["weight_decay"], best["weight_decay"]) > 0.5
    ax.annotate(
        f"best: {best['val_accuracy'] * 100:.1f}%",
        (best["lr"], best["weight_decay"]),
        textcoords="offset points",
        xytext=(-10 if right else 10, -10 if top else 10),
        ha="right" if right else "left",
        va="top" if top else "bottom",
        fontsize=8,
        color="red",
        zorder=4,
    )


def _log_position(values: pd.Series, value: float) -> float:
    """Where ``value`` lies between the smallest and largest of ``values`` on a log scale (0.5: no spread)."""
    logs = np.log10(values[values > 0].astype(float))
    if not len(logs) or logs.max() == logs.min() or value <= 0:
        return 0.5
    return float((np.log10(value) - logs.min()) / (logs.max() - logs.min()))


def _count_text(good: pd.DataFrame, bad: pd.DataFrame) -> str:
    """``57 trials, 31 distinct points``: trials with the same learning rate and weight decay share a dot."""
    text = f"{len(good)} trial{'s' if len(good) != 1 else ''}"
    distinct = len(good[["lr", "weight_decay"]].drop_duplicates()) if len(good) else 0
    if distinct < len(good):
        text += f", {distinct} distinct point{'s' if distinct != 1 else ''}"
    return text + (f", {len(bad)} failed" if len(bad) else "")


WEIGHT_DECAY_KIND = {
    "adam": "Adam: L2 penalty (added to the gradient)",
    "adamw": "AdamW: decoupled weight decay",
    "sgd": "SGD: L2 penalty (added to the gradient)",
}


def lr_weight_decay_scatter(
    runs: pd.DataFrame, budget: str | None = None, title: str = "Learning rate vs weight decay"
) -> plt.Figure:
    """Learning rate vs weight decay, one panel per optimizer, colour = validation accuracy (%).

    Adam's weight decay is an L2 term in the gradient, AdamW's is decoupled from it: the same
    number means different things, so they get separate panels (a shared colour scale). The best
    trial is drawn last, ringed and labelled; failed trials (NaN accuracy) are grey crosses.
    """
    optimizers = sorted(runs["optimizer"].unique(), key=str) if "optimizer" in runs else ["all"]
    width = 4.6 * len(optimizers) + 1.4
    fig, axes = plt.subplots(1, len(optimizers), figsize=(width, 4.6), sharex=True, sharey=True, squeeze=False)
    ok = runs.dropna(subset=["val_accuracy"])
    vmin, vmax = (ok["val_accuracy"].min() * 100, ok["val_accuracy"].max() * 100) if len(ok) else (0, 100)
    best = ok.loc[ok["val_accuracy"].idxmax()] if len(ok) else None
    points = None
    for ax, name in zip(axes[0], optimizers, strict=True):
        part = runs if name == "all" else runs[runs["optimizer"] == name]
        good = part.dropna(subset=["val_accuracy"]).sort_values("val_accuracy")  # best drawn last, on top
        bad = part[part["val_accuracy"].isna()]
        points = ax.scatter(
            good["lr"],
            good["weight_decay"],
            c=good["val_accuracy"] * 100,
            cmap="viridis",
            vmin=vmin,
            vmax=vmax,
            s=50,
            edgecolor="k",
            linewidth=0.3,
            zorder=2,
        )
        if len(bad):
            ax.scatter(bad["lr"], bad["weight_decay"], marker="x", color="0.5", s=40, label="failed", zorder=2)
        if best is not None and (name == "all" or best["optimizer"] == name):
            _ring_best(ax, best, ok)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{WEIGHT_DECAY_KIND.get(name, name)}\n{_count_text(good, bad)}", fontsize=9)
        ax.set_xlabel("learning rate (log)")
        if len(bad):
            ax.legend(fontsize=8, loc="lower left")
    axes[0][0].set_ylabel("weight decay (log)")
    suptitle(fig, title, budget)
    fig.tight_layout()
    fig.colorbar(points, ax=list(axes[0]), label="validation accuracy (%)")
    return fig


def importance(
    scores: pd.Series | pd.DataFrame, chance: pd.DataFrame | None = None, budget: str | None = None
) -> plt.Figure:
    """η² per hyperparameter as bars, with what η² reaches by chance alone for the same trials.

    ``scores``: η² by hyperparameter, or the frame of :func:`lib.report.importance_table` (columns
    ``eta_squared``, ``chance_mean``, ``chance_95``), which then also serves as ``chance``. With
    few trials η² is large by chance ((levels - 1) / (trials - 1) on average): a bar that does
    not pass the 95th percentile of its permutation distribution (the grey tick) is drawn pale,
    as indistinguishable from noise.
    """
    if isinstance(scores, pd.DataFrame):
        chance = scores if chance is None else chance
        scores = scores["eta_squared"]
    scores = scores.sort_values()
    fig, ax = plt.subplots(figsize=(7.5, 0.4 * len(scores) + 1.6))
    y = np.arange(len(scores))
    if chance is None:
        ax.barh(y, scores.values, color="tab:blue")
    else:
        chance = chance.reindex(scores.index)
        above = scores.values > chance["chance_95"].values
        ax.barh(y, scores.values, color=np.where(above, "tab:blue", "#a6c8e8"))
        ax.scatter(chance["chance_mean"], y, marker="|", s=300, color="k", linewidths=2, zorder=3, label="chance: mean")
        ax.scatter(
            chance["chance_95"], y, marker="|", s=300, color="0.55", linewidths=2, zorder=3, label="chance: 95th pct"
        )
        handles, _ = ax.get_legend_handles_labels()
        handles += [Patch(color="tab:blue", label="above chance (95%)"), Patch(color="#a6c8e8", label="within chance")]
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_yticks(y, list(scores.index))
    ax.set_xlim(0, 1)
    subtitle(ax, "Hyperparameter importance (share of accuracy variance, η²)", budget)
    ax.set(xlabel="η² (0 to 1)", ylabel="hyperparameter")
    fig.tight_layout()
    return fig


def validation_curves(
    histories: pd.DataFrame, top_ids: list[str], labels: dict[str, str], budget: str | None = None
) -> plt.Figure:
    """Validation accuracy per epoch of every trial: grey lines, the ``top_ids`` in colour (labelled by
    ``labels``), every curve's best epoch a dot (a star on the highlighted ones).

    ``histories``: columns run_id, epoch, val_accuracy. A curve still rising at the end asks for more
    epochs; one that peaks early and falls is overfitting: choose the checkpoint by a declared rule.
    """
    fig, ax = plt.subplots(figsize=(9, 5.2))
    for run_id, curve in histories.groupby("run_id", sort=False):
        if run_id in top_ids:
            continue
        ax.plot(curve["epoch"], curve["val_accuracy"] * 100, color="0.75", lw=0.8, zorder=1)
        best = curve.loc[curve["val_accuracy"].idxmax()]
        ax.plot(best["epoch"], best["val_accuracy"] * 100, "o", color="0.6", ms=3, zorder=1)
    for i, run_id in enumerate(top_ids):
        curve = histories[histories["run_id"] == run_id]
        colour = f"C{i}"
        ax.plot(curve["epoch"], curve["val_accuracy"] * 100, "-", color=colour, lw=2, label=labels[run_id], zorder=3)
        best = curve.loc[curve["val_accuracy"].idxmax()]
        ax.plot(best["epoch"], best["val_accuracy"] * 100, "*", color=colour, ms=14, mec="k", mew=0.6, zorder=4)
    ax.plot([], [], color="0.75", lw=0.8, label=f"other trials ({histories['run_id'].nunique() - len(top_ids)})")
    ax.plot([], [], "*", color="0.4", ms=10, ls="none", label="best epoch of a curve")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    subtitle(ax, f"Validation accuracy per epoch: every trial, the best {len(top_ids)} in colour", budget)
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)")
    low = np.nanpercentile(histories["val_accuracy"] * 100, 5) if len(histories) else 0
    ax.set_ylim(bottom=max(0.0, low - 5))
    ax.legend(
        fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.2), title="rank: last-epoch score", title_fontsize=8
    )
    fig.tight_layout()
    return fig


def isolation(arms: pd.DataFrame, factor: str, budget: str | None = None) -> plt.Figure:
    """Isolation plot: per scientific value, the best trial after nuisance tuning (mean and 95% CI over
    the fresh re-measure seeds) next to the fixed-nuisance line on the same seeds.

    ``arms``: from :func:`lib.report.tuned_arms` (columns ``factor``, kind, mean, ci_low, ci_high, n,
    nuisance). The winner's nuisance values are written next to each tuned point.
    """
    fig, ax = plt.subplots(figsize=(8, 4.6))
    levels = sorted(arms[factor].unique(), key=lambda v: (str(type(v)), v))
    position = {level: i for i, level in enumerate(levels)}
    styles = {"tuned": ("C0", "o", "-", "nuisance tuned per arm"), "fixed": ("C3", "s", "--", "nuisance fixed")}
    for offset, (kind, (colour, marker, line, name)) in zip((-0.06, 0.06), styles.items(), strict=True):
        part = arms[arms["kind"] == kind].sort_values(factor, key=lambda s: s.map(position))
        if part.empty:
            continue
        xs = part[factor].map(position) + offset
        mean = part["mean"] * 100
        low = (part["mean"] - part["ci_low"].clip(lower=0)).fillna(0) * 100
        high = (part["ci_high"].clip(upper=1) - part["mean"]).fillna(0) * 100
        label = f"{name} ({part['nuisance'].iloc[0]})" if kind == "fixed" else name
        ax.errorbar(xs, mean, yerr=[low, high], color=colour, marker=marker, ls=line, capsize=5, ms=7, label=label)
        if kind == "tuned":
            for x, y, text in zip(xs, mean, part["nuisance"], strict=True):
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(8, 6), fontsize=8, color=colour)
    ax.set_xticks(range(len(levels)), [f"{v:g}" if isinstance(v, float) else str(v) for v in levels])
    ax.set_xlim(-0.5, len(levels) - 0.5)
    n = int(arms["n"].max()) if len(arms) else 0
    subtitle(ax, f"Isolation plot: validation accuracy vs {factor}, re-measured on {n} fresh seeds", budget)
    ax.set(xlabel=f"{factor} (scientific)", ylabel="validation accuracy (%)")
    ax.legend(fontsize=8, title="mean ± 95% CI over the fresh seeds", title_fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def expected_max_figure(
    curves: pd.DataFrame,
    budget: str | None = None,
    title: str = "Would more trials have helped? Expected best validation accuracy vs trials",
) -> plt.Figure:
    """Expected best validation accuracy (%) of n trials against n, a line per group with its band.

    ``curves``: from :func:`lib.expected_max.curves` (columns group, n, expected_max, low, high and
    optionally trials, failed). The dot marks n = N, all the group's finished trials; failed trials are
    not counted in n (the legend says how many there were). Still rising at the dot: more trials would
    probably have found a better configuration; flat: the search had converged for this space and budget.
    The x axis is logarithmic past 20 trials; the y axis stays within 0-100%.
    """
    fig, ax = plt.subplots(figsize=(8, 4.6))
    groups = list(curves.groupby("group", sort=True)) if len(curves) else []
    for i, (group, part) in enumerate(groups):
        part = part.sort_values("n")
        colour = f"C{i % 10}"
        trials = int(part["trials"].iloc[0]) if "trials" in part else int(part["n"].max())
        failed = int(part["failed"].iloc[0]) if "failed" in part else 0
        ends = np.flatnonzero(part["n"].to_numpy() == trials)
        label = f"{group} (N={trials}" + (f", {failed} failed, not counted)" if failed else ")")
        low = (part["low"] * 100).clip(0, 100)
        high = (part["high"] * 100).clip(0, 100)
        ax.fill_between(part["n"], low, high, color=colour, alpha=0.18, linewidth=0)
        ax.plot(part["n"], part["expected_max"] * 100, "-", color=colour, marker="o", markevery=list(ends), label=label)
    top = int(curves["n"].max()) if len(curves) else 1
    if top > 20:
        ax.set_xscale("log")
        ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if t < top * 0.8] + [top]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        scale = "log scale"
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        scale = "finished trials"
    ax.set_xlim(*((0.92, top * 1.08) if top > 20 else (0.7, max(top, 2) + 0.3)))  # room for the end dots
    shown = pd.concat([curves[c] for c in ("low", "high", "expected_max")]).dropna() * 100 if len(curves) else None
    if shown is not None and len(shown):
        ax.set_ylim(max(0.0, shown.min() - 2), min(100.0, shown.max() + 2))
    else:
        ax.set_ylim(0, 100)
    subtitle(ax, title, budget)
    ax.set(xlabel=f"number of trials n ({scale})", ylabel="expected best validation accuracy (%)")
    if groups:
        ax.legend(
            fontsize=8,
            title="line: E[best of n]; band: bootstrap over the trials; dot: n = all N",
            title_fontsize=8,
            loc="lower right",
        )
    fig.tight_layout()
    return fig
