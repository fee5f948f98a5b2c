"""The worked study's own figures: the norm x dropout heat map (04), the variance shift (02b), the search
curves and the train/validation gap (05).

Each function returns a matplotlib ``Figure`` with a title and labelled axes; ``lib.plots.save_figure``
writes it with its caption. The figures of general use (learning curves, accuracy against a
hyperparameter, the learning-rate range, sweeps, importance) stay in ``lib.plots``.

What this is not: the numbers (``hypotheses``, ``comparisons`` compute them) or the course's plots.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from lib.plots import subtitle, suptitle  # the course plots' title with its budget line


def heatmap(table: pd.DataFrame, title: str, xlabel: str, ylabel: str, budget: str | None = None) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 3.4))
    sns.heatmap(
        table * 100, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar_kws={"label": "mean validation accuracy (%)"}
    )
    subtitle(ax, title, budget)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    fig.tight_layout()
    return fig


def variance_shift(summary: pd.DataFrame, ratios: pd.DataFrame, budget: str | None = None) -> plt.Figure:
    """Left: accuracy per placement/recalibration. Right: BN running/actual variance ratio per layer."""
    fig, (ax_acc, ax_ratio) = plt.subplots(1, 2, figsize=(12, 4.2))
    labels = summary["arm"].tolist()
    mean = summary["mean"] * 100
    err = [
        (summary["mean"] - summary["ci_low"]).fillna(0) * 100,
        (summary["ci_high"] - summary["mean"]).fillna(0) * 100,
    ]
    ax_acc.errorbar(range(len(labels)), mean, yerr=err, fmt="o", capsize=4)
    ax_acc.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
    ax_acc.set(title="BatchNorm + dropout: validation accuracy", xlabel="arm", ylabel="validation accuracy (%)")
    for stage, group in ratios.groupby("stage", sort=False):
        ax_ratio.plot(group["layer"], group["ratio"], "o-", label=stage)
    ax_ratio.axhline(1.0, color="gray", linestyle=":")
    ax_ratio.set(
        title="Variance shift per BatchNorm layer", xlabel="BatchNorm layer", ylabel="running var / actual eval var"
    )
    ax_ratio.tick_params(axis="x", rotation=30)
    ax_ratio.legend()
    if budget:
        suptitle(fig, "BatchNorm and dropout", budget)
    fig.tight_layout()
    return fig


def best_so_far_curves(curves: pd.DataFrame, reference: tuple[float, float, float] | None = None) -> plt.Figure:
    """Best validation accuracy after each trial, per search algorithm: mean over sweep seeds with a
    95% t-band, every sweep seed as a thin line; ``reference`` = (mean, ci_low, ci_high) of the
    default configuration at the same budget, drawn as a horizontal line with its band."""
    from scipy import stats as scipy_stats

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for (algo, group), color in zip(
        curves.groupby("algo", sort=True), ("tab:blue", "tab:orange", "tab:green"), strict=False
    ):
        for _, seed_curve in group.groupby("sweep_seed"):
            ax.plot(seed_curve["trial"] + 1, seed_curve["best"] * 100, color=color, alpha=0.25, linewidth=0.8)
        stats = group.groupby("trial")["best"].agg(["mean", "std", "count"])
        t = scipy_stats.t.ppf(0.975, (stats["count"] - 1).clip(lower=1))
        half = (t * stats["std"] / np.sqrt(stats["count"])).fillna(0)
        x = stats.index + 1
        ax.plot(
            x,
            stats["mean"] * 100,
            color=color,
            linewidth=2,
            label=f"{algo} (mean of {int(stats['count'].max())} sweeps)",
        )
        ax.fill_between(x, (stats["mean"] - half) * 100, (stats["mean"] + half) * 100, color=color, alpha=0.15)
    if reference is not None:
        mean, low, high = reference
        ax.axhline(mean * 100, color="black", linestyle="--", linewidth=1.2, label="default configuration (mean)")
        if pd.notna(low) and pd.notna(high):
            ax.axhspan(low * 100, high * 100, color="gray", alpha=0.15)
    ax.set(title="Search: best validation accuracy so far", xlabel="trials", ylabel="best validation accuracy (%)")
    ax.legend(fontsize=8, title="bands: 95% CI over sweep seeds", title_fontsize=8)
    fig.tight_layout()
    return fig


def train_val_gap(summary: pd.DataFrame) -> plt.Figure:
    """Per configuration: validation - training loss in the last epoch, and the validation loss's late change.

    ``summary``: :func:`lib.study.comparisons.overfitting`'s first table. The right panel is what the
    overfitting claim tests (last epoch minus the declared reference epoch, paired per seed; below 0:
    still improving); an older summary without it shows the descriptive rise after the minimum.
    """
    fig, (ax_gap, ax_late) = plt.subplots(1, 2, figsize=(12, 4.2))
    positions = range(len(summary))
    late = "late_change" if "late_change" in summary else "rise"
    late_title = (
        "Validation loss: last epoch minus reference epoch" if late == "late_change" else "Rise after the minimum"
    )
    for ax, column, title in ((ax_gap, "gap", "Generalisation gap (last epoch)"), (ax_late, late, late_title)):
        low = (summary[column] - summary[f"{column}_ci_low"]).fillna(0)
        high = (summary[f"{column}_ci_high"] - summary[column]).fillna(0)
        ax.errorbar(positions, summary[column], yerr=[low, high], fmt="o", capsize=4)
        ax.axhline(0, color="gray", linestyle=":")
        ax.set_xticks(list(positions), summary["arm"], rotation=35, ha="right", fontsize=8)
        ax.set(title=title, xlabel="configuration", ylabel="cross-entropy difference (mean ± 95% CI)")
    fig.tight_layout()
    return fig


def control_curves(histories: pd.DataFrame, budget: str = "") -> plt.Figure:
    """Validation accuracy per epoch of the no-dropout controls: one panel per norm type, a thin line per
    run (seed and budget), the mean per budget in bold (02's plateau check)."""
    norms = sorted(histories["norm_type"].unique()) if len(histories) else []
    fig, axes = plt.subplots(1, max(len(norms), 1), figsize=(5 * max(len(norms), 1), 3.6), squeeze=False)
    for ax, norm in zip(axes[0], norms, strict=False):
        part = histories[histories["norm_type"] == norm]
        for index, (epochs, runs) in enumerate(part.groupby("epochs")):
            colour = f"C{index}"
            for _, run in runs.groupby("seed"):
                ax.plot(run["epoch"], 100 * run["val_accuracy"], color=colour, alpha=0.3, linewidth=0.8)
            mean = runs.groupby("epoch")["val_accuracy"].mean()
            ax.plot(mean.index, 100 * mean.to_numpy(), color=colour, linewidth=2, label=f"{int(epochs)} epochs")
        ax.set(title=f"norm_type={norm}, dropout 0", xlabel="epoch", ylabel="validation accuracy (%)")
        ax.legend(loc="lower right")
    if budget:
        fig.suptitle(f"No-dropout control, lr and weight decay tuned ({budget})", fontsize=10)
    fig.tight_layout()
    return fig
