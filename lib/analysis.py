"""The study's hypothesis tests, computed from trial results (a grid's frame or MLflow runs).

Each function takes a DataFrame with one row per finished trial (columns: the hyperparameters,
``seed``, ``val_accuracy`` ...) and returns the effects and verdicts the notebooks print. The rules
are fixed here, in code, before the runs are read, so the report cannot be tuned to the result.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lib import tracking
from lib.stats import Effect, paired_effect, per_seed, usable_lr_decades, verdict
from lib.trial import code_version

MODERATE_DROPOUT = (0.2, 0.4)
HIGH_DROPOUT_ABOVE = 0.5
LR_TOLERANCE = 0.02  # "usable": within 2 accuracy points of the norm type's best mean in the LR grid
LITTLE_GAIN = 0.005  # "more blocks give little": less than half an accuracy point


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
    if hypothesis is not None:
        frame = frame[frame["tag.hypothesis"] == hypothesis]
    if profile is not None:
        frame = frame[frame["tag.profile"] == profile]
    if frame.empty:
        raise MissingRunsError(
            f"no trial runs for hypothesis={hypothesis!r}, profile={profile!r} in '{experiment}': "
            f"run that notebook with this profile first (`make run` runs them all in order)."
        )
    # a trial may have been logged under several keys only if the code changed: keep the newest
    return frame.sort_values("start_time").drop_duplicates("tag.trial_key", keep="last")


def _row(hypothesis: str, claim: str, effect: Effect, rule: str, outcome: str) -> dict[str, object]:
    return {
        "hypothesis": hypothesis,
        "claim": claim,
        "effect_pp": effect.mean * 100,
        "ci_low_pp": effect.ci_low * 100,
        "ci_high_pp": effect.ci_high * 100,
        "n_seeds": effect.n,
        "rule": rule,
        "verdict": outcome,
    }


def h1(frame: pd.DataFrame) -> pd.DataFrame:
    """H1 per norm type: moderate dropout beats none; dropout above 0.5 hurts vs moderate."""
    rows = []
    finished = frame[frame["status"].isin(["finished", tracking.FINISHED])]
    for norm in sorted(finished["norm_type"].unique()):
        arm = finished[finished["norm_type"] == norm]
        moderate = arm[arm["dropout_p"].between(*MODERATE_DROPOUT)]
        high = arm[arm["dropout_p"] > HIGH_DROPOUT_ABOVE]
        none = arm[arm["dropout_p"] == 0]
        if moderate.empty or none.empty:
            continue
        gain = paired_effect(per_seed(moderate), per_seed(none), f"moderate - none ({norm})")
        rows.append(_row("H1a", f"norm={norm}: dropout 0.2-0.4 beats none", gain, "CI > 0", verdict(gain)))
        if not high.empty:
            loss = paired_effect(per_seed(high), per_seed(moderate), f"high - moderate ({norm})")
            rows.append(
                _row(
                    "H1b",
                    f"norm={norm}: dropout > 0.5 hurts vs 0.2-0.4",
                    loss,
                    "CI < 0",
                    verdict(loss, direction="less"),
                )
            )
    return pd.DataFrame(rows)


def h2_lr_range(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """H2a: usable learning-rate range (decades) per seed and norm, and the batch - none effect.

    A learning rate is usable for a norm type when a seed's accuracy there is within
    ``LR_TOLERANCE`` of that norm type's best mean accuracy over the grid: the range measures how
    forgiving the choice of learning rate is, separately from how high the best accuracy is (H2b).
    """
    filled = frame.fillna({"val_accuracy": 0.0})
    best_mean = filled.groupby(["norm_type", "lr"])["val_accuracy"].mean().groupby(level=0).max()
    rows = [
        {
            "seed": seed,
            "norm_type": norm,
            "reference": best_mean[norm],
            "usable_decades": usable_lr_decades(group, LR_TOLERANCE, best_mean[norm]),
        }
        for (seed, norm), group in filled.groupby(["seed", "norm_type"])
    ]
    widths = pd.DataFrame(rows)
    widths["usable_decades"] = widths["usable_decades"].fillna(-1.0)  # no usable LR at all: below 0 width
    by_seed = widths.pivot(index="seed", columns="norm_type", values="usable_decades")
    effect = paired_effect(by_seed["batch"], by_seed["none"], "usable LR decades, batch - none")
    row = {
        "hypothesis": "H2a",
        "claim": "BatchNorm widens the usable learning-rate range",
        "effect_pp": np.nan,
        "effect_decades": effect.mean,
        "ci_low_pp": np.nan,
        "ci_high_pp": np.nan,
        "ci_low_decades": effect.ci_low,
        "ci_high_decades": effect.ci_high,
        "n_seeds": effect.n,
        "rule": "CI > 0 (decades)",
        "verdict": verdict(effect),
    }
    return widths, pd.DataFrame([row])


def h2_best(frame: pd.DataFrame, arm_columns: list[str]) -> pd.DataFrame:
    """H2b: the best arm (by mean) with BatchNorm vs the best arm without, paired by seed."""
    finished = frame[frame["status"].isin(["finished", tracking.FINISHED])]
    best = {}
    for norm in ("batch", "none"):
        arms = finished[finished["norm_type"] == norm].groupby(arm_columns)["val_accuracy"].mean()
        best_arm = arms.idxmax()
        best_arm = best_arm if isinstance(best_arm, tuple) else (best_arm,)
        where = dict(zip(arm_columns, best_arm, strict=True))
        best[norm] = per_seed(finished, norm_type=norm, **where)
    effect = paired_effect(best["batch"], best["none"], "best batch arm - best none arm")
    return pd.DataFrame([_row("H2b", "BatchNorm raises the best accuracy", effect, "CI > 0", verdict(effect))])


def h3(frame: pd.DataFrame) -> pd.DataFrame:
    """H3: 1-2 blocks beat 0; 3+ blocks add less than half a point over the best of 1-2."""
    finished = frame[frame["status"].isin(["finished", tracking.FINISHED])]
    rows = []
    zero = per_seed(finished, num_conv_blocks=0)
    one_two = per_seed(finished, num_conv_blocks=[1, 2])
    gain = paired_effect(one_two, zero, "1-2 blocks - 0 blocks")
    rows.append(_row("H3a", "1-2 conv blocks beat 0", gain, "CI > 0", verdict(gain)))
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
            )
        )
    return pd.DataFrame(rows)


def variance_shift(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recalibration effect (after - before, same weights) and placement effects vs ``block``.

    Returns (arm summary rows for the figure, effect rows with verdicts).
    """
    finished = frame[frame["status"].isin(["finished", tracking.FINISHED]) & (frame["dropout_p"] > 0)].copy()
    before = "val_accuracy_before_recalibration"
    has_recal = finished["recalibrate_bn"].astype(bool) & finished[before].notna() if before in finished else None
    arms, effects = [], []
    for (norm, placement, p), group in finished.groupby(["norm_type", "dropout_placement", "dropout_p"]):
        label = f"{norm}/{placement}/p={p:g}"
        if norm == "batch" and has_recal is not None and has_recal[group.index].all():
            arms.append({"arm": f"{label}/plain", "values": group.set_index("seed")[before]})
            arms.append({"arm": f"{label}/recal", "values": group.set_index("seed")["val_accuracy"]})
            effect = paired_effect(
                group.set_index("seed")["val_accuracy"], group.set_index("seed")[before], f"recalibration ({label})"
            )
            effects.append(_row("shift", f"recalibrating BN helps: {label}", effect, "CI > 0", verdict(effect)))
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
                )
            )
    from lib.stats import mean_ci

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


def final_choice(best: dict[str, object], shift_effects: pd.DataFrame) -> tuple[dict[str, object], list[str]]:
    """The final configuration: the sweep's best, adjusted by the variance-shift verdicts.

    Recalibration is switched on (for a BatchNorm model) only if some recalibration effect is
    *supported*; a dropout placement other than ``block`` only if it beat ``block`` with BatchNorm
    with a *supported* verdict (the largest such effect wins).
    """
    config, reasons = dict(best), []
    if config.get("norm_type") != "batch" or shift_effects.empty:
        reasons.append("the chosen model has no BatchNorm (or no variance-shift runs): nothing to adjust")
        return config, reasons
    recal = shift_effects[(shift_effects["hypothesis"] == "shift") & shift_effects["claim"].str.contains("batch/")]
    if (recal["verdict"] == "supported").any():
        config["recalibrate_bn"] = True
        reasons.append(
            f"BN recalibration on: supported in {int((recal['verdict'] == 'supported').sum())} of "
            f"{len(recal)} arms (mean gain {recal['effect_pp'].mean():+.2f} pp)"
        )
    else:
        reasons.append("BN recalibration left off: its effect was not supported")
    placement = shift_effects[
        (shift_effects["hypothesis"] == "placement")
        & shift_effects["claim"].str.startswith("batch")
        & (shift_effects["verdict"] == "supported")
    ]
    if float(config.get("dropout_p", 0)) > 0 and not placement.empty:
        winner = placement.sort_values("effect_pp").iloc[-1]
        config["dropout_placement"] = winner["claim"].split("'")[1]
        reasons.append(
            f"dropout placement '{config['dropout_placement']}': {winner['claim']} "
            f"({winner['effect_pp']:+.2f} pp, CI {winner['ci_low_pp']:+.2f} to {winner['ci_high_pp']:+.2f})"
        )
    else:
        reasons.append(f"dropout placement kept at '{config.get('dropout_placement')}'")
    return config, reasons
