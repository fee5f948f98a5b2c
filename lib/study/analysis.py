"""The study's hypothesis tests, computed from trial results (a grid's frame or MLflow runs).

Each function takes a DataFrame with one row per finished trial (columns: the hyperparameters,
``seed``, ``val_accuracy`` ...) and returns verdict rows. The rules are fixed here, in code, before
the runs are read. Every verdict row carries: the claim, its **budget** (training images x epochs),
the number of paired seeds, the effect, its raw 95% t-interval and raw verdict, the two-sided
p-value, and (after :func:`adjust`) the **adjusted decision** of its declared family (Holm, 5%
family-wise, see ``lib.stats``).

Declared families (:data:`FAMILIES`): ``headline`` = the week-2 summary's claims H1a/H1b (per norm
type), H2a, H2b, H3a, H3b; ``variance shift`` = the recalibration and placement claims of 02b;
``budget`` = H1 re-asked at full budget and the overfitting checks (05); ``search`` = TPE vs random
search (05); ``final choice`` = the candidate comparison that picks the final model (04). A family
is decided as a whole; the README's findings quote adjusted decisions.

**What changed in the H2a rule after the first full run, and why.** The first full run (before
commit c14e679, not committed) called a learning rate "usable" when its accuracy was within 2 points
of the *global* best mean accuracy of the grid, over both norm types. That mixed H2a with H2b: a
norm type whose best accuracy is lower (no normalization) has fewer or no usable rates by
construction, so "BatchNorm widens the range" was decided by the level of its best accuracy, not
by how forgiving the learning rate is; and with no usable rate in any no-norm seed, every seed gave
the same width difference, a zero-width interval. After seeing that run the rule was changed to
each norm type's *own* best mean (this module's :func:`h2_lr_range`). The change was made after
looking at data, so it is not a pre-registered rule; v2 keeps the own-best rule, says so here and
in 04, and guards against zero-width intervals (``lib.stats``).

v2 also measures H2b at each norm type's own best learning rate (chosen on H2a's grid, confirmed in
a separate grid at H1's budget, so the choice and the measurement are different trials), and the
final model is chosen on validation among declared candidates (:func:`candidates`,
:func:`compare_candidates`).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from lib import tracking
from lib.config import TRIAL_FIELDS, TrialConfig
from lib.data import DataSpec
from lib.engine.trial import code_version
from lib.stats import (
    Effect,
    decide,
    holm,
    mean_ci,
    paired_effect,
    per_seed,
    usable_lr_run,
    verdict,
)

MODERATE_DROPOUT = (0.2, 0.4)
HIGH_DROPOUT_ABOVE = 0.5
LR_TOLERANCE = 0.02  # "usable": within 2 accuracy points of the norm type's best mean in the LR grid
LITTLE_GAIN = 0.005  # "more blocks give little": less than half an accuracy point
ALPHA = 0.05  # family-wise error rate of every family
TEST_IMAGES = 10_000

FAMILIES = {
    "headline": "H1a/H1b per norm type, H2a, H2b, H3a, H3b (02, 03): the week-2 summary's claims",
    "variance shift": "recalibration and dropout-placement claims (02b)",
    "budget": "H1 at full budget and the overfitting checks (05)",
    "search": "TPE vs random search at equal trials and budget (05)",
    "final choice": "the winner among the declared candidates vs each other candidate (04)",
}

# The headline family's declared size: H1a and H1b for each of the two norm types, H2a, H2b, H3a, H3b.
FAMILY_SIZES = {"headline": 8}

# The default configuration of the candidate list: the library's defaults (2 blocks of 32/64
# channels, AdamW lr 1e-3, weight decay 5e-4, batch 128, cosine) with BatchNorm and no dropout,
# i.e. the course's recipe and 03's 2-block arm.
DEFAULT_CONFIG = {"norm_type": "batch", "dropout_p": 0.0, "num_conv_blocks": 2}

DISPLAY_COLUMNS = [
    "hypothesis",
    "claim",
    "budget",
    "n_seeds",
    "effect",
    "ci_low",
    "ci_high",
    "unit",
    "verdict",
    "p_value",
    "p_holm",
    "decision",
]


class MissingRunsError(RuntimeError):
    """The runs an analysis needs are not in the store yet; the message says what to run."""


def trial_runs(experiment: str, hypothesis: str | None = None, profile: str | None = None) -> pd.DataFrame:
    """Finished and failed trial runs of ``experiment`` (optionally one hypothesis/profile), from MLflow."""
    frame = tracking.runs_frame(experiment, status=None)
    if frame.empty or "tag.trial_key" not in frame:
        raise MissingRunsError(
            f"no trial runs in MLflow experiment '{experiment}' yet: run the notebook "
            f"that produces it first (`make run` runs them all in order)."
        )
    # trials of the current training code only: a store may also hold runs of older code versions
    frame = frame[
        frame["tag.trial_key"].notna()
        & frame["status"].isin([tracking.FINISHED, tracking.FAILED])
        & (frame["tag.code_version"] == code_version())
    ]
    if hypothesis is not None:  # trained for it, or a cached run reused by it (tag ``hypotheses``)
        listed = frame["tag.hypotheses"] if "tag.hypotheses" in frame else pd.Series("", index=frame.index)
        reused = listed.fillna("").str.split(",").apply(lambda names: hypothesis in names)
        frame = frame[(frame["tag.hypothesis"] == hypothesis) | reused]
    if profile is not None:
        frame = frame[frame["tag.profile"] == profile]
    if frame.empty:
        raise MissingRunsError(
            f"no trial runs for hypothesis={hypothesis!r}, profile={profile!r} in '{experiment}': "
            f"run that notebook with this profile first (`make run` runs them all in order)."
        )
    # a trial may have been logged under several keys only if the code changed: keep the newest
    return frame.sort_values("start_time").drop_duplicates("tag.trial_key", keep="last")


def trial_runs_or_empty(experiment: str, hypothesis: str | None = None, profile: str | None = None) -> pd.DataFrame:
    """:func:`trial_runs`, or an empty frame when there are none (for inputs that may all be cache hits)."""
    try:
        return trial_runs(experiment, hypothesis, profile)
    except MissingRunsError:
        return pd.DataFrame(columns=["tag.trial_key", "status", "epochs", "dropout_p", "lr", "norm_type"])


# The controlled grids the headline and variance-shift families are decided from:
# (input name, notebook experiment, hypothesis tag).
GRID_INPUTS = (
    ("H1", "02_norm_dropout", "H1"),
    ("H2", "02_norm_dropout", "H2"),
    ("shift", "02b_dropout_bn", "variance_shift"),
    ("H3", "03_conv_blocks", "H3"),
)


def grid_inputs(named: Callable[[str], str], profile: str) -> dict[str, pd.DataFrame]:
    """The trial runs of 02, 02b and 03 in ``profile``, keyed as in :data:`GRID_INPUTS` plus ``H2b``.

    ``named`` maps a notebook's base name to its experiment (``profiles.experiment_name`` for one
    data set and user). Raises :class:`MissingRunsError` naming the notebook to run when one is
    missing. H2b's confirmation trials may all be cache hits of H1's grid, so none may carry its tag.
    """
    inputs = {name: trial_runs(named(base), hypothesis, profile) for name, base, hypothesis in GRID_INPUTS}
    inputs["H2b"] = trial_runs_or_empty(named("02_norm_dropout"), "H2b", profile)
    return inputs


def grid_verdicts(inputs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every claim of the ``headline`` and ``variance shift`` families, each decided over its whole family.

    The one place these decisions are made: 04 shows them, 05 sets its full-budget H1 next to them.
    (Adjusting a part of a family, as 02 does, counts the missing claims as not rejected and can only
    be more cautious.)
    """
    _, h2a = h2_lr_range(inputs["H2"])
    h2b = h2b_from_runs(inputs["H1"], inputs["H2b"], inputs["H2"])
    _, shift_effects = variance_shift(inputs["shift"])
    return adjust(pd.concat([h1(inputs["H1"]), h2a, h2b, h3(inputs["H3"]), shift_effects], ignore_index=True))


# --- budgets ---------------------------------------------------------------------------------


def train_images(data: DataSpec | None = None, frame: pd.DataFrame | None = None) -> int | None:
    """Training images per epoch of a grid: from its DataSpec, or from the runs' ``data_*`` params."""
    if data is not None:  # counted from the loaded split: any data set, a subset larger than its part means all
        splits = data.load()
        return len(splits.train) + (len(splits.val) if data.final else 0)
    if frame is not None and "data_train_subset" in frame:
        from lib.report import runs_train_images  # one reading of runs' data_* params, for any data set

        sizes = runs_train_images(frame).unique()
        return int(sizes[0]) if len(sizes) == 1 else None
    return None


def budget(images: int | None, epochs: object) -> str:
    """``"8,000 img × 10 ep"``: training images per epoch times epochs (several epochs: joined by /)."""
    if isinstance(epochs, pd.Series | np.ndarray | list | tuple | set):
        values = sorted({int(e) for e in pd.Series(list(epochs)).dropna()})
        epochs_text = "/".join(str(e) for e in values) if values else "?"
    else:
        epochs_text = str(int(epochs)) if epochs == epochs and epochs is not None else "?"
    return f"{images:,} img × {epochs_text} ep" if images else f"? img × {epochs_text} ep"


def _budget_of(frame: pd.DataFrame, data: DataSpec | None) -> str:
    return budget(train_images(data, frame), frame.get("epochs"))


def _finished(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"].isin(["finished", tracking.FINISHED])]


# --- verdict rows and the family-wise decision -------------------------------------------------


def _row(
    hypothesis: str,
    claim: str,
    effect: Effect,
    rule: str,
    outcome: str,
    *,
    budget_text: str = "",
    family: str = "headline",
    margin: float = 0.0,
    direction: str = "greater",
    unit: str = "pp",
    note: str = "",
) -> dict[str, object]:
    scale = 100.0 if unit == "pp" else 1.0
    row = {
        "hypothesis": hypothesis,
        "claim": claim,
        "budget": budget_text,
        "n_seeds": effect.n,
        "effect": effect.mean * scale,
        "ci_low": effect.ci_low * scale,
        "ci_high": effect.ci_high * scale,
        "unit": unit,
        "rule": rule,
        "verdict": outcome,
        "p_value": effect.p_value(margin),
        "margin": margin * scale,
        "direction": direction,
        "family": family,
        "degenerate": effect.degenerate,
        "note": note,
    }
    # the v1 column names, kept for readers of verdicts*.csv
    suffix = "pp" if unit == "pp" else "decades"
    row |= {
        f"effect_{suffix}": row["effect"],
        f"ci_low_{suffix}": row["ci_low"],
        f"ci_high_{suffix}": row["ci_high"],
    }
    return row


def adjust(table: pd.DataFrame, alpha: float = ALPHA, family_sizes: dict[str, int] | None = None) -> pd.DataFrame:
    """Add ``p_holm`` and ``decision``: Holm's adjustment within each declared family (``family`` column).

    ``family_sizes``: the declared number of claims of a family (default :data:`FAMILY_SIZES`). When a
    notebook holds only part of a family (02 and 03 each hold part of ``headline``), the missing
    claims count as not rejected (p = 1): the decision is then never bolder than the one over the
    whole family, which 04 computes.
    """
    sizes = FAMILY_SIZES | (family_sizes or {})
    table = table.copy()
    if table.empty:
        return table.assign(p_holm=pd.Series(dtype=float), decision=pd.Series(dtype=str))
    table["p_holm"] = np.nan
    table["decision"] = "inconclusive"
    for family, rows in table.groupby("family", sort=False):
        p = rows["p_value"].to_numpy(dtype=float)
        missing = max(0, sizes.get(family, len(p)) - len(p))
        adjusted, _ = holm(np.concatenate([p, np.ones(missing)]), alpha)
        adjusted = adjusted[: len(p)]
        table.loc[rows.index, "p_holm"] = adjusted
        table.loc[rows.index, "decision"] = [
            decide(e, p, m, d, alpha)
            for e, p, m, d in zip(rows["effect"], adjusted, rows["margin"], rows["direction"], strict=True)
        ]
    return table


def display(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The columns a verdict table shows: claim, budget, n seeds, effect, raw CI, raw verdict, adjusted decision."""
    columns = [c for c in DISPLAY_COLUMNS if c in table]
    return table[columns].round(digits)


def _fmt(value: float, unit: str) -> str:
    if value != value:
        return "n/a"
    return f"{value:+.2f} {unit}"


def summary_markdown(table: pd.DataFrame) -> str:
    """One bullet per verdict row, written from the numbers (for the notebooks' discussion cells)."""
    lines = []
    for _, row in table.iterrows():
        interval = (
            f"95% CI {_fmt(row['ci_low'], row['unit'])} to {_fmt(row['ci_high'], row['unit'])}"
            if row["ci_low"] == row["ci_low"]
            else "no interval (degenerate or too few seeds)"
        )
        decision = row.get("decision", "not adjusted")
        lines.append(
            f"- **{row['hypothesis']}** {row['claim']} ({row['budget']}, {row['n_seeds']} seeds): "
            f"{_fmt(row['effect'], row['unit'])} ({interval}); raw: *{row['verdict']}*, "
            f"Holm within '{row['family']}': **{decision}**"
            + (f" — {row['note']}" if isinstance(row.get("note"), str) and row.get("note") else "")
        )
    return "\n".join(lines)


# --- H1: dropout ------------------------------------------------------------------------------


def h1(
    frame: pd.DataFrame, data: DataSpec | None = None, family: str = "headline", by_placement: bool = False
) -> pd.DataFrame:
    """H1 per norm type: moderate dropout beats none (H1a); dropout above 0.5 hurts vs moderate (H1b).

    ``by_placement=True`` (05) gives each (norm type, dropout placement) its own pair of claims; the
    ``dropout_p = 0`` arm of a norm type is the shared control (placement cannot matter without dropout).
    """
    rows = []
    finished = _finished(frame)
    text = _budget_of(finished, data)
    groups = []
    for norm in sorted(finished["norm_type"].unique()):
        arm = finished[finished["norm_type"] == norm]
        none = arm[arm["dropout_p"] == 0]
        dropped = arm[arm["dropout_p"] > 0]
        placements = sorted(dropped["dropout_placement"].unique()) if by_placement and len(dropped) else [None]
        for placement in placements:
            chosen = dropped if placement is None else dropped[dropped["dropout_placement"] == placement]
            if (
                by_placement
                and "recalibrate_bn" in chosen
                and norm == "batch"
                and chosen["recalibrate_bn"].astype(bool).all()
            ):
                label = f"norm={norm}, {placement} + recalibration"
            else:
                label = f"norm={norm}" + (f", {placement}" if placement else "")
            groups.append((label, none, chosen))
    for label, none, chosen in groups:
        moderate = chosen[chosen["dropout_p"].between(*MODERATE_DROPOUT)]
        high = chosen[chosen["dropout_p"] > HIGH_DROPOUT_ABOVE]
        if moderate.empty or none.empty:
            continue
        gain = paired_effect(per_seed(moderate), per_seed(none), f"moderate - none ({label})")
        rows.append(
            _row(
                "H1a",
                f"{label}: dropout 0.2-0.4 beats none",
                gain,
                "CI > 0",
                verdict(gain),
                budget_text=text,
                family=family,
            )
        )
        if not high.empty:
            loss = paired_effect(per_seed(high), per_seed(moderate), f"high - moderate ({label})")
            rows.append(
                _row(
                    "H1b",
                    f"{label}: dropout > 0.5 hurts vs 0.2-0.4",
                    loss,
                    "CI < 0",
                    verdict(loss, direction="less"),
                    budget_text=text,
                    family=family,
                    direction="less",
                )
            )
    return pd.DataFrame(rows)


# --- H2: BatchNorm ----------------------------------------------------------------------------


def lr_grid_step(frame: pd.DataFrame) -> float:
    """The learning-rate grid's step in decades (the median gap between neighbouring grid points)."""
    lrs = np.sort(frame["lr"].dropna().unique())
    return float(np.median(np.diff(np.log10(lrs)))) if len(lrs) > 1 else 0.0


def h2_lr_range(frame: pd.DataFrame, data: DataSpec | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """H2a: usable learning-rate range (decades) per seed and norm, and the batch - none effect.

    A learning rate is usable for a norm type when a seed's accuracy there is within
    ``LR_TOLERANCE`` of that norm type's *own* best mean accuracy over the grid (the rule changed
    after the first full run, see the module docstring): the range measures how forgiving the
    choice of learning rate is, separately from how high the best accuracy is (H2b). Widths are
    multiples of the grid step, so the zero-width guard floors the standard deviation of the
    per-seed differences at step/sqrt(6). A range that touches the grid's edge is only a lower
    bound; the row's note says so.
    """
    filled = frame.fillna({"val_accuracy": 0.0})
    best_mean = filled.groupby(["norm_type", "lr"])["val_accuracy"].mean().groupby(level=0).max()
    edges = (filled["lr"].min(), filled["lr"].max())
    rows = []
    for (seed, norm), group in filled.groupby(["seed", "norm_type"]):
        width, low, high = usable_lr_run(group, LR_TOLERANCE, best_mean[norm])
        rows.append(
            {
                "seed": seed,
                "norm_type": norm,
                "reference": best_mean[norm],
                "usable_decades": width,
                "usable_low": low,
                "usable_high": high,
                "touches_edge": bool(low == edges[0] or high == edges[1]),
            }
        )
    widths = pd.DataFrame(rows)
    widths["usable_decades"] = widths["usable_decades"].fillna(-1.0)  # no usable LR at all: below 0 width
    by_seed = widths.pivot(index="seed", columns="norm_type", values="usable_decades")
    step = lr_grid_step(filled)
    effect = paired_effect(
        by_seed["batch"], by_seed["none"], "usable LR decades, batch - none", min_sd=step / math.sqrt(6)
    )
    open_ended = sorted(widths.loc[widths["touches_edge"], "norm_type"].unique())
    note = (
        f"range reaches the grid edge for {', '.join(open_ended)}: that width is a lower bound"
        if open_ended
        else f"both ranges bounded inside the grid ({edges[0]:.2g} to {edges[1]:.2g}, step {step:.2f} decades)"
    )
    row = _row(
        "H2a",
        "BatchNorm widens the usable learning-rate range",
        effect,
        "CI > 0 (decades)",
        verdict(effect),
        budget_text=_budget_of(filled, data),
        unit="decades",
        note=note,
    )
    return widths, pd.DataFrame([row])


def best_lrs(frame: pd.DataFrame) -> dict[str, float]:
    """Each norm type's own best learning rate on the H2a grid (highest mean; failed trials count as 0)."""
    means = frame.fillna({"val_accuracy": 0.0}).groupby(["norm_type", "lr"])["val_accuracy"].mean()
    return {norm: float(group.idxmax()[1]) for norm, group in means.groupby(level=0)}


def h2_best(frame: pd.DataFrame, arm_columns: list[str] | None = None, data: DataSpec | None = None) -> pd.DataFrame:
    """H2b: BatchNorm vs no normalization, each at its own best arm (by mean), paired by seed.

    In v2 ``frame`` is the confirmation grid: each norm type at its own best learning rate from
    H2a's grid (:func:`best_lrs`), trained at H1's budget, so each norm has one arm and choosing it
    did not use these trials.
    """
    arm_columns = arm_columns or ["lr"]
    finished = _finished(frame)
    best, labels = {}, {}
    for norm in ("batch", "none"):
        arms = finished[finished["norm_type"] == norm].groupby(arm_columns)["val_accuracy"].mean()
        best_arm = arms.idxmax()
        best_arm = best_arm if isinstance(best_arm, tuple) else (best_arm,)
        where = dict(zip(arm_columns, best_arm, strict=True))
        labels[norm] = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in where.items())
        best[norm] = per_seed(finished, norm_type=norm, **where)
    effect = paired_effect(best["batch"], best["none"], "best batch arm - best none arm")
    claim = f"BatchNorm raises the best accuracy (batch at {labels['batch']} vs none at {labels['none']})"
    return pd.DataFrame([_row("H2b", claim, effect, "CI > 0", verdict(effect), budget_text=_budget_of(finished, data))])


# --- H3: conv blocks --------------------------------------------------------------------------


def h3(frame: pd.DataFrame, data: DataSpec | None = None) -> pd.DataFrame:
    """H3: 1-2 blocks beat 0; 3+ blocks add less than half a point over the best of 1-2."""
    finished = _finished(frame)
    text = _budget_of(finished, data)
    rows = []
    zero = per_seed(finished, num_conv_blocks=0)
    one_two = per_seed(finished, num_conv_blocks=[1, 2])
    gain = paired_effect(one_two, zero, "1-2 blocks - 0 blocks")
    rows.append(_row("H3a", "1-2 conv blocks beat 0", gain, "CI > 0", verdict(gain), budget_text=text))
    deep = finished[finished["num_conv_blocks"] >= 3]
    if not deep.empty:
        means = finished[finished["num_conv_blocks"].isin([1, 2])].groupby("num_conv_blocks")["val_accuracy"].mean()
        best_shallow = int(means.idxmax())
        more = paired_effect(
            per_seed(deep), per_seed(finished, num_conv_blocks=best_shallow), f"3+ blocks - {best_shallow} blocks"
        )
        rows.append(
            _row(
                "H3b",
                f"3+ blocks give little (< +{LITTLE_GAIN * 100:.1f} pp) or hurt vs {best_shallow}",
                more,
                f"CI < +{LITTLE_GAIN * 100:.1f} pp",
                verdict(more, LITTLE_GAIN, "less"),
                budget_text=text,
                margin=LITTLE_GAIN,
                direction="less",
            )
        )
    return pd.DataFrame(rows)


# --- 02b: dropout x BatchNorm -----------------------------------------------------------------


def variance_shift(frame: pd.DataFrame, data: DataSpec | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recalibration effect (after - before, same weights) and placement effects vs ``block``.

    Returns (arm summary rows for the figure, effect rows with verdicts; family ``variance shift``).
    """
    finished = _finished(frame)
    finished = finished[finished["dropout_p"] > 0].copy()
    text = _budget_of(finished, data)
    before = "val_accuracy_before_recalibration"
    has_recal = finished["recalibrate_bn"].astype(bool) & finished[before].notna() if before in finished else None
    arms, effects = [], []
    family = "variance shift"
    for (norm, placement, p), group in finished.groupby(["norm_type", "dropout_placement", "dropout_p"]):
        label = f"{norm}/{placement}/p={p:g}"
        if norm == "batch" and has_recal is not None and has_recal[group.index].all():
            arms.append({"arm": f"{label}/plain", "values": group.set_index("seed")[before]})
            arms.append({"arm": f"{label}/recal", "values": group.set_index("seed")["val_accuracy"]})
            effect = paired_effect(
                group.set_index("seed")["val_accuracy"], group.set_index("seed")[before], f"recalibration ({label})"
            )
            effects.append(
                _row(
                    "shift",
                    f"recalibrating BN helps: {label}",
                    effect,
                    "CI > 0",
                    verdict(effect),
                    budget_text=text,
                    family=family,
                )
            )
        else:
            arms.append({"arm": label, "values": group.set_index("seed")["val_accuracy"]})
    for (norm, p), group in finished.groupby(["norm_type", "dropout_p"]):
        block = per_seed(group, dropout_placement="block")
        for placement in sorted(set(group["dropout_placement"]) - {"block"}):
            effect = paired_effect(
                per_seed(group, dropout_placement=placement), block, f"{placement} - block ({norm}, p={p:g})"
            )
            effects.append(
                _row(
                    "placement",
                    f"{norm}, p={p:g}: dropout placement '{placement}' beats 'block'",
                    effect,
                    "CI > 0",
                    verdict(effect),
                    budget_text=text,
                    family=family,
                )
            )
    summary = pd.DataFrame(
        [
            {
                "arm": a["arm"],
                "n": len(a["values"]),
                **dict(zip(["mean", "ci_low", "ci_high"], mean_ci(a["values"].tolist()), strict=True)),
            }
            for a in arms
        ]
    )
    return summary, pd.DataFrame(effects)


def _decisions(effects: pd.DataFrame) -> pd.Series:
    """The adjusted decision where there is one, else the raw verdict."""
    return effects["decision"] if "decision" in effects else effects["verdict"]


def best_bn_placement(shift_effects: pd.DataFrame) -> tuple[str, str]:
    """BatchNorm's best dropout placement from 02b: the largest placement effect vs ``block`` with
    BatchNorm whose (adjusted) decision is *supported*; ``block`` if none is."""
    if shift_effects.empty:
        return "block", "no 02b runs: the course's block order"
    rows = shift_effects[
        (shift_effects["hypothesis"] == "placement")
        & shift_effects["claim"].str.startswith("batch")
        & (_decisions(shift_effects) == "supported")
    ]
    if rows.empty:
        return "block", "no placement beat 'block' with BatchNorm (adjusted decisions): keep the block order"
    winner = rows.sort_values("effect").iloc[-1]
    placement = winner["claim"].split("'")[1]
    return placement, (
        f"'{placement}': {winner['claim']} ({winner['effect']:+.2f} pp, 95% CI {winner['ci_low']:+.2f} to "
        f"{winner['ci_high']:+.2f}, {winner['budget']}; Holm: {winner.get('decision', winner['verdict'])})"
    )


def final_choice(best: dict[str, object], shift_effects: pd.DataFrame) -> tuple[dict[str, object], list[str]]:
    """A configuration adjusted by the variance-shift decisions (adjusted ones where present).

    Recalibration is switched on (for a BatchNorm model) only if some recalibration effect is
    *supported*; a dropout placement other than ``block`` only if it beat ``block`` with BatchNorm
    with a *supported* decision (the largest such effect wins).
    """
    config, reasons = dict(best), []
    if config.get("norm_type") != "batch" or shift_effects.empty:
        reasons.append("the chosen model has no BatchNorm (or no variance-shift runs): nothing to adjust")
        return config, reasons
    decisions = _decisions(shift_effects)
    recal = shift_effects[(shift_effects["hypothesis"] == "shift") & shift_effects["claim"].str.contains("batch/")]
    supported = decisions[recal.index] == "supported"
    if supported.any():
        config["recalibrate_bn"] = True
        reasons.append(
            f"BN recalibration on: supported in {int(supported.sum())} of {len(recal)} arms "
            f"(mean gain {recal['effect'].mean():+.2f} pp)"
        )
    else:
        reasons.append("BN recalibration left off: its effect was not supported")
    placement, why = best_bn_placement(shift_effects)
    if float(config.get("dropout_p", 0)) > 0 and placement != "block":
        config["dropout_placement"] = placement
        reasons.append(f"dropout placement {why}")
    else:
        reasons.append(f"dropout placement kept at '{config.get('dropout_placement')}'")
    return config, reasons


# --- the final model: declared candidates ------------------------------------------------------


def _clean(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str) and value.startswith("("):
        return ast.literal_eval(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def run_config(row: pd.Series) -> dict[str, object]:
    """The flat trial config of one MLflow run row (its logged params), without seed and epochs."""
    config = {name: _clean(row[name]) for name in TRIAL_FIELDS if name in row.index and name not in ("seed", "epochs")}
    return {k: v for k, v in config.items() if v is not None or k == "early_stopping_patience"}


def _identity(config: dict[str, object]) -> str:
    """Fingerprint of a config regardless of seed and epochs (two candidates are the same model+recipe)."""
    flat = {k: v for k, v in config.items() if k not in ("seed", "epochs")}
    return TrialConfig.from_flat(flat | {"seed": 0, "epochs": 1}).fingerprint()


def controlled_arms(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every arm of the controlled grids (``{label: MLflow trial runs}``) with its mean validation accuracy.

    An arm is a config without seed; arms with fewer than two finished seeds are left out.
    """
    rows = []
    for label, frame in frames.items():
        finished = frame[frame["status"] == tracking.FINISHED]
        if finished.empty:
            continue
        configs = finished.apply(run_config, axis=1)
        keys = configs.map(lambda c: TrialConfig.from_flat(c | {"seed": 0}).fingerprint())
        for _, group in finished.groupby(keys.to_numpy()):
            if len(group) < 2:
                continue
            config = run_config(group.iloc[0])
            mean, low, high = mean_ci(group["val_accuracy"].tolist())
            rows.append(
                {
                    "source": label,
                    "config": config,
                    "identity": _identity(config),
                    "budget": _budget_of(group, None),
                    "n": len(group),
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows).sort_values("mean", ascending=False, ignore_index=True) if rows else pd.DataFrame()


def candidates(sweep_best: dict[str, object], arms: pd.DataFrame) -> list[dict[str, object]]:
    """The declared candidates for the final model, in order, without duplicates.

    1. ``sweep best``: the TPE sweep's best trial (adjusted by 02b's decisions, :func:`final_choice`);
    2. ``default``: :data:`DEFAULT_CONFIG` over the library defaults;
    3. ``best controlled arm``: the arm with the highest mean validation accuracy over the
       controlled grids of 02, 02b and 03 (:func:`controlled_arms`) that is not already a candidate.

    Nominating looks at each arm's own budget (they differ); the candidates are then compared at
    one budget, with the same seeds (:func:`compare_candidates`).
    """
    listed: list[dict[str, object]] = []
    seen: set[str] = set()

    def add(name: str, config: dict[str, object], reason: str) -> None:
        flat = {k: v for k, v in config.items() if k not in ("seed", "epochs")}
        identity = _identity(flat)
        if identity not in seen:
            seen.add(identity)
            listed.append({"candidate": name, "config": flat, "reason": reason})

    add("sweep best", sweep_best, "the TPE sweep's best trial, adjusted by 02b")
    add("default", TrialConfig.from_flat(DEFAULT_CONFIG).flat(), "library defaults with BatchNorm, no dropout")
    for _, arm in arms.iterrows() if not arms.empty else []:
        if arm["identity"] not in seen:
            add(
                "best controlled arm",
                arm["config"],
                f"{arm['source']}: mean {arm['mean']:.2%} over {arm['n']} seeds at {arm['budget']}",
            )
            break
    return listed


def describe_config(config: dict[str, object]) -> str:
    """The fields of ``config`` that differ from the library defaults, as ``name=value`` text."""
    defaults = TrialConfig().flat()
    parts = []
    for key, value in config.items():
        if key in ("seed", "epochs") or defaults.get(key) == value:
            continue
        parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(parts) or "library defaults"


def compare_candidates(frame: pd.DataFrame, data: DataSpec | None = None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Summary per candidate, the winner's paired effects over the others (family ``final choice``), the winner.

    ``frame``: one row per candidate trial with columns ``candidate``, ``seed``, ``val_accuracy``,
    ``status``, ``epochs``. The winner is the candidate with the highest mean validation accuracy
    (the declared rule); the effect rows say how clearly it beat each other candidate.
    """
    finished = _finished(frame)
    summary = pd.DataFrame(
        [
            {
                "candidate": name,
                "n": len(group),
                **dict(zip(["mean", "ci_low", "ci_high"], mean_ci(group["val_accuracy"].tolist()), strict=True)),
            }
            for name, group in finished.groupby("candidate", sort=False)
        ]
    )
    winner = str(summary.sort_values("mean", ascending=False).iloc[0]["candidate"])
    text = _budget_of(finished, data)
    rows = []
    for other in summary["candidate"]:
        if other == winner:
            continue
        effect = paired_effect(
            per_seed(finished, candidate=winner), per_seed(finished, candidate=other), f"{winner} - {other}"
        )
        rows.append(
            _row(
                "final",
                f"'{winner}' beats '{other}' on validation",
                effect,
                "CI > 0",
                verdict(effect),
                budget_text=text,
                family="final choice",
            )
        )
    return summary, pd.DataFrame(rows), winner


# --- 05: budget and search --------------------------------------------------------------------


def epoch_histories(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch train loss, validation loss and accuracy of every finished run in ``frame`` (MLflow)."""
    parts = []
    finished = _finished(frame)
    for _, row in finished.iterrows():
        history = tracking.metric_history(row["run_id"]).reset_index()
        for column in ("norm_type", "dropout_p", "dropout_placement", "seed", "arm"):
            if column in row.index:
                history[column] = row[column]
        parts.append(history)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def overfitting(
    histories: pd.DataFrame, data: DataSpec | None = None, epochs: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/validation gap per arm, and whether the no-dropout arms overfit measurably.

    Per run: ``gap`` = validation loss - training loss in the last epoch (the training loss is the
    running mean over that epoch, measured with dropout on, so for dropout arms the gap is
    understated); ``rise`` = last validation loss - its minimum over epochs (> 0: the model got
    worse on held-out data while training on: overfitting). Rows: per arm mean gap/rise with CIs,
    and one claim per norm type "the no-dropout arm overfits" (rise, CI > 0; family ``budget``).
    """
    per_run = []
    for (arm, seed), group in histories.groupby(["arm", "seed"]):
        group = group.sort_values("epoch")
        last = group.iloc[-1]
        per_run.append(
            {
                "arm": arm,
                "seed": seed,
                "norm_type": last["norm_type"],
                "dropout_p": last["dropout_p"],
                "train_loss": last["train_loss"],
                "val_loss": last["val_loss"],
                "gap": last["val_loss"] - last["train_loss"],
                "rise": last["val_loss"] - group["val_loss"].min(),
                "best_epoch": int(group.loc[group["val_loss"].idxmin(), "epoch"]),
            }
        )
    runs = pd.DataFrame(per_run)
    summary = []
    for arm, group in runs.groupby("arm"):
        gap, gap_low, gap_high = mean_ci(group["gap"].tolist())
        rise, rise_low, rise_high = mean_ci(group["rise"].tolist())
        summary.append(
            {
                "arm": arm,
                "n": len(group),
                "gap": gap,
                "gap_ci_low": gap_low,
                "gap_ci_high": gap_high,
                "rise": rise,
                "rise_ci_low": rise_low,
                "rise_ci_high": rise_high,
                "best_epoch_mean": group["best_epoch"].mean(),
            }
        )
    images = train_images(data)
    text = budget(images, epochs) if epochs else ""
    claims = []
    for norm, group in runs[runs["dropout_p"] == 0].groupby("norm_type"):
        values = group.set_index("seed")["rise"]
        effect = paired_effect(values, values * 0, f"overfitting ({norm})")
        claims.append(
            {
                **_row(
                    "overfit",
                    f"norm={norm}, no dropout: validation loss rises after its minimum",
                    effect,
                    "CI > 0 (loss)",
                    verdict(effect),
                    budget_text=text,
                    family="budget",
                    unit="loss",
                )
            }
        )
    return pd.DataFrame(summary), pd.DataFrame(claims)


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
    return pd.DataFrame(
        [
            _row(
                "search",
                f"TPE's best after {trials} trials beats random search's (paired by sweep seed)",
                effect,
                "CI > 0",
                verdict(effect),
                budget_text=budget_text,
                family="search",
            )
        ]
    )


def budget_changes(small: pd.DataFrame, large: pd.DataFrame) -> pd.DataFrame:
    """H1's decisions at the grid budget (02) next to those at full budget (05), per norm type.

    ``same_arm`` is true where the two rows differ only in budget: the grid's arm (02: dropout in the
    block order, no recalibration) is the full-budget row's arm. Where it is false (BatchNorm with
    recalibration or dropout in the head at full budget), a changed decision mixes budget with the
    fix of 02b and is not a budget effect alone.
    """

    def key(table: pd.DataFrame) -> pd.DataFrame:
        table = table.copy()
        table["norm"] = table["claim"].str.extract(r"norm=(\w+)")[0]
        # no placement in the claim (02's grid): the course's block order, as is
        table["variant"] = table["claim"].str.extract(r"norm=\w+(?:, ([^:]+))?:")[0].fillna("block")
        return table

    small, large = key(small), key(large)
    merged = large.merge(
        small[["hypothesis", "norm", "variant", "budget", "effect", "ci_low", "ci_high", "decision"]],
        on=["hypothesis", "norm"],
        how="left",
        suffixes=("", "_grid"),
    )
    merged["same_arm"] = merged["variant"] == merged["variant_grid"]
    merged["changed"] = merged["decision"] != merged["decision_grid"]
    return merged[
        [
            "hypothesis",
            "norm",
            "variant",
            "variant_grid",
            "same_arm",
            "budget_grid",
            "effect_grid",
            "ci_low_grid",
            "ci_high_grid",
            "decision_grid",
            "budget",
            "effect",
            "ci_low",
            "ci_high",
            "decision",
            "changed",
        ]
    ]


def budget_change_lines(changes: pd.DataFrame) -> list[str]:
    """Markdown lines for 04 and 05: how many H1 decisions changed with budget, those of the same arm first."""
    same = changes[changes["same_arm"]]
    lines = [
        f"H1 decisions that differ between the grid budget and full budget: {int(changes['changed'].sum())} of "
        f"{len(changes)}; among the rows whose arm is the same at both budgets (only the budget differs): "
        f"{int(same['changed'].sum())} of {len(same)}."
    ]
    for r in changes.sort_values("same_arm", ascending=False).itertuples():
        arm = "same arm" if r.same_arm else f"grid arm: {r.variant_grid}, no recalibration"
        mark = "changed" if r.changed else "unchanged"
        lines.append(
            f"- {r.hypothesis} norm={r.norm}, {r.variant} ({arm}): {r.decision_grid} at {r.budget_grid} "
            f"({r.effect_grid:+.2f} pp) → {r.decision} at {r.budget} ({r.effect:+.2f} pp): {mark}"
        )
    return lines


def h2b_from_runs(h1_runs: pd.DataFrame, h2b_runs: pd.DataFrame, lr_runs: pd.DataFrame) -> pd.DataFrame:
    """H2b recomputed from MLflow runs (04): each norm type at its own best rate of the H2a grid.

    A confirmation trial that was a cache hit of H1's grid (or of the H2a grid, when both train
    equally long) is logged under that grid's tag, so all three are read.
    """
    own_best = best_lrs(lr_runs)
    frame = pd.concat([h1_runs, lr_runs] + ([h2b_runs] if len(h2b_runs) else []), ignore_index=True)
    frame = frame.drop_duplicates("tag.trial_key")
    epochs = h1_runs["epochs"].max()  # the confirmation grid trains at H1's budget
    mask = (frame["dropout_p"] == 0) & (frame["epochs"] == epochs)
    mask &= frame.apply(lambda row: bool(np.isclose(row["lr"], own_best.get(row["norm_type"], np.nan))), axis=1)
    return h2_best(frame[mask], ["lr"])


def recommendation(winner: str, effects: pd.DataFrame) -> tuple[str, str]:
    """The recommended candidate and the row that backs it (the rule is in 04's markdown).

    The winner if it is the default, or if its advantage over the default is *supported* after
    adjustment; otherwise the default, since the evidence does not favour the other configuration.
    """

    def quote(row: pd.Series) -> str:
        return (
            f"{row['claim']}: {row['effect']:+.2f} pp (95% CI {row['ci_low']:+.2f} to {row['ci_high']:+.2f}), "
            f"{row['budget']}, {row['n_seeds']} seeds; raw {row['verdict']}, Holm '{row['family']}': {row['decision']}"
        )

    if effects.empty:
        return winner, "the only distinct candidate (no comparison row)"
    if winner == "default":
        return winner, "; ".join(quote(row) for _, row in effects.iterrows())
    versus_default = effects[effects["claim"].str.contains("'default'")]
    if versus_default.empty:
        return winner, "; ".join(quote(row) for _, row in effects.iterrows())
    row = versus_default.iloc[0]
    if row["decision"] == "supported":
        return winner, quote(row)
    return "default", f"the winner's advantage is not established: {quote(row)}"
