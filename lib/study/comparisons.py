"""Notebook 05's comparisons: 02's H1 arms at full budget (described), overfitting (described), TPE vs random.

Study v4 decides H1 in 02, at a budget where the no-dropout control has stopped improving, with each
arm's lr and weight decay tuned. 05 asks what happens to those same tuned arms on all training images,
and describes it (family ``sensitivity``: effects and intervals, no Holm, no decision):

- :func:`budget_arms`: the arms of 02's ``H1`` input (the re-measured tuned winners), one configuration
  per (norm type, placement, dropout value) with its own tuned ``lr`` and ``weight_decay``;
  :func:`budget_configs` trains them at full budget, :func:`twin_runs` are the same arms' runs at 02's
  budget on the same seeds (02's own runs, nothing retrained).
- :func:`budget_changes`: each H1 row at 02's budget next to the same row at full budget, with the
  budget x dropout **interaction** (full - 02, paired by seed and validation image where both rows
  carry their per-image effect); :func:`interaction_rows` writes them as verdict rows of family
  ``sensitivity``.
- :func:`overfitting`: per run, the last epoch's gap, and whether the validation loss (and accuracy) at
  the last epoch differs from that at a declared earlier epoch, paired per seed (``sensitivity``).
- :func:`search_comparison`: the best validation accuracy after all trials, TPE vs random: the one
  decision family of 05 (``search``).

What this is not: H1's decision (``hypotheses``, in 02) or the study's figures (``figures``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from lib.config import TRIAL_FIELDS, TrialConfig
from lib.data import DataSpec
from lib.stats import Effect, difference_of_effects, mean_ci, paired_effect, verdict
from lib.store import config_identity, run_config
from lib.study.hypotheses import SENSITIVITY
from lib.study.inputs import GRID_INPUTS, budget_text, finished, trial_runs
from lib.study.verdicts import DESCRIBED_WORDS, decision_words, seed_key, verdict_row

OVERFIT_REFERENCE = 0.5  # declared: the last epoch's validation loss vs the one at half the epochs


ARM_KEYS = ["norm_type", "dropout_placement", "dropout_p"]


# --- 02's tuned H1 arms at full budget ---------------------------------------------------------


def tuned_h1_runs(named: Callable[[str], str], profile: str) -> pd.DataFrame:
    """02's ``H1`` input of ``profile`` (:data:`lib.study.inputs.GRID_INPUTS`: the re-measured tuned winners),
    without reading the other inputs. ``named`` maps a notebook to its experiment, as for ``grid_inputs``."""
    for name, base, hypothesis in GRID_INPUTS:
        if name == "H1":
            return trial_runs(named(base), hypothesis, profile)
    raise KeyError("lib.study.inputs.GRID_INPUTS has no 'H1' input")


def arm_label(norm_type: object, placement: object) -> str:
    """``none/block``, ``batch/head``: a norm type and where its dropout sits (the dropout-0 point included)."""
    return f"{norm_type}/{placement}"


def budget_arms(runs: pd.DataFrame, dropout_values: Sequence[float]) -> pd.DataFrame:
    """One row per arm of 02's H1 runs at ``dropout_values``: its whole tuned configuration.

    An arm is a (norm type, dropout placement, dropout value) of the finished runs in ``runs``; its
    ``config`` (every trial field but seed and epochs, :func:`lib.store.run_config`) carries the
    arm's own tuned ``lr`` and ``weight_decay``. Where a store holds several configurations of one arm
    (an older tuning of the same profile), the latest run's is kept and ``alternatives`` counts the
    others. ``seeds`` are the seeds 02 ran that configuration on, ``label`` the arm's line
    (:func:`arm_label`; a dropout-0 arm takes its norm type's dropout placement where that is one).
    Raises ``ValueError`` naming the values 02 ran when a norm type lacks one of ``dropout_values``.
    """
    done = finished(runs).copy()
    done["dropout_p"] = done["dropout_p"].astype(float)
    done["_identity"] = [config_identity(run_config(row)) for _, row in done.iterrows()]
    order = "start_time" if "start_time" in done else "_identity"
    wanted = [float(p) for p in dropout_values]
    rows = []
    for norm, arm_runs in done.groupby("norm_type", sort=True):
        ran = sorted(arm_runs["dropout_p"].unique())
        missing = [p for p in wanted if not np.isclose(ran, p).any()]
        if missing:
            raise ValueError(
                f"budget_dropout_values {wanted}: 02's H1 runs with norm={norm} have no dropout_p "
                f"{missing}; allowed: {[float(p) for p in ran]}"
            )
        placements = arm_runs.loc[arm_runs["dropout_p"] > 0, "dropout_placement"].unique()
        for (placement, p), group in arm_runs.groupby(["dropout_placement", "dropout_p"], sort=True):
            if not np.isclose(wanted, p).any():
                continue
            latest = group.sort_values(order).iloc[-1]
            chosen = group[group["_identity"] == latest["_identity"]]
            line = placements[0] if p == 0 and len(placements) == 1 else placement
            rows.append(
                {
                    "label": arm_label(norm, line),
                    "norm_type": norm,
                    "dropout_placement": placement,
                    "dropout_p": float(p),
                    "lr": float(latest["lr"]),
                    "weight_decay": float(latest["weight_decay"]),
                    "seeds": sorted(chosen["seed"].tolist()),
                    "budget": budget_text(chosen),
                    "alternatives": int(group["_identity"].nunique() - 1),
                    "identity": latest["_identity"],
                    "config": run_config(latest),
                }
            )
    return pd.DataFrame(rows)


def budget_configs(arms: pd.DataFrame, epochs: int, seeds: Sequence[int]) -> list[TrialConfig]:
    """Every arm's tuned configuration at ``epochs`` with every seed: one list, so that one call of
    ``lib.engine.grid.run_trials`` keeps all workers busy across arms."""
    return [
        TrialConfig.from_flat(config | {"epochs": int(epochs), "seed": int(seed)})
        for config in arms["config"]
        for seed in seeds
    ]


def with_arm_labels(frame: pd.DataFrame, arms: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (trial results or runs) with each arm's ``arm`` label from :func:`budget_arms`."""
    labels = arms[ARM_KEYS + ["label"]].rename(columns={"label": "arm"})
    keyed = frame.drop(columns=["arm"], errors="ignore").assign(dropout_p=frame["dropout_p"].astype(float))
    return keyed.merge(labels, on=ARM_KEYS, how="left")


def twin_runs(runs: pd.DataFrame, arms: pd.DataFrame, seeds: Sequence[int]) -> pd.DataFrame:
    """02's own runs of the arms of :func:`budget_arms` (the same configuration, tuned lr and weight decay
    included) on ``seeds``: the same arms at 02's budget, paired by seed with the full-budget runs."""
    done = finished(runs)
    keys = pd.Series([config_identity(run_config(row)) for _, row in done.iterrows()], index=done.index, dtype=object)
    chosen = done[keys.isin(set(arms["identity"])) & done["seed"].isin(list(seeds))]
    return with_arm_labels(chosen, arms).reset_index(drop=True)


# --- overfitting ------------------------------------------------------------------------------


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
    :data:`OVERFIT_REFERENCE` of the training, ``ceil(epochs / 2)``); CI > 0 says it rose. A model that
    is still improving gives a negative difference, so the null is not tilted towards "overfits".
    The claims are described, not decided (family :data:`SENSITIVITY`).
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
    (CI > 0), and the validation accuracy fell late (CI < 0): accuracy is what a user keeps. Described
    (family :data:`SENSITIVITY`)."""
    loss = paired_effect(by_seed["val_loss_last"], by_seed["val_loss_reference"], f"overfitting, loss ({norm})")
    accuracy = paired_effect(by_seed["val_acc_last"], by_seed["val_acc_reference"], f"overfitting, accuracy ({norm})")
    stem = f"norm={norm}, no dropout: validation"
    rows = [
        verdict_row("overfit", f"{stem} loss at epoch {last_epoch} is above that at epoch {reference}", loss,
                    "CI > 0 (loss)", verdict(loss), budget_text=text, family=SENSITIVITY, unit="loss"),
        verdict_row("overfit", f"{stem} accuracy at epoch {last_epoch} is below that at epoch {reference}", accuracy,
                    "CI < 0", verdict(accuracy, direction="less"), budget_text=text, family=SENSITIVITY,
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


# --- H1 across budgets: the interaction (described) -------------------------------------------


def _with_keys(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table["norm"] = table["claim"].str.extract(r"norm=(\w+)")[0]
    # no placement in the claim (a grid without placements): the course's block order, as is
    table["variant"] = table["claim"].str.extract(r"norm=\w+(?:, ([^:]+))?:")[0].fillna("block")
    if "seed_diffs" not in table:
        table["seed_diffs"] = ""
    if "decision" not in table:  # rows not yet through verdicts.adjust: their raw verdict
        table["decision"] = table.get("verdict", "")
    for column, default in (("family", ""), ("unit", "pp"), ("_effect", None)):
        if column not in table:  # rows read back from a CSV have no Effect: their interaction is seeds-only
            table[column] = default
    return table


def _effect_of(seed_diffs: object, name: str, scale: float = 1.0) -> Effect:
    """An effect with only its per-seed differences (from a verdict row's ``seed_diffs``, divided by ``scale``)."""
    values = json.loads(seed_diffs) if isinstance(seed_diffs, str) and seed_diffs else {}
    pairs = tuple((seed_key(seed), float(v) / scale) for seed, v in values.items())
    nan = float("nan")
    return Effect(name, nan, nan, nan, nan, nan, len(pairs), diffs=pairs)


def interaction(large_diffs: object, small_diffs: object, name: str = "budget x dropout") -> Effect:
    """The budget x dropout interaction of one H1 claim: its effect at full budget minus at the smaller budget.

    Both arguments are verdict rows' ``seed_diffs`` (JSON ``{seed: difference}``, in the row's unit).
    Paired by seed when both budgets ran the same seeds, Welch otherwise
    (:func:`lib.stats.difference_of_effects`).
    """
    return difference_of_effects(_effect_of(large_diffs, "full"), _effect_of(small_diffs, "grid"), name)


def _interaction_effect(
    large_diffs: object, small_diffs: object, full: object, grid: object, unit: object
) -> Effect | None:
    """The interaction of one row pair in raw units (accuracy as a fraction): over seeds *and* validation
    images when both rows carry their two-source Effect (in memory, the same images), else over seeds;
    ``None`` without a row at both budgets."""
    if not (isinstance(large_diffs, str) and large_diffs and isinstance(small_diffs, str) and small_diffs):
        return None
    name = "budget x dropout"
    if all(isinstance(e, Effect) and e.per_image is not None for e in (full, grid)):
        return difference_of_effects(full, grid, name)  # type: ignore[arg-type]
    scale = 100.0 if unit == "pp" else 1.0
    return difference_of_effects(_effect_of(large_diffs, "full", scale), _effect_of(small_diffs, "grid", scale), name)


def budget_changes(small: pd.DataFrame, large: pd.DataFrame, same_arms: bool = False) -> pd.DataFrame:
    """H1's rows at a smaller budget next to the same rows at full budget, with the budget x dropout interaction.

    ``small``: H1 rows at the smaller budget (05: 02's own runs of the same tuned arms, its *twins*;
    04: 02's H1 rows); ``large``: the same claims at full budget. ``interaction`` (full - small, in the
    rows' unit) with its 95% interval and raw p-value says how far the effect moved with the budget; it
    is **described, not decided** (family :data:`SENSITIVITY`: no Holm; :func:`interaction_rows` makes
    verdict rows of it). A changed decision is no test of a change either way.

    Rows match on hypothesis and norm type, and with ``same_arms=True`` on the arm (the claim's variant)
    too; ``same_arm`` says whether the two rows' arms name the same placement. The in-memory column
    ``_interaction`` holds each interaction's Effect in raw units (accuracy as a fraction).
    """
    small, large = _with_keys(small), _with_keys(large)
    columns = ["hypothesis", "norm", "variant", "budget", "effect", "ci_low", "ci_high", "decision", "seed_diffs"]
    columns += ["family", "_effect"]
    keys = ["hypothesis", "norm"] + (["variant"] if same_arms else [])
    if same_arms:
        small = small.assign(variant_grid=small["variant"])
        columns = [*columns, "variant_grid"]
    merged = large.merge(small[columns], on=keys, how="left", suffixes=("", "_grid"))
    merged["same_arm"] = merged["variant"] == merged["variant_grid"]
    sides = (merged["seed_diffs"], merged["seed_diffs_grid"], merged["_effect"], merged["_effect_grid"], merged["unit"])
    effects = [_interaction_effect(*row) for row in zip(*sides, strict=True)]
    scales = np.where(merged["unit"] == "pp", 100.0, 1.0)
    nan = float("nan")
    merged["interaction"] = [e.mean * s if e else nan for e, s in zip(effects, scales, strict=True)]
    merged["interaction_ci_low"] = [e.ci_low * s if e else nan for e, s in zip(effects, scales, strict=True)]
    merged["interaction_ci_high"] = [e.ci_high * s if e else nan for e, s in zip(effects, scales, strict=True)]
    merged["interaction_p"] = [e.p_value() if e else nan for e in effects]
    merged["interaction_uncertainty"] = [e.uncertainty if e else "" for e in effects]
    merged["_interaction"] = effects
    merged["interaction_family"] = SENSITIVITY
    keep = ["hypothesis", "claim", "norm", "variant", "variant_grid", "same_arm", "unit", "budget_grid"]
    keep += ["effect_grid", "ci_low_grid", "ci_high_grid", "decision_grid", "family_grid", "budget", "effect"]
    keep += ["ci_low", "ci_high", "decision", "family", "interaction", "interaction_ci_low", "interaction_ci_high"]
    keep += ["interaction_p", "interaction_uncertainty", "interaction_family", "_interaction"]
    return merged[keep]


def interaction_rows(changes: pd.DataFrame) -> pd.DataFrame:
    """The interactions of :func:`budget_changes` as verdict rows (hypothesis ``budget x dropout``, family
    :data:`SENSITIVITY`: ``verdicts.adjust`` describes them and decides nothing); pairs without both
    budgets are left out."""
    rows = []
    for _, r in changes.iterrows():
        effect = r["_interaction"]
        if not isinstance(effect, Effect):
            continue
        claim = f"{r['claim']}: the effect is larger at {_images(r['budget'])} than at {_images(r['budget_grid'])}"
        both = " ; ".join(dict.fromkeys([str(r["budget"]), str(r["budget_grid"])]))
        rows.append(
            verdict_row("budget x dropout", claim, effect, "CI > 0 (described)", verdict(effect),
                        budget_text=both, family=SENSITIVITY, unit=r["unit"])
        )  # fmt: skip
    return pd.DataFrame(rows)


def _images(budget: object) -> str:
    """``55,000 training images × 10 epochs``: the trial budget without its validation part."""
    return str(budget).split(" | ")[0]


def _ci(low: float, high: float, unit: str = "pp") -> str:
    return f"95% CI {low:+.2f} to {high:+.2f} {unit}" if pd.notna(low) and pd.notna(high) else "no interval"


def budget_change_lines(changes: pd.DataFrame) -> list[str]:
    """Markdown lines for 04 and 05: each H1 effect at the smaller budget and at full budget, and the
    difference of the two with its interval, described (never decided), same-arm rows first."""
    same = changes[changes["same_arm"]]
    lines = [
        f"How each dropout effect moved from the smaller budget to full budget ({len(changes)} rows, {len(same)} "
        "of them the same arm at both budgets, so that only the budget differs). The change (full minus "
        f"smaller budget) is *{DESCRIBED_WORDS}*: an interval that excludes zero is a lead for a new study, one "
        "that covers zero means this run cannot tell, never that the budget does not matter."
    ]
    for r in changes.sort_values("same_arm", ascending=False).itertuples():
        arm = "same arm" if r.same_arm else f"smaller budget's arm: {r.variant_grid}; not the budget alone"
        grid = (
            f"{r.effect_grid:+.2f} pp ({_ci(r.ci_low_grid, r.ci_high_grid)})"
            if pd.notna(r.effect_grid)
            else "n/a"
        )
        if isinstance(r.family_grid, str) and r.family_grid not in ("", SENSITIVITY):
            grid += f", decided in its family: {decision_words(r.decision_grid)}"
        lines.append(
            f"- {r.hypothesis} norm={r.norm}, {r.variant} ({arm}): {grid} at {_images(r.budget_grid)} → "
            f"{r.effect:+.2f} pp ({_ci(r.ci_low, r.ci_high)}) at {_images(r.budget)}; change {_interval(r)}"
        )
    return lines


def _interval(r: object) -> str:
    value = getattr(r, "interaction", float("nan"))
    if pd.isna(value):
        return "n/a (no row at both budgets)"
    over = getattr(r, "interaction_uncertainty", "") or "seeds"
    return f"{value:+.2f} pp ({_ci(r.interaction_ci_low, r.interaction_ci_high)}, over {over}): {DESCRIBED_WORDS}"


# --- findings in plain words ------------------------------------------------------------------

_NORM_WORDS = {"none": "no normalization", "batch": "BatchNorm"}
_PLACEMENT_WORDS = {"block": "dropout in the conv blocks", "head": "dropout in the dense head"}


def _arm_words(norm: object, variant: object) -> str:
    placement = str(variant).split(" ")[0]
    return f"{_NORM_WORDS.get(str(norm), str(norm))}, {_PLACEMENT_WORDS.get(placement, str(variant))}"


def budget_findings(changes: pd.DataFrame) -> list[str]:
    """One plain sentence per H1 row of :func:`budget_changes`: the effect at both budgets and its change,
    each with its 95% interval, all described (for a week-2 reader; no decision is made here)."""
    lines = []
    for r in changes.sort_values(["norm", "hypothesis"]).itertuples():
        what = str(r.claim).split(": ", 1)[-1]
        at_grid = (
            f"{r.effect_grid:+.2f} points ({_ci(r.ci_low_grid, r.ci_high_grid, 'points')}) at {_images(r.budget_grid)}"
            if pd.notna(r.effect_grid)
            else "no row at the smaller budget"
        )
        change = (
            f"the change is {r.interaction:+.2f} points ({_ci(r.interaction_ci_low, r.interaction_ci_high, 'points')})"
            if pd.notna(r.interaction)
            else "no change can be computed"
        )
        lines.append(
            f'- **{_arm_words(r.norm, r.variant)}**, "{what}": {r.effect:+.2f} points '
            f"({_ci(r.ci_low, r.ci_high, 'points')}) at {_images(r.budget)}, against {at_grid}; {change}."
        )
    return lines


def overfit_findings(claims: pd.DataFrame) -> list[str]:
    """One plain sentence per overfitting claim of :func:`overfitting` (described): a loss change in units of
    validation loss, an accuracy change in points."""
    lines = []
    for r in claims.itertuples():
        if r.unit == "pp":
            size = f"{r.effect:+.2f} points ({_ci(r.ci_low, r.ci_high, 'points')})"
        else:
            ci = f"95% CI {r.ci_low:+.3f} to {r.ci_high:+.3f}" if pd.notna(r.ci_low) else "no interval"
            size = f"{r.effect:+.3f} in validation loss ({ci})"
        lines.append(f"- {r.claim}: {size}.")
    return lines


def search_findings(row: pd.Series, best_final: pd.Series, reference: tuple[float, float, float]) -> list[str]:
    """The search comparison in plain words: the decided difference, then each algorithm's mean best and
    the default configuration's accuracy (a reference, not tested)."""
    decision = decision_words(row["decision"] if "decision" in row.index else row["verdict"])
    means = ", ".join(f"{algo} {value:.2%}" for algo, value in best_final.items())
    return [
        f"- {row['claim']}: {row['effect']:+.2f} points ({_ci(row['ci_low'], row['ci_high'], 'points')}, "
        f"{int(row['n_seeds'])} sweep seeds): **{decision}**.",
        f"- Mean best validation accuracy after all trials: {means}; the default configuration at the same "
        f"budget: {reference[0]:.2%} (95% CI {reference[1]:.2%} to {reference[2]:.2%}; a reference line, not tested).",
    ]
