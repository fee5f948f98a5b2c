"""The study's figures: each has a title, labelled axes, a legend where needed and a caption.

Every function returns a matplotlib ``Figure``; :func:`save_figure` writes it to ``figures/`` and
logs it as an artifact of the MLflow run that produced it. The notebooks show the same figure
right under the code that makes it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from lib import tracking
from lib.paths import figures_dir

sns.set_theme(style="whitegrid", context="notebook")


def save_figure(fig: plt.Figure, name: str, caption: str, run_id: str | None = None) -> Path:
    """Save ``fig`` as ``figures/<name>.png`` with its caption underneath, and log it to MLflow."""
    fig.text(0.01, -0.02, caption, ha="left", va="top", fontsize=9, style="italic", wrap=True)
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if run_id:
        tracking.log_artifact(run_id, path)
    return path


def class_examples(
    images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], per_class: int = 6
) -> plt.Figure:
    fig, axes = plt.subplots(len(class_names), per_class, figsize=(per_class * 0.9, len(class_names) * 0.95))
    for cls, name in enumerate(class_names):
        picks = np.flatnonzero(labels == cls)[:per_class]
        for col, idx in enumerate(picks):
            ax = axes[cls, col]
            ax.imshow(images[idx, 0], cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Fashion-MNIST: examples per class (training split)")
    return fig


def class_balance(counts: pd.DataFrame) -> plt.Figure:
    """``counts``: columns class, split, images."""
    fig, ax = plt.subplots(figsize=(9, 3.5))
    sns.barplot(data=counts, x="class", y="images", hue="split", ax=ax)
    ax.set(title="Class balance per split", xlabel="class", ylabel="images")
    ax.tick_params(axis="x", rotation=30)
    return fig


def learning_curves(histories: pd.DataFrame) -> plt.Figure:
    """``histories``: columns seed, epoch, train_loss, val_loss, val_accuracy."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    for seed, group in histories.groupby("seed"):
        ax_loss.plot(group["epoch"], group["train_loss"], "-", label=f"train, seed {seed}")
        ax_loss.plot(group["epoch"], group["val_loss"], "--", label=f"validation, seed {seed}")
        ax_acc.plot(group["epoch"], group["val_accuracy"] * 100, "-o", ms=3, label=f"seed {seed}")
    ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(title="Validation accuracy per epoch", xlabel="epoch", ylabel="accuracy (%)")
    ax_loss.legend(fontsize=7)
    ax_acc.legend(fontsize=7)
    fig.tight_layout()
    return fig


def accuracy_vs(
    summary: pd.DataFrame,
    x: str,
    hue: str,
    title: str,
    xlabel: str,
    log_x: bool = False,
    value_label: str = "validation accuracy (%)",
) -> plt.Figure:
    """Mean and 95% CI (from :func:`lib.stats.summarize`) of accuracy against ``x``, a line per ``hue``."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for level, group in summary.groupby(hue, sort=True):
        group = group.sort_values(x)
        mean = group["mean"] * 100
        # an accuracy interval cannot leave [0, 100]: clip the t-interval there
        low = (group["mean"] - group["ci_low"].clip(lower=0.0)).fillna(0) * 100
        high = (group["ci_high"].clip(upper=1.0) - group["mean"]).fillna(0) * 100
        ax.errorbar(group[x], mean, yerr=[low, high], marker="o", capsize=4, label=f"{hue}={level}")
    if log_x:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=value_label)
    ax.legend(title="mean ± 95% CI (clipped to 0-100)")
    fig.tight_layout()
    return fig


def lr_weight_decay_scatter(runs: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.8))
    points = ax.scatter(
        runs["lr"],
        runs["weight_decay"],
        c=runs["val_accuracy"] * 100,
        cmap="viridis",
        s=45,
        edgecolor="k",
        linewidth=0.3,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(title="Sweep: learning rate vs weight decay", xlabel="learning rate (log)", ylabel="weight decay (log)")
    fig.colorbar(points, ax=ax, label="validation accuracy (%)")
    fig.tight_layout()
    return fig


def heatmap(table: pd.DataFrame, title: str, xlabel: str, ylabel: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.heatmap(
        table * 100, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar_kws={"label": "mean validation accuracy (%)"}
    )
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.tight_layout()
    return fig


def importance(scores: pd.Series) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(scores) + 1.2))
    scores.sort_values().plot.barh(ax=ax, color="tab:blue")
    ax.set(
        title="Hyperparameter importance (share of accuracy variance, η²)",
        xlabel="η² (0 to 1)",
        ylabel="hyperparameter",
    )
    fig.tight_layout()
    return fig


def variance_shift(summary: pd.DataFrame, ratios: pd.DataFrame) -> plt.Figure:
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
    fig.tight_layout()
    return fig


# --- study v2 (issue 13): search curves and overfitting ---------------------------------------


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
        if low == low and high == high:
            ax.axhspan(low * 100, high * 100, color="gray", alpha=0.15)
    ax.set(title="Search: best validation accuracy so far", xlabel="trials", ylabel="best validation accuracy (%)")
    ax.legend(fontsize=8, title="bands: 95% CI over sweep seeds", title_fontsize=8)
    fig.tight_layout()
    return fig


def train_val_gap(summary: pd.DataFrame) -> plt.Figure:
    """Per arm: validation - training loss in the last epoch, and the validation loss's rise after its minimum."""
    fig, (ax_gap, ax_rise) = plt.subplots(1, 2, figsize=(12, 4.2))
    positions = range(len(summary))
    for ax, column, title in (
        (ax_gap, "gap", "Generalisation gap (last epoch)"),
        (ax_rise, "rise", "Validation loss rise after its minimum"),
    ):
        low = (summary[column] - summary[f"{column}_ci_low"]).fillna(0)
        high = (summary[f"{column}_ci_high"] - summary[column]).fillna(0)
        ax.errorbar(positions, summary[column], yerr=[low, high], fmt="o", capsize=4)
        ax.axhline(0, color="gray", linestyle=":")
        ax.set_xticks(list(positions), summary["arm"], rotation=35, ha="right", fontsize=8)
        ax.set(title=title, xlabel="arm", ylabel="cross-entropy difference (mean ± 95% CI)")
    fig.tight_layout()
    return fig
