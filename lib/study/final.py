"""Choosing the final model: 02b's adjustments, the declared candidates, the comparison on validation, the
recommendation.

The candidates are declared before they are trained (:func:`candidates`), compared on validation only
at one budget with shared seeds (:func:`compare_candidates`, family ``final choice``), and the
recommendation follows a fixed rule (:func:`recommendation`). The one test reading is judged against the
declared goal in words made from its numbers (:func:`goal_sentence`).

What this is not: the test-set reading itself (06 does it once, on the winner; ``ledger`` records it), study
v5's candidates and their tuning (``finalists``) or the hypotheses (``hypotheses``).
"""

from __future__ import annotations

import pandas as pd

from lib.config import TrialConfig
from lib.data import DataSpec
from lib.stats import mean_ci, verdict
from lib.store import FINISHED, config_identity, run_config
from lib.study.inputs import budget_text, finished
from lib.study.verdicts import DESCRIBED_WORDS, decision_words, effect_between, verdict_row

# The default configuration of the candidate list: the library's defaults (2 blocks of 32/64
# channels, AdamW lr 1e-3, weight decay 5e-4, batch 128, cosine) with BatchNorm and no dropout,
# i.e. the course's recipe and 03's 2-block arm.
DEFAULT_CONFIG = {"norm_type": "batch", "dropout_p": 0.0, "num_conv_blocks": 2}

# Study v3's levers against the generalisation errors the final model makes (declared before the v3
# run): a random 2-pixel shifted crop, left-right flips (clothes are close to mirror-symmetric) and
# label smoothing 0.1, added to the sweep's best as one more candidate.
REGULARISATION = {"augment_crop_padding": 2, "augment_flip": True, "label_smoothing": 0.1}


def _decisions(effects: pd.DataFrame) -> pd.Series:
    """The adjusted decision where there is one, else the raw verdict. 02b's rows are described, not decided
    (family ``sensitivity``): for them the raw verdict builds the candidate, which the declared comparison
    on validation then keeps or drops; it is never quoted as a decision."""
    if "decision" not in effects:
        return effects["verdict"]
    return effects["decision"].where(effects["decision"] != DESCRIBED_WORDS, effects["verdict"])


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
        f"{winner['ci_high']:+.2f}, {winner['budget']}; "
        f"Holm: {decision_words(winner.get('decision', winner['verdict']))})"
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


def controlled_arms(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every arm of the controlled grids (``{label: MLflow trial runs}``) with its mean validation accuracy.

    An arm is a config without seed; arms with fewer than two finished seeds are left out.
    """
    rows = []
    for label, frame in frames.items():
        done = frame[frame["status"] == FINISHED]
        if done.empty:
            continue
        configs = done.apply(run_config, axis=1)
        keys = configs.map(lambda c: TrialConfig.from_flat(c | {"seed": 0}).fingerprint())
        for _, group in done.groupby(keys.to_numpy()):
            if len(group) < 2:
                continue
            config = run_config(group.iloc[0])
            mean, low, high = mean_ci(group["val_accuracy"].tolist())
            rows.append(
                {
                    "source": label,
                    "config": config,
                    "identity": config_identity(config),
                    "budget": budget_text(group),
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
       controlled grids of 02, 02b and 03 (:func:`controlled_arms`) that is not already a candidate;
    4. ``sweep best + augmentation``: the sweep best with :data:`REGULARISATION` (v3).

    Nominating looks at each arm's own budget (they differ); the candidates are then compared at
    one budget, with the same seeds (:func:`compare_candidates`).
    """
    listed: list[dict[str, object]] = []
    seen: set[str] = set()

    def add(name: str, config: dict[str, object], reason: str) -> None:
        flat = {k: v for k, v in config.items() if k not in ("seed", "epochs")}
        key = config_identity(flat)
        if key not in seen:
            seen.add(key)
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
    add(
        "sweep best + augmentation",
        dict(sweep_best) | REGULARISATION,
        "crop, flip and label smoothing against overfitting",
    )
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
    done = finished(frame)
    summary = pd.DataFrame(
        [
            {
                "candidate": name,
                "n": len(group),
                **dict(zip(["mean", "ci_low", "ci_high"], mean_ci(group["val_accuracy"].tolist()), strict=True)),
            }
            for name, group in done.groupby("candidate", sort=False)
        ]
    )
    winner = str(summary.sort_values("mean", ascending=False).iloc[0]["candidate"])
    text = budget_text(done, data)
    rows = []
    for other in summary["candidate"]:
        if other == winner:
            continue
        effect = effect_between(
            done[done["candidate"] == winner], done[done["candidate"] == other], f"{winner} - {other}"
        )
        rows.append(
            verdict_row(
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


def recommendation(winner: str, effects: pd.DataFrame) -> tuple[str, str]:
    """The recommended candidate and the row that backs it (the rule is in 04's markdown).

    The winner if it is the default, or if its advantage over the default is *supported* after
    adjustment; otherwise the default, since the evidence does not favour the other configuration.
    """

    def quote(row: pd.Series) -> str:
        return (
            f"{row['claim']}: {row['effect']:+.2f} pp (95% CI {row['ci_low']:+.2f} to {row['ci_high']:+.2f}), "
            f"{row['budget']}, {row['n_seeds']} seeds; raw {decision_words(row['verdict'])}, "
            f"Holm '{row['family']}': {decision_words(row['decision'])}"
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


GOAL, STRETCH = 0.94, 0.945  # study v5's declared goal for the final model's mean test accuracy, and the stretch


def _percent(value: float, near: float) -> str:
    """``value`` as a percentage, with a third decimal where two would round it onto ``near``."""
    text = f"{value:.2%}"
    return f"{value:.3%}" if text == f"{near:.2%}" and value != near else text


def goal_sentence(mean: float, low: float, high: float, goal: float = GOAL, stretch: float | None = STRETCH) -> str:
    """The reading against the declared goal, in words, from its numbers: met or missed (by the mean, the declared
    criterion), by how many points, and where the interval lies (above, below, or covering the goal: not shown)."""
    reading = f"{_percent(mean, goal)} (95% CI {low:.2%} to {high:.2%})"
    if mean >= goal:
        text = f"the declared goal, a mean test accuracy of at least {goal:.1%}, was **met**: {reading}"
        if stretch is not None:
            text += f"; the stretch goal, {stretch:.1%}, was " + ("met too" if mean >= stretch else "not")
    else:
        text = (
            f"the declared goal, a mean test accuracy of at least {goal:.1%}, was **missed**: {reading}, "
            f"{100 * (goal - mean):.2f} points short"
        )
    if low > goal:
        return text + "; the whole interval lies above the goal"
    if high < goal:
        return text + "; the whole interval lies below the goal"
    return text + "; the interval covers the goal, so whether it reaches it is not shown"
