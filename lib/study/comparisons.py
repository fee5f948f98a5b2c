"""Notebook 05's comparisons: H1 across budgets (an interaction test), overfitting at full budget, TPE vs random.

- :func:`budget_changes`: H1's effects at the grid budget next to those at full budget, and the
  budget x dropout **interaction** (the difference of the two effects, paired by seed where they
  share seeds) that decides whether the budget changed an effect; a change of decision alone is
  not a test (family ``budget x dropout``).
- :func:`overfitting`: per run (one full configuration and seed), the last epoch's gap, and whether
  the validation loss at the last epoch is above that at a declared earlier epoch, paired per seed.
- :func:`search_comparison`: the best validation accuracy after all trials, TPE vs random.

What this is not: the grid-budget hypotheses (``hypotheses``) or their figures (``figures``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from lib import tracking
from lib.config import TRIAL_FIELDS
from lib.data import DataSpec
from lib.stats import Effect, difference_of_effects, holm, mean_ci, paired_effect, verdict
from lib.study.inputs import budget_text, finished
from lib.study.verdicts import ALPHA, decision_words, verdict_row

OVERFIT_REFERENCE = 0.5  # declared: the last epoch's validation loss vs the one at half the epochs


# --- overfitting ------------------------------------------------------------------------------


def epoch_histories(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch train loss, validation loss and accuracy of every finished run in ``frame`` (MLflow),
    with the run's whole configuration (every trial field present), ``arm`` and ``run_id``."""
    parts = []
    for _, run in finished(frame).iterrows():
        history = tracking.metric_history(run["run_id"]).reset_index()
        for column in (*TRIAL_FIELDS, "arm", "run_id"):
            if column in run.index:
                history[column] = run[column]
        parts.append(history)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _config_columns(histories: pd.DataFrame, with_seed: bool = True) -> list[str]:
    return [c for c in TRIAL_FIELDS if c in histories and (with_seed or c != "seed")]


def _keys(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One text key per row for ``columns`` (configurations may hold tuples or missing values)."""
    return frame[columns].map(str).agg("|".join, axis=1)  # map(str): astype(str) keeps NaN in pandas 3


def run_curves(histories: pd.DataFrame, reference_epoch: int) -> pd.DataFrame:
    """One row per run, a run being one full configuration (every hyperparameter) and seed.

    ``gap``: validation - training loss in the last epoch (the training loss is the running mean
    over that epoch with dropout on, so for dropout arms the gap is understated); ``late_change``:
    validation loss at the last epoch minus that at ``reference_epoch``; ``late_acc_change``: the same for
    validation accuracy (a late *fall* in accuracy is overfitting; a late rise in loss alone can be
    over-confidence); ``rise`` and ``best_minus_last_acc`` (descriptive only, >= 0 by construction, so
    never tested): last validation loss minus its minimum, best epoch's accuracy minus the last's.
    """
    runs = []
    histories = histories.assign(_run=_keys(histories, _config_columns(histories)))
    histories["_config"] = _keys(histories, _config_columns(histories, with_seed=False))
    for _, group in histories.groupby("_run", sort=False):
        group = group.sort_values("epoch")
        last = group.iloc[-1]
        at_reference = group.loc[group["epoch"] == reference_epoch, "val_loss"]
        accuracy = group["val_accuracy"] if "val_accuracy" in group else pd.Series(np.nan, group.index)
        acc_reference = accuracy[group["epoch"] == reference_epoch]
        runs.append(
            {
                "config": last["_config"],
                "arm": _arm_label(last),
                "seed": last["seed"],
                "norm_type": last["norm_type"],
                "dropout_p": last["dropout_p"],
                "recalibrated": str(last.get("recalibrate_bn", False)) in ("True", "true", "1"),
                "gap": last["val_loss"] - last["train_loss"],
                "val_loss_last": last["val_loss"],
                "val_loss_reference": float(at_reference.iloc[0]) if len(at_reference) else float("nan"),
                "rise": last["val_loss"] - group["val_loss"].min(),
                "val_acc_last": accuracy.iloc[-1],
                "val_acc_reference": float(acc_reference.iloc[0]) if len(acc_reference) else float("nan"),
                "val_acc_best": accuracy.max(),
                "best_epoch": int(group.loc[group["val_loss"].idxmin(), "epoch"]),
                "last_epoch": int(last["epoch"]),
            }
        )
    runs = pd.DataFrame(runs)
    runs["late_change"] = runs["val_loss_last"] - runs["val_loss_reference"]
    runs["late_acc_change"] = runs["val_acc_last"] - runs["val_acc_reference"]
    runs["best_minus_last_acc"] = runs["val_acc_best"] - runs["val_acc_last"]  # >= 0 by construction: descriptive
    return runs


def _arm_label(run: pd.Series) -> str:
    arm = run.get("arm")
    base = str(arm) if isinstance(arm, str) else f"{run['norm_type']}/{run.get('dropout_placement', 'block')}"
    return base if f"p={run['dropout_p']:g}" in base or "no dropout" in base else f"{base}, p={run['dropout_p']:g}"


def _summary(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, group in runs.groupby("config", sort=False):
        values = {}
        for column in ("gap", "late_change", "late_acc_change", "rise", "best_minus_last_acc"):
            mean, low, high = mean_ci(group[column].tolist())
            values |= {column: mean, f"{column}_ci_low": low, f"{column}_ci_high": high}
        note = "validation loss per epoch measured before BN recalibration" if group["recalibrated"].all() else ""
        first = group.iloc[0]
        rows.append(
            {"arm": first["arm"], "dropout_p": first["dropout_p"], "n": len(group)}
            | values
            | {"best_epoch_mean": group["best_epoch"].mean(), "note": note}
        )
    return pd.DataFrame(rows)


def overfitting(
    histories: pd.DataFrame, data: DataSpec | None = None, epochs: int | None = None, reference_epoch: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per configuration: gap and late change (:func:`run_curves`); per no-dropout arm: does it overfit?

    The claim "the validation loss rises late in training" compares, paired per seed, the validation
    loss at the last epoch with that at the declared ``reference_epoch`` (default: the epoch at
    :data:`OVERFIT_REFERENCE` of the training, ``ceil(epochs / 2)``); CI > 0 says it rose (family
    ``budget``). A model that is still improving gives a negative difference, so the null is not
    tilted towards "overfits".
    """
    last_epoch = int(epochs or histories["epoch"].max())
    reference = int(reference_epoch or max(1, math.ceil(last_epoch * OVERFIT_REFERENCE)))
    runs = run_curves(histories, reference)
    text = budget_text(pd.DataFrame({"epochs": [last_epoch]}), data) if data is not None else ""
    claims = []
    for _, group in runs[runs["dropout_p"] == 0].groupby("config", sort=False):
        claims += _overfit_rows(group.set_index("seed"), group.iloc[0]["norm_type"], last_epoch, reference, text)
    return _summary(runs), pd.DataFrame(claims)


def _overfit_rows(by_seed: pd.DataFrame, norm: str, last_epoch: int, reference: int, text: str) -> list[dict]:
    """The two overfitting claims of one no-dropout arm, paired per seed: the validation loss rose late
    (CI > 0), and the validation accuracy fell late (CI < 0): accuracy is what a user keeps."""
    loss = paired_effect(by_seed["val_loss_last"], by_seed["val_loss_reference"], f"overfitting, loss ({norm})")
    accuracy = paired_effect(by_seed["val_acc_last"], by_seed["val_acc_reference"], f"overfitting, accuracy ({norm})")
    stem = f"norm={norm}, no dropout: validation"
    rows = [
        verdict_row("overfit", f"{stem} loss at epoch {last_epoch} is above that at epoch {reference}", loss,
                    "CI > 0 (loss)", verdict(loss), budget_text=text, family="budget", unit="loss"),
        verdict_row("overfit", f"{stem} accuracy at epoch {last_epoch} is below that at epoch {reference}", accuracy,
                    "CI < 0", verdict(accuracy, direction="less"), budget_text=text, family="budget",
                    direction="less"),
    ]  # fmt: skip
    return rows if by_seed["val_acc_last"].notna().all() else rows[:1]  # histories without accuracy: loss only


# --- TPE vs random ----------------------------------------------------------------------------


def best_so_far(frame: pd.DataFrame) -> pd.DataFrame:
    """Best validation accuracy after each trial, per sweep: columns algo, sweep_seed, trial, best.

    ``frame``: the sweeps' trials in order, with columns ``algo``, ``sweep_seed``, ``trial`` and
    ``val_accuracy`` (failed trials: ``nan``, they do not raise the best).
    """
    parts = []
    for (algo, sweep_seed), group in frame.groupby(["algo", "sweep_seed"]):
        group = group.sort_values("trial")
        best = group["val_accuracy"].fillna(-np.inf).cummax().replace(-np.inf, np.nan)
        parts.append(pd.DataFrame({"algo": algo, "sweep_seed": sweep_seed, "trial": group["trial"], "best": best}))
    return pd.concat(parts, ignore_index=True)


def search_comparison(curves: pd.DataFrame, budget_text: str = "") -> pd.DataFrame:
    """TPE vs random: the best validation accuracy after all trials, paired by sweep seed (family ``search``)."""
    last = curves.sort_values("trial").groupby(["algo", "sweep_seed"]).tail(1).set_index("sweep_seed")
    tpe = last[last["algo"] == "tpe"]["best"]
    rand = last[last["algo"] == "random"]["best"]
    effect = paired_effect(tpe, rand, "tpe - random")
    trials = int(curves["trial"].max()) + 1 if len(curves) else 0
    claim = f"TPE's best after {trials} trials beats random search's (paired by sweep seed)"
    return pd.DataFrame(
        [verdict_row("search", claim, effect, "CI > 0", verdict(effect), budget_text=budget_text, family="search")]
    )


# --- H1 across budgets: the interaction -------------------------------------------------------


def _with_keys(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table["norm"] = table["claim"].str.extract(r"norm=(\w+)")[0]
    # no placement in the claim (02's grid): the course's block order, as is
    table["variant"] = table["claim"].str.extract(r"norm=\w+(?:, ([^:]+))?:")[0].fillna("block")
    if "seed_diffs" not in table:
        table["seed_diffs"] = ""
    return table


def _effect_of(seed_diffs: object, name: str) -> Effect:
    """An effect with only its per-seed differences (from a verdict row's ``seed_diffs``)."""
    values = json.loads(seed_diffs) if isinstance(seed_diffs, str) and seed_diffs else {}
    pairs = tuple((seed, float(v)) for seed, v in values.items())
    nan = float("nan")
    return Effect(name, nan, nan, nan, nan, nan, len(pairs), diffs=pairs)


def interaction(large_diffs: object, small_diffs: object, name: str = "budget x dropout") -> Effect:
    """The budget x dropout interaction of one H1 claim: its effect at full budget minus at the grid budget.

    Both arguments are verdict rows' ``seed_diffs`` (JSON ``{seed: difference}``, in the row's unit).
    Paired by seed when both budgets ran the same seeds, Welch otherwise
    (:func:`lib.stats.difference_of_effects`).
    """
    return difference_of_effects(_effect_of(large_diffs, "full"), _effect_of(small_diffs, "grid"), name)


def _interaction_of(
    large_diffs: object, small_diffs: object, full: object, grid: object, unit: object
) -> tuple[float, float, float, float]:
    """(interaction, CI low, CI high, p) of one row pair in the row's unit: over seeds *and* validation
    images when both rows carry their two-source Effect (in memory, the same images), else over seeds."""
    two_source = [isinstance(e, Effect) and e.per_image is not None for e in (full, grid)]
    if all(two_source):
        scale = 100.0 if unit == "pp" else 1.0
        both = difference_of_effects(full, grid, "budget x dropout")  # type: ignore[arg-type]
        return both.mean * scale, both.ci_low * scale, both.ci_high * scale, both.p_value()
    seeds = interaction(large_diffs, small_diffs)
    return seeds.mean, seeds.ci_low, seeds.ci_high, seeds.p_value()


def budget_changes(
    small: pd.DataFrame, large: pd.DataFrame, alpha: float = ALPHA, same_arms: bool = False
) -> pd.DataFrame:
    """H1's rows at the grid budget (02) next to those at full budget (05), per norm type, with the interaction.

    ``same_arm`` is true where the two rows differ only in budget: the grid's arm (02: dropout in the
    block order, no recalibration) is the full-budget row's arm. Where it is false (BatchNorm with
    recalibration or dropout in the head at full budget), a difference mixes budget with the fix of
    02b. ``interaction`` (full - grid, pp) and its CI decide "the budget changed the effect", Holm over
    these rows (family ``budget x dropout``): ``interaction_decision`` is ``shown`` or ``not shown``.

    ``same_arms=True``: ``small`` holds the full-budget arms themselves at the grid budget (05's grid
    twins), so rows are matched on the arm too and every row differs only in budget.
    """
    columns = ["hypothesis", "norm", "variant", "budget", "effect", "ci_low", "ci_high", "decision", "seed_diffs"]
    small, large = _with_keys(small), _with_keys(large)
    for table in (small, large):  # rows read back from a CSV have no Effect: their interaction is seeds-only
        if "_effect" not in table:
            table["_effect"] = None
    columns = [*columns, "_effect"]
    keys = ["hypothesis", "norm"] + (["variant"] if same_arms else [])
    if same_arms:
        small = small.assign(variant_grid=small["variant"])
        columns = [*columns, "variant_grid"]
    merged = large.merge(small[columns], on=keys, how="left", suffixes=("", "_grid"))
    merged["same_arm"] = merged["variant"] == merged["variant_grid"]
    merged["changed"] = merged["decision"] != merged["decision_grid"]
    units = merged["unit"] if "unit" in merged else pd.Series("pp", index=merged.index)
    sides = (merged["seed_diffs"], merged["seed_diffs_grid"], merged["_effect"], merged["_effect_grid"], units)
    effects = [_interaction_of(*row) for row in zip(*sides, strict=True)]
    merged["interaction"] = [e[0] for e in effects]
    merged["interaction_ci_low"] = [e[1] for e in effects]
    merged["interaction_ci_high"] = [e[2] for e in effects]
    merged["interaction_p"] = [e[3] for e in effects]
    merged["interaction_p_holm"] = holm(merged["interaction_p"].to_numpy(dtype=float), alpha)[0] if len(merged) else []
    merged["interaction_decision"] = np.where(merged["interaction_p_holm"] < alpha, "shown", "not shown")
    keep = ["hypothesis", "norm", "variant", "variant_grid", "same_arm", "budget_grid", "effect_grid", "ci_low_grid"]
    keep += ["ci_high_grid", "decision_grid", "budget", "effect", "ci_low", "ci_high", "decision", "changed"]
    keep += ["interaction", "interaction_ci_low", "interaction_ci_high", "interaction_p", "interaction_p_holm"]
    return merged[[*keep, "interaction_decision"]]


def budget_change_lines(changes: pd.DataFrame) -> list[str]:
    """Markdown lines for 04 and 05: H1 across budgets, decided by the interaction, same-arm rows first."""
    same = changes[changes["same_arm"]]
    shown = same[same["interaction_decision"] == "shown"] if "interaction_decision" in same else same.iloc[0:0]
    lines = [
        f"H1 decisions that differ between the grid budget and full budget: {int(changes['changed'].sum())} of "
        f"{len(changes)}; among the rows whose arm is the same at both budgets (only the budget differs): "
        f"{int(same['changed'].sum())} of {len(same)}. A different decision is not a test: the budget changed "
        f"an effect only where the budget x dropout interaction is shown ({len(shown)} of {len(same)} same-arm rows)."
    ]
    for r in changes.sort_values("same_arm", ascending=False).itertuples():
        arm = "same arm" if r.same_arm else f"grid arm: {r.variant_grid}, no recalibration; not the budget alone"
        lines.append(
            f"- {r.hypothesis} norm={r.norm}, {r.variant} ({arm}): {decision_words(r.decision_grid)} at "
            f"{r.budget_grid} ({r.effect_grid:+.2f} pp) → {decision_words(r.decision)} at {r.budget} "
            f"({r.effect:+.2f} pp); interaction {_interval(r)}: **{getattr(r, 'interaction_decision', 'not shown')}**"
        )
    return lines


def _interval(r: object) -> str:
    value = getattr(r, "interaction", float("nan"))
    if value != value:
        return "n/a (no per-seed values)"
    low, high = r.interaction_ci_low, r.interaction_ci_high
    ci = f"95% CI {low:+.2f} to {high:+.2f}" if low == low else "no interval"
    return f"{value:+.2f} pp ({ci}, Holm p {r.interaction_p_holm:.3g})"
