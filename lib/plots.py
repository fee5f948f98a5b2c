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
