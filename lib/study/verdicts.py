"""Verdict rows, their declared families and the family-wise decision (Holm), and the words they are read in.

Every verdict row carries: the claim, its **budget** (training images x epochs), the number of paired
seeds, the **uncertainty** its interval covers (``seeds``, or ``seeds+images`` when per-image
correctness was available), the effect, its raw 95% interval and raw verdict, the two-sided p-value
and (after :func:`adjust`) the **adjusted decision** of its declared family (Holm, 5% family-wise, see
``lib.stats``) with ``adjusted_over`` saying whether the whole family or a part of it was adjusted. A row
whose budget is below the declared minimum (:data:`MIN_IMAGE_EPOCHS`, :data:`MIN_SEEDS`) is not decided:
its decision reads *budget too short to decide*. A row whose claim depends on a plateau check
(``registry.BUDGET_CHECKS``) that failed, or was not run, for an arm the row's trials ran reads *not decided:
budget* (:data:`NOT_DECIDED_BUDGET`; ``budget_check`` says which arm and the budget it would need). Neither
changes Holm's family: every row keeps its p-value and the family its declared size; a withheld row only
takes back its own rejection, which cannot raise the family-wise error rate.

Words: an undecided claim reads **not shown** (never "no effect": an interval that covers zero
does not show the effect is absent); :func:`decision_words` is the one mapping.

What this is not: the hypotheses (``hypotheses``), the final model (``final``) or notebook 05's
comparisons (``comparisons``); this module decides rows that those build.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

import numpy as np
import pandas as pd

from lib.engine import records
from lib.stats import (
    CONTRADICTED,
    NOT_SHOWN,
    SUPPORTED,
    Effect,
    decide,
    holm,
    paired_effect,
    per_seed,
    two_source_effect,
)
from lib.study import registry

ALPHA = 0.05  # family-wise error rate of every family

# The declared families, their sizes and which are only described: derived from lib.study.registry's records
# (H1 = H1a and H1b for each of the two norm types = 4 claims; H2 = H2a, H2b; H3 = H3a, H3b).
FAMILIES, FAMILY_SIZES, DESCRIBED = registry.FAMILIES, registry.FAMILY_SIZES, registry.DESCRIBED
DESCRIBED_WORDS = "described, not decided"

DISPLAY_COLUMNS = [
    "hypothesis",
    "claim",
    "budget",
    "n_seeds",
    "uncertainty",
    "effect",
    "ci_low",
    "ci_high",
    "unit",
    "verdict",
    "p_value",
    "p_holm",
    "decision",
    "adjusted_over",
]

TOO_SHORT = "budget too short to decide"
# a tuned arm whose winner still sits on a movable edge of its tuning range after the allowed extensions
NOT_DECIDED_RANGE = "not decided: tuning range"
# study v5: the row's plateau check (lib.study.registry.BUDGET_CHECKS) failed, or was not run, for an arm it
# depends on: the control may still improve at this budget, so the ordering may still flip
NOT_DECIDED_BUDGET = "not decided: budget"
# Decisions the rules withhold: such a row says only this, never a raw verdict beside it.
WITHHELD = frozenset({TOO_SHORT, NOT_DECIDED_RANGE, NOT_DECIDED_BUDGET, DESCRIBED_WORDS})
# The one vocabulary (lib.stats.VERDICTS, plus the withheld words); "inconclusive" is how CSVs of older code wrote
# "not shown" and is read as such.
WORDS = {
    SUPPORTED: SUPPORTED,
    CONTRADICTED: CONTRADICTED,
    NOT_SHOWN: NOT_SHOWN,
    "inconclusive": NOT_SHOWN,
    TOO_SHORT: TOO_SHORT,
    DESCRIBED_WORDS: DESCRIBED_WORDS,
    NOT_DECIDED_RANGE: NOT_DECIDED_RANGE,
    NOT_DECIDED_BUDGET: NOT_DECIDED_BUDGET,
}


def decision_words(decision: object) -> str:
    """How a decision reads in generated text: one of :data:`WORDS`' values (not shown: never "no effect")."""
    return WORDS.get(str(decision), "not adjusted")


def effect_between(
    treatment: pd.DataFrame, control: pd.DataFrame, name: str, value: str = "val_accuracy", min_sd: float = 0.0
) -> Effect:
    """The paired effect of two sets of trials: over seeds *and* images when both carry ``val_correct``.

    ``val_correct``: each run's per-image correctness on the validation set (an array per row). With
    it for every row (and the same seeds on both sides), :func:`lib.stats.two_source_effect`; otherwise
    the per-seed paired t-interval (:func:`lib.stats.paired_effect`, ``uncertainty="seeds"``). A frame
    of runs (a ``run_id`` column) without ``val_correct`` gets it from each run's per-image artifact.
    """
    arrays = _per_seed_arrays(with_val_correct(treatment)), _per_seed_arrays(with_val_correct(control))
    if value == "val_accuracy" and all(a is not None for a in arrays):
        seeds = sorted(set(arrays[0]) & set(arrays[1]))
        if len(seeds) >= 2:
            stack = [np.stack([side[s] for s in seeds]) for side in arrays]
            return two_source_effect(stack[0], stack[1], name, seeds=seeds)
    # a claim's arm may pool values on purpose ("dropout 0.2-0.4", "1-2 blocks"): the mean per seed, as above
    treated, controls = per_seed(treatment, value, pool=True), per_seed(control, value, pool=True)
    return paired_effect(treated, controls, name, min_sd=min_sd)


def with_val_correct(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``val_correct`` column read from each run's artifact (``None`` where a run has
    none, e.g. a run of older code); the frame itself when it has the column or no ``run_id``."""
    if "val_correct" in frame or "run_id" not in frame or frame.empty:
        return frame
    return frame.assign(val_correct=[_stored_val_correct(str(run_id)) for run_id in frame["run_id"]])


@lru_cache(maxsize=4096)
def _stored_val_correct(run_id: str) -> np.ndarray | None:
    try:
        return records.val_correct(run_id)
    except Exception:  # no artifact (older run, failed trial): that run has seeds-only evidence
        return None


def _per_seed_arrays(frame: pd.DataFrame) -> dict[object, np.ndarray] | None:
    """Per seed, the mean per-image correctness of the frame's runs; ``None`` unless every run has one."""
    if "val_correct" not in frame or frame.empty:
        return None
    arrays = [np.asarray(a, dtype=float) if a is not None and np.ndim(a) == 1 else None for a in frame["val_correct"]]
    if any(a is None for a in arrays) or len({a.size for a in arrays}) != 1:
        return None
    by_seed: dict[object, list[np.ndarray]] = {}
    for seed, array in zip(frame["seed"], arrays, strict=True):
        by_seed.setdefault(seed, []).append(array)
    return {seed: np.mean(parts, axis=0) for seed, parts in by_seed.items()}


def seed_key(seed: object) -> str:
    """A seed as a ``seed_diffs`` key: ``"20"``, whether the store gave it as 20 or 20.0 (two rows' keys
    must match for a paired interaction; ``"20.0"`` against ``"20"`` would silently pair nothing)."""
    try:
        number = float(seed)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(seed)
    return str(int(number)) if number.is_integer() else str(seed)


def verdict_row(
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
    """One verdict row from an effect (``unit="pp"`` scales accuracy differences by 100)."""
    scale = 100.0 if unit == "pp" else 1.0
    result = {
        "hypothesis": hypothesis,
        "claim": claim,
        "budget": budget_text,
        "n_seeds": effect.n,
        "uncertainty": effect.uncertainty,
        "test": effect.method,
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
        "seed_diffs": json.dumps({seed_key(seed): value * scale for seed, value in effect.diffs}),
        # in memory only (CSV writers drop "_" columns): the Effect itself, so an interaction of two rows can
        # use its per-image differences (lib.stats.difference_of_effects) instead of the seeds alone
        "_effect": effect,
    }
    # the v1 column names, kept for readers of verdicts*.csv
    suffix = "pp" if unit == "pp" else "decades"
    result |= {
        f"effect_{suffix}": result["effect"],
        f"ci_low_{suffix}": result["ci_low"],
        f"ci_high_{suffix}": result["ci_high"],
    }
    return result


# The short-budget rule (declared, like the margins, before any run): a decision needs every trial behind it to
# have trained on at least MIN_IMAGE_EPOCHS training images x epochs, and at least MIN_SEEDS paired seeds.
# Below that (the smoke and quick profiles), this CNN is still far from its plateau on Fashion-MNIST (01's
# learning curves climb for several epochs), so an ordering can still flip: the row keeps its effect and
# interval, and its decision reads "budget too short to decide".
MIN_IMAGE_EPOCHS = 24_000
MIN_SEEDS = 3
_BUDGET = re.compile(r"([\d,]+) training images × (\d+) epochs?")


def budget_image_epochs(budget: object) -> int | None:
    """The smallest training images x epochs a budget text names (``None`` when it names none)."""
    found = [int(images.replace(",", "")) * int(epochs) for images, epochs in _BUDGET.findall(str(budget))]
    return min(found) if found else None


def too_short(row: pd.Series) -> bool:
    """Whether the short-budget rule withholds this row's decision (see :data:`MIN_IMAGE_EPOCHS`)."""
    cost = budget_image_epochs(row.get("budget", ""))
    seeds = row.get("n_seeds")
    few_seeds = pd.notna(seeds) and int(seeds) < MIN_SEEDS
    return (cost is not None and cost < MIN_IMAGE_EPOCHS) or (cost is not None and few_seeds)


def adjust(
    table: pd.DataFrame,
    alpha: float = ALPHA,
    family_sizes: dict[str, int] | None = None,
    budget: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Add ``p_holm``, ``decision`` and ``adjusted_over``: Holm's adjustment within each declared family.

    ``family_sizes``: the declared number of claims of a family (default :data:`FAMILY_SIZES`). When a
    notebook holds only part of a family (02 and 03 each hold part of ``headline``), the missing
    claims count as not rejected (p = 1): the decision is then never bolder than the one over the
    whole family, which 04 computes, and ``adjusted_over`` says ``partial: 4 of 8 claims``.

    ``budget``: the plateau checks' table (``lib.study.plateau.budget_table`` or ``run_check``'s, a ``check``
    column per row). A decided row whose claim depends on a check reads *not decided: budget* unless that
    check ran and stopped improving for every arm the row depends on; ``None`` means no check was run, so such
    rows are not decided (the short-budget rule comes first: a row below it reads *budget too short to decide*).
    """
    sizes = FAMILY_SIZES | (family_sizes or {})
    table = table.copy()
    if table.empty:
        return table.assign(p_holm=pd.Series(dtype=float), decision=pd.Series(dtype=str))
    table["p_holm"] = np.nan
    table["decision"] = NOT_SHOWN
    table["adjusted_over"] = ""
    for family, rows in table.groupby("family", sort=False):
        p = rows["p_value"].to_numpy(dtype=float)
        declared = max(sizes.get(family, len(p)), len(p))
        adjusted, _ = holm(np.concatenate([p, np.ones(declared - len(p))]), alpha)
        adjusted = adjusted[: len(p)]
        table.loc[rows.index, "p_holm"] = adjusted
        table.loc[rows.index, "adjusted_over"] = (
            f"whole family ({declared} claims)" if declared == len(p) else f"partial: {len(p)} of {declared} claims"
        )
        table.loc[rows.index, "decision"] = [
            decide(e, p, m, d, alpha)
            for e, p, m, d in zip(rows["effect"], adjusted, rows["margin"], rows["direction"], strict=True)
        ]
    short = table.apply(too_short, axis=1).astype(bool)
    table.loc[short, "decision"] = TOO_SHORT
    table = _bind_budget(table, budget, ~short)
    if "tuning_decided" in table:
        on_edge = table["tuning_decided"].fillna("yes").astype(str) != "yes"
        table.loc[on_edge, "decision"] = NOT_DECIDED_RANGE
    described = table["family"].isin(DESCRIBED)
    table.loc[described, ["p_holm"]] = np.nan
    table.loc[described, "decision"] = DESCRIBED_WORDS
    table.loc[described, "adjusted_over"] = "not adjusted (described)"
    return table


def budget_keys(trials: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> str:
    """The arms a row's trials ran, as its ``budget_keys`` column: ``{"norm_type": ["none"]}`` (JSON, values as
    :func:`seed_key` writes them), for the columns its plateau checks split by."""
    return json.dumps(
        {name: sorted({seed_key(v) for v in trials[name].dropna()}) for name in columns if name in trials},
        sort_keys=True,
    )


def _bind_budget(table: pd.DataFrame, budget: pd.DataFrame | None, open_rows: pd.Series) -> pd.DataFrame:
    """Rows whose claim depends on a plateau check: ``budget_check`` says ``passed`` or why not, and a row
    still open (not too short) whose check did not pass reads :data:`NOT_DECIDED_BUDGET`."""
    covered = [
        bool(registry.checks_for(str(name))) and family not in DESCRIBED
        for name, family in zip(table.get("hypothesis", pd.Series("", index=table.index)), table["family"], strict=True)
    ]
    if not any(covered):
        return table
    table["budget_check"] = ""
    for index in table.index[covered]:
        row = table.loc[index]
        reasons = [_check_reason(check, row, budget) for check in registry.checks_for(str(row["hypothesis"]))]
        reasons = [reason for reason in reasons if reason]
        table.loc[index, "budget_check"] = "; ".join(reasons) if reasons else "passed"
        if reasons and open_rows[index]:
            table.loc[index, "decision"] = NOT_DECIDED_BUDGET
    return table


def _check_reason(check: registry.BudgetCheck, row: pd.Series, budget: pd.DataFrame | None) -> str:
    """Why ``check`` does not let ``row`` be decided (``""`` when it passed for every arm the row depends on)."""
    rows = budget[budget["check"] == check.name] if budget is not None and "check" in budget else pd.DataFrame()
    keys = row.get("budget_keys")
    wanted = json.loads(keys) if isinstance(keys, str) and keys else {}
    for name in check.by:
        if name in wanted and len(rows):
            rows = rows[rows[name].map(seed_key).isin(wanted[name])]
    named = [f"{name}={'/'.join(wanted[name])}" for name in check.by if name in wanted]
    arms = ", ".join(named) or "every arm"
    expected = int(np.prod([len(wanted[name]) for name in check.by if name in wanted])) if named else 1
    if len(rows) < expected or (rows["stopped improving"] == "not run").any():
        return f"'{check.name}' not run for {arms}"
    failed = rows[rows["stopped improving"] != "yes"]
    if failed.empty:
        return ""
    parts = []
    for _, arm in failed.iterrows():
        label = ", ".join(f"{name}={seed_key(arm[name])}" for name in check.by if name in arm)
        high = arm.get("gain ci_high", np.nan)
        bound = f"up to {high:+.2f}" if pd.notna(high) else "no interval"
        gain = f"{arm['gain (pp)']:+.2f} pp ({bound})" if "gain (pp)" in arm else "?"
        epochs = "->".join(seed_key(arm.get(name, "?")) for name in ("epochs", "longer epochs"))
        needed = arm.get("budget needed", "not measured")
        parts.append(f"{label} still improving: {epochs} epochs {gain}; budget needed: {needed}")
    return f"'{check.name}' failed: " + "; ".join(parts)


def display(table: pd.DataFrame, digits: int = 2, full: bool = False) -> pd.DataFrame:
    """What a notebook shows of a verdict table: claim, effect, its 95% interval and the decision in the
    package's words (every other column, budget and seeds and p-values included, is in the CSV the notebook
    writes, and in ``full=True``: the older wide view)."""
    if full:
        wide = table[[c for c in DISPLAY_COLUMNS if c in table]].round(3)
        if "decision" in wide and "verdict" in wide:  # one verdict word per row: a withheld row shows no raw verdict
            wide.loc[wide["decision"].isin(WITHHELD), "verdict"] = ""
        return wide
    rows = []
    for _, r in table.iterrows():
        unit = r.get("unit", "pp")
        low, high = r.get("ci_low", np.nan), r.get("ci_high", np.nan)
        interval = f"{low:+.{digits}f} to {high:+.{digits}f} {unit}" if pd.notna(low) and pd.notna(high) else "none"
        decided = r["decision"] if "decision" in r.index else r.get("verdict", "")
        rows.append({
            "claim": f"{r['hypothesis']}: {r['claim']}" if "hypothesis" in r.index else r["claim"],
            "effect": f"{r['effect']:+.{digits}f} {unit}",
            "95% interval": interval,
            "decision": decision_words(decided),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["claim", "effect", "95% interval", "decision"])


def fmt(value: float, unit: str) -> str:
    """``+0.30 pp``; ``n/a`` for a missing value."""
    if pd.isna(value):
        return "n/a"
    return f"{value:+.2f} {unit}"


def summary_markdown(table: pd.DataFrame) -> str:
    """One bullet per verdict row, written from the numbers (for the notebooks' discussion cells).

    It says no more than the row: the effect, its interval, what the interval covers, the raw verdict
    and the adjusted decision in :func:`decision_words` (*not shown* when undecided), and over how much
    of its family the decision was adjusted.
    """
    lines = []
    for _, r in table.iterrows():
        interval = (
            f"95% CI {fmt(r['ci_low'], r['unit'])} to {fmt(r['ci_high'], r['unit'])}"
            if pd.notna(r["ci_low"])
            else "no interval (degenerate or too few seeds)"
        )
        over = r.get("uncertainty", "seeds")
        part = r.get("adjusted_over")
        scope = f"Holm within '{r['family']}'" + (f", {part}" if isinstance(part, str) and part else "")
        decision = decision_words(r["decision"]) if "decision" in r.index else "not adjusted"
        note = r.get("note")
        if decision == NOT_DECIDED_BUDGET and isinstance(r.get("budget_check"), str):
            note = "; ".join(text for text in (r["budget_check"], note if isinstance(note, str) else "") if text)
        # one verdict word per row: a row the rules do not decide says only that, never its raw verdict beside it
        words = f"raw: *{decision_words(r['verdict'])}*, {scope}: **{decision}**"
        words = f"**{decision}**" if decision in WITHHELD else words
        lines.append(
            f"- **{r['hypothesis']}** {r['claim']} ({r['budget']}, {r['n_seeds']} seeds; interval over {over}): "
            f"{fmt(r['effect'], r['unit'])} ({interval}); {words}"
            + (f" — {note}" if isinstance(note, str) and note else "")
        )
    return "\n".join(lines)
