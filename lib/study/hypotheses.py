"""The study's hypotheses as verdict rows: H1 (dropout), H2 (BatchNorm), H3 (conv blocks), the variance shift.

Each function takes a DataFrame with one row per trial (a grid's results frame or MLflow runs: the
hyperparameters, ``seed``, ``val_accuracy`` ...) and returns verdict rows (``verdicts.row``). The rules
are fixed here, in code, before the runs are read; claims name the values that were run. H2a's rule
(each norm type's *own* best mean) and its history are told in ``docs/design.md``.

What this is not: the family-wise decision (``verdicts.adjust``), the final model (``final``) or 05's
budget and search comparisons (``comparisons``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from lib.data import DataSpec
from lib.stats import NOT_SHOWN, Effect, censored_effect, interpolated_width, mean_ci, paired_effect, verdict
from lib.store.schema import (
    TAG_HALVING_ETA,
    TAG_HALVING_RUNGS,
    TAG_RANGE_EXTENSIONS,
    TAG_TUNE_SEEDS,
    TAG_TUNING_DECIDED,
    TAG_TUNING_RANGES,
    column,
)
from lib.study.inputs import budget_text, finished
from lib.study.verdicts import adjust, effect_between, verdict_row

MODERATE_DROPOUT = (0.2, 0.4)
HIGH_DROPOUT_ABOVE = 0.5
LR_TOLERANCE = 0.02  # "usable": within 2 accuracy points of the norm type's best mean in the LR grid (decided)
LR_TOLERANCES = (0.01, 0.02, 0.03)  # shown side by side: a claim that flips between them sits on a knife edge
LITTLE_GAIN = 0.005  # "more blocks give little": less than half an accuracy point


def grid_verdicts(inputs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every claim of the ``H1``, ``H2`` and ``H3`` families, each decided over its whole family (Holm), and the
    described ``sensitivity`` rows (the same arms at the fixed lr and weight decay, 02b's placement and
    recalibration).

    The one place these decisions are made: 04 shows them, 05 sets its full-budget H1 next to them.
    ``inputs`` are :func:`lib.study.inputs.grid_inputs`': ``H1``/``H3`` the re-measured winners of the
    per-arm tuning, ``H1-fixed``/``H3-fixed`` the same arms at the fixed nuisance values, ``H2`` the
    learning-rate grid, ``shift`` 02b's trials.
    """
    _, h2a = h2_lr_range(inputs["H2"], family="H2")
    decided = [h1(inputs["H1"], family="H1", by_placement=True), h2a, h2b_tuned(inputs["H1"])]
    decided.append(h3(inputs["H3"], family="H3"))
    _, shift_effects = variance_shift(inputs["shift"])
    described = [shift_effects]
    if len(inputs.get("H1-fixed", ())):
        described.append(h1(inputs["H1-fixed"], family=SENSITIVITY, by_placement=True, design=FIXED_LABEL))
    if len(inputs.get("H3-fixed", ())):
        described.append(h3(inputs["H3-fixed"], family=SENSITIVITY, design=FIXED_LABEL))
    return adjust(pd.concat([*decided, *described], ignore_index=True))


SENSITIVITY = "sensitivity"  # described, never decided (lib.study.verdicts.DESCRIBED)
FIXED_LABEL = ", lr and weight decay fixed"


# --- the design a row was measured on ---------------------------------------------------------


def _tag(frame: pd.DataFrame, name: str) -> list[str]:
    tag = column(name)
    return sorted({str(v) for v in frame[tag].dropna()}) if tag in frame else []


def _seeds_text(seeds: list[int]) -> str:
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def design_columns(*frames: pd.DataFrame) -> dict[str, str]:
    """``design`` (how the arms behind a verdict row were tuned and re-measured, read from the runs' tags) and
    ``tuning_decided`` (``yes``, or ``no`` when an arm's tuned winner still sat on a movable edge of its
    range after the allowed extensions: the row is then *not decided: tuning range*)."""
    parts = [f for f in frames if len(f)]
    if not parts:
        return {"design": "", "tuning_decided": "yes"}
    frame = pd.concat(parts, ignore_index=True)
    seeds = _seeds_text(frame["seed"].dropna().unique().tolist()) if "seed" in frame else "?"
    rungs, ranges = _tag(frame, TAG_HALVING_RUNGS), _tag(frame, TAG_TUNING_RANGES)
    if not rungs or not ranges:  # fixed values: a halving study's fixed-value arms carry its rungs, not ranges
        fixed = []
        for name in ("lr", "weight_decay"):
            values = sorted(frame[name].dropna().unique()) if name in frame else []
            fixed += [f"{name} {'/'.join(f'{v:g}' for v in values)}"] if len(values) else []
        return {"design": f"fixed {', '.join(fixed)}; seeds {seeds}", "tuning_decided": "yes"}
    extended = sum(1 for text in _tag(frame, TAG_RANGE_EXTENSIONS) if text not in ("", "[]"))
    how = f"rungs {' or '.join(r.replace(',', '/') for r in rungs)} epochs"
    how += f", eta {'/'.join(_tag(frame, TAG_HALVING_ETA))}"
    how += f", tuning seeds {'/'.join(_tag(frame, TAG_TUNE_SEEDS))}"
    how += f", ranges extended for {extended} arm(s)" if extended else ""
    text = f"lr x weight decay tuned per arm by successive halving over {' | '.join(ranges)} ({how})"
    text += f"; winners re-measured on seeds {seeds}"
    decided = _tag(frame, TAG_TUNING_DECIDED)
    return {"design": text, "tuning_decided": "yes" if set(decided) <= {"yes"} else "no"}


# --- H1: dropout ------------------------------------------------------------------------------


def _values(frame: pd.DataFrame) -> str:
    """The dropout values a set of trials ran, as a claim names them: ``0.25`` or ``0.2/0.3``."""
    return "/".join(f"{p:g}" for p in sorted(frame["dropout_p"].unique()))


def _h1_groups(done: pd.DataFrame, by_placement: bool) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(label, no-dropout trials, dropout trials) per norm type (and per placement when asked)."""
    groups = []
    for norm in sorted(done["norm_type"].unique()):
        arm = done[done["norm_type"] == norm]
        none, dropped = arm[arm["dropout_p"] == 0], arm[arm["dropout_p"] > 0]
        placements = sorted(dropped["dropout_placement"].unique()) if by_placement and len(dropped) else [None]
        for placement in placements:
            chosen = dropped if placement is None else dropped[dropped["dropout_placement"] == placement]
            recal = "recalibrate_bn" in chosen and norm == "batch" and chosen["recalibrate_bn"].astype(bool).all()
            if by_placement and recal:
                label = f"norm={norm}, {placement} + recalibration"
            else:
                label = f"norm={norm}" + (f", {placement}" if placement else "")
            groups.append((label, none, chosen))
    return groups


def h1(
    frame: pd.DataFrame,
    data: DataSpec | None = None,
    family: str = "H1",
    by_placement: bool = False,
    design: str = "",
) -> pd.DataFrame:
    """H1 per norm type: moderate dropout (0.2-0.4) beats none (H1a); dropout above 0.5 hurts vs moderate (H1b).

    ``by_placement=True`` (05) gives each (norm type, dropout placement) its own pair of claims; the
    ``dropout_p = 0`` arm of a norm type is the shared control (placement cannot matter without dropout).
    The claims name the dropout values that were run; ``design`` (e.g. ``", lr tuned per arm"``) is
    added to each claim's label.
    """
    done = finished(frame)
    text = budget_text(done, data)
    rows = []
    for label, none, chosen in _h1_groups(done, by_placement):
        label += design
        moderate = chosen[chosen["dropout_p"].between(*MODERATE_DROPOUT)]
        high = chosen[chosen["dropout_p"] > HIGH_DROPOUT_ABOVE]
        if moderate.empty or none.empty:
            continue
        gain = effect_between(moderate, none, f"moderate - none ({label})")
        claim = f"{label}: dropout {_values(moderate)} beats none"
        row = verdict_row("H1a", claim, gain, "CI > 0", verdict(gain), budget_text=text, family=family)
        rows.append(row | design_columns(moderate, none))
        if not high.empty:
            loss = effect_between(high, moderate, f"high - moderate ({label})")
            claim = f"{label}: dropout {_values(high)} hurts vs {_values(moderate)}"
            rows.append(
                verdict_row(
                    "H1b",
                    claim,
                    loss,
                    "CI < 0",
                    verdict(loss, direction="less"),
                    budget_text=text,
                    family=family,
                    direction="less",
                )
                | design_columns(high, moderate)
            )
    return pd.DataFrame(rows)


# --- H2: BatchNorm ----------------------------------------------------------------------------


def lr_grid_step(frame: pd.DataFrame) -> float:
    """The learning-rate grid's step in decades (the median gap between neighbouring grid points)."""
    lrs = np.sort(frame["lr"].dropna().unique())
    return float(np.median(np.diff(np.log10(lrs)))) if len(lrs) > 1 else 0.0


def usable_widths(frame: pd.DataFrame, tolerances: tuple[float, ...] = LR_TOLERANCES) -> pd.DataFrame:
    """Per seed and norm type: the usable learning-rate range in decades, read off the curve (no lattice).

    A learning rate is usable for a norm type when a seed's accuracy there is within the tolerance of that
    norm type's *own* best mean accuracy over the grid (failed trials count as 0): the range measures how
    forgiving the choice of learning rate is, apart from how high the best accuracy is (H2b). Its ends are
    interpolated between grid points (:func:`lib.stats.interpolated_width`), so the width is a number, not
    a multiple of the grid step. ``usable_decades`` is the decided tolerance (:data:`LR_TOLERANCE`, 2
    points); ``width_1pp``, ``width_2pp``, ``width_3pp`` show the others side by side. ``nan``: not one
    rate of that seed within the tolerance (censored). ``touches_edge``: the range reaches the grid's
    edge, so its width is a lower bound.
    """
    filled = frame.fillna({"val_accuracy": 0.0})
    best_mean = filled.groupby(["norm_type", "lr"])["val_accuracy"].mean().groupby(level=0).max()
    rows = []
    for (seed, norm), group in filled.groupby(["seed", "norm_type"]):
        curve = group.groupby("lr")["val_accuracy"].mean()
        row = {"seed": seed, "norm_type": norm, "reference": best_mean[norm]}
        for tolerance in tolerances:
            floor = best_mean[norm] - tolerance
            width, edge = interpolated_width(curve.index, curve.to_numpy(), floor)
            censored = not (curve >= floor).any()
            column = f"width_{round(100 * tolerance)}pp"
            row[column] = float("nan") if censored else width
            if tolerance == LR_TOLERANCE:
                row |= {"usable_decades": row[column], "touches_edge": edge and not censored}
        rows.append(row)
    return pd.DataFrame(rows)


def h2_lr_range(
    frame: pd.DataFrame, data: DataSpec | None = None, family: str = "H2"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """H2a: usable learning-rate range (decades) per seed and norm (:func:`usable_widths`), batch - none.

    Lattice-free: the widths are interpolated on each seed's curve, and the claim is decided by the exact
    sign-flip test over seeds (:func:`lib.stats.sign_flip_test`, ``test = sign-flip``), which assumes no
    distribution and no grid; with k seeds its smallest p is 2 / 2^k, so fewer than 6 seeds cannot decide
    it at 5%. The interval shown is the t-interval of the per-seed differences (a description). A seed with
    no usable rate for a norm type is censored: then the exact sign test over all seeds decides and the
    effect is the median difference (``test = sign``). The note gives the effect at 1, 2 and 3 points of
    tolerance side by side, and says when a range reaches the grid's edge (a lower bound).
    """
    widths = usable_widths(frame)
    by_seed = widths.pivot(index="seed", columns="norm_type", values="usable_decades")
    name = "usable LR decades, batch - none"
    censored = {norm: int(by_seed[norm].isna().sum()) for norm in ("batch", "none")}
    if any(censored.values()):
        effect = censored_effect(by_seed["batch"], by_seed["none"], name)
        notes = ["no usable rate for " + ", ".join(f"{norm} in {n} seeds" for norm, n in censored.items() if n)]
        notes.append("decided by the exact sign test over seeds (censored ranks lowest); effect = median difference")
    else:
        effect = _sign_flip_effect(by_seed["batch"], by_seed["none"], name)
        smallest = 2 / 2**effect.n
        notes = [f"decided by the exact sign-flip test over {effect.n} seeds (smallest possible p {smallest:.3g})"]
    notes.append(_tolerance_note(widths))
    open_ended = sorted(widths.loc[widths["touches_edge"], "norm_type"].unique())
    edges = (frame["lr"].min(), frame["lr"].max())
    notes.append(
        f"range reaches the grid edge for {', '.join(open_ended)}: that width is a lower bound"
        if open_ended
        else f"both ranges bounded inside the grid ({edges[0]:.2g} to {edges[1]:.2g})"
    )
    rule = {"t": "CI > 0 (decades)", "sign-flip": "sign-flip test > 0 (decades)"}.get(effect.method)
    result = verdict_row(
        "H2a",
        "BatchNorm widens the usable learning-rate range",
        effect,
        rule or "sign test > 0 (decades)",
        _h2a_verdict(effect),
        budget_text=budget_text(frame, data),
        unit="decades",
        note="; ".join(notes),
        family=family,
    )
    result |= design_columns(frame)
    return widths, pd.DataFrame([result])


def _sign_flip_effect(batch: pd.Series, none: pd.Series, name: str) -> Effect:
    """The paired mean difference with the t-interval as a description and the exact sign-flip p-value."""
    described = paired_effect(batch, none, name)
    return replace(described, method="sign-flip")


def _tolerance_note(widths: pd.DataFrame) -> str:
    """``batch - none at 1 / 2 / 3 points: +x / +y / +z decades`` (means over seeds; the decided one is 2)."""
    parts = []
    for tolerance in LR_TOLERANCES:
        column = f"width_{round(100 * tolerance)}pp"
        table = widths.pivot(index="seed", columns="norm_type", values=column)
        parts.append(f"{(table['batch'] - table['none']).mean():+.2f}")
    points = " / ".join(f"{round(100 * t)}" for t in LR_TOLERANCES)
    return f"batch - none at {points} points of tolerance: {' / '.join(parts)} decades (mean over seeds)"


def _h2a_verdict(effect: Effect) -> str:
    """The raw verdict: for a sign or sign-flip test its raw p-value and the effect's side, else the interval."""
    if effect.method not in ("sign", "sign-flip"):
        return verdict(effect)
    p = effect.p_value()
    if not p < 0.05:
        return NOT_SHOWN
    return "supported" if effect.mean > 0 else "contradicted"


def best_lrs(frame: pd.DataFrame) -> dict[str, float]:
    """Each norm type's own best learning rate on the H2a grid (highest mean; failed trials count as 0)."""
    means = frame.fillna({"val_accuracy": 0.0}).groupby(["norm_type", "lr"])["val_accuracy"].mean()
    return {norm: float(group.idxmax()[1]) for norm, group in means.groupby(level=0)}


def h2_best(
    frame: pd.DataFrame, arm_columns: list[str] | None = None, data: DataSpec | None = None, family: str = "H2"
) -> pd.DataFrame:
    """H2b: BatchNorm vs no normalization, each at its own best arm (by mean), paired by seed.

    In v2 ``frame`` is the confirmation grid: each norm type at its own best learning rate from
    H2a's grid (:func:`best_lrs`), trained at H1's budget, so each norm has one arm and choosing it
    did not use these trials.
    """
    arm_columns = arm_columns or ["lr"]
    done = finished(frame)
    best, labels = {}, {}
    for norm in ("batch", "none"):
        arms = done[done["norm_type"] == norm].groupby(arm_columns)["val_accuracy"].mean()
        best_arm = arms.idxmax()
        best_arm = best_arm if isinstance(best_arm, tuple) else (best_arm,)
        where = dict(zip(arm_columns, best_arm, strict=True))
        labels[norm] = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in where.items())
        mask = (done["norm_type"] == norm) & np.logical_and.reduce([done[k] == v for k, v in where.items()])
        best[norm] = done[mask]
    effect = effect_between(best["batch"], best["none"], "best batch arm - best none arm")
    claim = f"BatchNorm raises the best accuracy (batch at {labels['batch']} vs none at {labels['none']})"
    text = budget_text(done, data)
    row = verdict_row("H2b", claim, effect, "CI > 0", verdict(effect), budget_text=text, family=family)
    return pd.DataFrame([row | design_columns(best["batch"], best["none"])])


def h2b_tuned(h1_runs: pd.DataFrame, data: DataSpec | None = None) -> pd.DataFrame:
    """H2b on the tuned design: BatchNorm vs no normalization without dropout, each at its own tuned lr and
    weight decay (H1's two ``dropout_p = 0`` arms, re-measured on the same fresh seeds): one arm per norm
    type, so no arm is picked on these trials."""
    done = finished(h1_runs)
    return h2_best(done[done["dropout_p"] == 0], ["lr", "weight_decay"], data)


# --- H3: conv blocks --------------------------------------------------------------------------


def h3(frame: pd.DataFrame, data: DataSpec | None = None, family: str = "H3", design: str = "") -> pd.DataFrame:
    """H3: 1-2 blocks beat 0; 3+ blocks add less than half a point over the best of 1-2.

    ``family`` and ``design`` (a label added to each claim) as in :func:`h1`.
    """
    done = finished(frame)
    text = budget_text(done, data)
    blocks = done["num_conv_blocks"]
    gain = effect_between(done[blocks.isin([1, 2])], done[blocks == 0], "1-2 blocks - 0 blocks")
    rows = [
        verdict_row(
            "H3a", f"1-2 conv blocks beat 0{design}", gain, "CI > 0", verdict(gain), budget_text=text, family=family
        )
        | design_columns(done[blocks.isin([1, 2])], done[blocks == 0])
    ]
    deep = done[blocks >= 3]
    if not deep.empty:
        means = done[blocks.isin([1, 2])].groupby("num_conv_blocks")["val_accuracy"].mean()
        best_shallow = int(means.idxmax())
        more = effect_between(deep, done[blocks == best_shallow], f"3+ blocks - {best_shallow} blocks")
        rows.append(
            verdict_row(
                "H3b",
                f"3+ blocks give little (< +{LITTLE_GAIN * 100:.1f} pp) or hurt vs {best_shallow}{design}",
                more,
                f"CI < +{LITTLE_GAIN * 100:.1f} pp",
                verdict(more, LITTLE_GAIN, "less"),
                budget_text=text,
                margin=LITTLE_GAIN,
                direction="less",
                family=family,
            )
            | design_columns(deep, done[blocks == best_shallow])
        )
    return pd.DataFrame(rows)


# --- 02b: dropout x BatchNorm -----------------------------------------------------------------


def variance_shift(frame: pd.DataFrame, data: DataSpec | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recalibration effect (after - before, same weights) and placement effects vs ``block``.

    Returns (arm summary rows for the figure, effect rows, described: family ``sensitivity``).
    """
    done = finished(frame)
    done = done[done["dropout_p"] > 0].copy()
    text = budget_text(done, data)
    arms, effects = _recalibration_effects(done, text)
    for (norm, p), group in done.groupby(["norm_type", "dropout_p"]):
        block = group[group["dropout_placement"] == "block"]
        for placement in sorted(set(group["dropout_placement"]) - {"block"}):
            placed = group[group["dropout_placement"] == placement]
            effect = effect_between(placed, block, f"{placement} - block ({norm}, p={p:g})")
            claim = f"{norm}, p={p:g}: dropout placement '{placement}' beats 'block'"
            effects.append(
                verdict_row("placement", claim, effect, "CI > 0", verdict(effect), budget_text=text, family=SENSITIVITY)
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


def _recalibration_effects(done: pd.DataFrame, text: str) -> tuple[list[dict], list[dict]]:
    """Per dropout arm: its accuracy values (BatchNorm arms before and after recalibration), and the
    recalibration effect rows (after - before on the same weights: over seeds, the images are shared)."""
    before = "val_accuracy_before_recalibration"
    has_recal = done["recalibrate_bn"].astype(bool) & done[before].notna() if before in done else None
    arms, effects = [], []
    for (norm, placement, p), group in done.groupby(["norm_type", "dropout_placement", "dropout_p"]):
        label = f"{norm}/{placement}/p={p:g}"
        if norm == "batch" and has_recal is not None and has_recal[group.index].all():
            after, plain = group.set_index("seed")["val_accuracy"], group.set_index("seed")[before]
            arms += [{"arm": f"{label}/plain", "values": plain}, {"arm": f"{label}/recal", "values": after}]
            effect = paired_effect(after, plain, f"recalibration ({label})")
            claim = f"recalibrating BN helps: {label}"
            effects.append(
                verdict_row("shift", claim, effect, "CI > 0", verdict(effect), budget_text=text, family=SENSITIVITY)
            )
        else:
            arms.append({"arm": label, "values": group.set_index("seed")["val_accuracy"]})
    return arms, effects
