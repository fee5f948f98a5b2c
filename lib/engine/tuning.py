"""Hyperparameter roles and nuisance tuning per arm: compare scientific values each at its own best.

Every hyperparameter of a study has a *role* (Google's Deep Learning Tuning Playbook,
https://github.com/google-research/tuning_playbook):

- **scientific**: what the claim is about (``dropout_p``); its values are the arms compared;
- **nuisance**: tuned again for *each* scientific value before comparing (``lr``, ``weight_decay``);
- **fixed**: held at one value (``--set``); every conclusion holds for that value only (a caveat).

:func:`run_study` (keyword form: :func:`run_tuned_grid`) runs the design in two phases, both cached and
resumable (each one :func:`run_phase`, one :func:`lib.engine.grid.run_trials` call):

1. **tune**: every scientific value x every nuisance combination x the *tuning seeds*; each arm's
   winner is the nuisance combination with the best mean score over those seeds (on validation);
2. **remeasure**: each arm's winner, and the fixed-nuisance configuration (the base's own nuisance
   values, the line a naive grid would draw), trained again on *fresh* paired seeds, disjoint from the
   tuning seeds. The claim is decided on these runs only: the tuning runs chose the winner, so their
   best score is biased upwards (the winner's curse).

Every run is tagged ``tuning_id``, ``phase`` (``tune`` / ``remeasure``), ``role_scientific``,
``role_nuisance``, ``role_fixed`` and ``checkpoint_rule``; ``lib.report`` reads them back.

The phases are public (:func:`run_phase`, :func:`mean_score`, :func:`remeasure`, :func:`record_hypotheses`), so
successive halving (``lib.engine.halving``) is a rung policy on top of them, not a second driver.

What this is not: where trials train (the back-ends), the records, or the statistics of a verdict
family (``lib.study.analysis``); :meth:`TunedGrid.effects` gives paired intervals, not Holm decisions.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lib import store, tracking
from lib.config import ConfigError, TrialConfig
from lib.data import DataSpec
from lib.engine import grid, records
from lib.engine.backend import StudyError
from lib.engine.request import StudyRequest
from lib.engine.trial import TrialResult
from lib.stats import mean_ci, paired_effect
from lib.store.schema import TAG_CHECKPOINT_RULE, TAG_FIXED_NUISANCE, TAG_PHASE, TAG_ROLE, TAG_TUNING_ID

ROLES = ("scientific", "nuisance", "fixed")
CHECKPOINT_RULES = ("last", "best_epoch")
PHASES = ("tune", "remeasure")


def check_role(name: str, role: str) -> str:
    """``role`` is one of :data:`ROLES` (a one-line :class:`StudyError` otherwise)."""
    if role not in ROLES:
        raise StudyError(f"role {role!r} for '{name}': unknown role; use one of {', '.join(ROLES)}")
    return role


def check_rule(rule: str) -> str:
    if rule not in CHECKPOINT_RULES:
        raise StudyError(
            f"checkpoint rule {rule!r}: use 'last' (the last epoch's validation accuracy) or 'best_epoch' "
            "(the best epoch's validation accuracy)"
        )
    return rule


@dataclass(frozen=True)
class Roles:
    """The declared role of each hyperparameter: scientific values, nuisance ranges, fixed values."""

    scientific: dict[str, list[Any]]
    nuisance: dict[str, list[Any]]
    fixed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, values in (("scientific factor", self.scientific), ("nuisance range", self.nuisance)):
            grid.check_values(values, what, "'seed' has no role: give seeds with --seeds / --tune-seeds")
        if not self.scientific:
            raise StudyError("no scientific factor: give at least one --factor (what the claim is about)")
        if not self.nuisance:
            raise StudyError("no nuisance range: give at least one --tune NAME=V1,V2 (tuned for every arm)")
        both = sorted(set(self.scientific) & set(self.nuisance))
        if both:
            raise StudyError(f"{both} is both a factor and tuned: a hyperparameter has one role; drop --tune {both[0]}")
        fixed_too = sorted((set(self.scientific) | set(self.nuisance)) & set(self.fixed))
        if fixed_too:
            raise StudyError(f"{fixed_too} is fixed (--set) and also varied: a hyperparameter has one role")
        object.__setattr__(self, "scientific", _typed(self.scientific))
        object.__setattr__(self, "nuisance", _typed(self.nuisance))

    def arms(self) -> list[dict[str, Any]]:
        """Every scientific value to compare (the product of the scientific factors), in order."""
        names = list(self.scientific)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.scientific.values())]

    def tags(self) -> dict[str, str]:
        return {
            TAG_ROLE["scientific"]: ",".join(self.scientific),
            TAG_ROLE["nuisance"]: ",".join(self.nuisance),
            TAG_ROLE["fixed"]: ",".join(sorted(self.fixed)) or "(config defaults)",
        }


def _typed(values: dict[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Each value as the config holds it (``"1e-3"``, a string to YAML, becomes the float 0.001), so the
    values compare equal to the trials' own; a value the config rejects is a one-line error."""
    typed = {}
    for name, items in values.items():
        typed[name] = []
        for item in items:
            try:
                typed[name].append(TrialConfig.from_flat({name: item}).flat()[name])
            except ConfigError as exc:
                raise StudyError(f"'{name}' value {item!r} is not allowed: {exc}") from None
    return typed


def check_seeds(tune_seeds: Sequence[int], seeds: Sequence[int]) -> None:
    """Tuning and re-measure seeds are given and share no seed (the re-measure must be fresh)."""
    if not list(tune_seeds):
        raise StudyError("tune seeds are empty; give at least one (e.g. --tune-seeds 100,101)")
    if not list(seeds):
        raise StudyError("re-measure seeds are empty; give at least one (three or more for intervals)")
    shared = sorted(set(tune_seeds) & set(seeds))
    if shared:
        raise StudyError(
            f"seeds {shared} are both tuning and re-measure seeds: the re-measure must use fresh seeds, "
            "e.g. --tune-seeds 100,101 --seeds 0,1,2"
        )


def tuning_id(experiment: str, roles: Roles, tune_seeds: Sequence[int], seeds: Sequence[int], data: DataSpec) -> str:
    """The identity of one tuned study (its design), carried as a tag by every run of it."""
    design = [experiment, roles.scientific, roles.nuisance, roles.fixed, list(tune_seeds), list(seeds)]
    text = json.dumps(design, default=str)
    return hashlib.sha256((text + repr(sorted(data.params().items()))).encode()).hexdigest()[:10]


def trial_score(result: TrialResult, rule: str) -> float:
    """The declared score of one trial: the last epoch's validation accuracy or the best epoch's."""
    if not result.ok:
        return float("nan")
    if rule == "last":
        return result.val_accuracy
    if "best_val_accuracy" in result.metrics:
        return float(result.metrics["best_val_accuracy"])
    history = [row["val_accuracy"] for row in result.history if "val_accuracy" in row]
    if not history and result.run_id:
        stored = store.history(result.run_id, ("val_accuracy",))
        history = stored["val_accuracy"].dropna().tolist() if len(stored) else []
    return max(history) if history else result.val_accuracy


@dataclass
class Arm:
    """One scientific value: its tuning table, its winner and the re-measured runs."""

    value: dict[str, Any]
    tuning: pd.DataFrame  # one row per nuisance combination: the combination, mean score, finished seeds
    winner: dict[str, Any] | None
    remeasured: list[TrialResult] = field(default_factory=list)
    fixed: list[TrialResult] = field(default_factory=list)

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.value.items())


@dataclass
class TunedGrid:
    """The outcome of :func:`run_tuned_grid`: the arms, the seeds, the rule, and the frames of every run."""

    roles: Roles
    arms: list[Arm]
    tune_seeds: list[int]
    seeds: list[int]
    rule: str
    tuning_id: str
    fixed_nuisance: dict[str, Any]

    def summary(self) -> pd.DataFrame:
        """One row per arm: the winner, its tuning score, and the re-measured and fixed-nuisance means."""
        rows = []
        for arm in self.arms:
            tuned = [trial_score(r, self.rule) for r in arm.remeasured]
            fixed = [trial_score(r, self.rule) for r in arm.fixed]
            mean, low, high = mean_ci(tuned)
            fixed_mean, fixed_low, fixed_high = mean_ci(fixed)
            best = arm.tuning["score"].max() if len(arm.tuning) else math.nan
            rows.append(
                arm.value
                | {f"best {k}": v for k, v in (arm.winner or {}).items()}
                | {"tune_score_pct": best * 100, "remeasured_pct": mean * 100}
                | {"ci_low_pct": low * 100, "ci_high_pct": high * 100, "n": sum(not math.isnan(v) for v in tuned)}
                | {"fixed_pct": fixed_mean * 100, "fixed_ci_low_pct": fixed_low * 100}
                | {"fixed_ci_high_pct": fixed_high * 100}
            )
        return pd.DataFrame(rows)

    def curse(self) -> pd.DataFrame:
        """The winner's curse per arm and over all arms (:func:`winners_curse`)."""
        return winners_curse(self.summary(), list(self.roles.scientific))

    def remeasured_frame(self) -> pd.DataFrame:
        """Every arm's re-measured winner runs as one results frame (what a claim is decided on)."""
        return grid.results_frame([result for arm in self.arms for result in arm.remeasured])

    def effects(self) -> pd.DataFrame:
        """Paired effects (re-measured seeds) of every arm against the first, in accuracy points."""
        if not self.arms or not self.arms[0].remeasured:
            return pd.DataFrame()
        reference = self._per_seed(self.arms[0])
        rows = []
        for arm in self.arms[1:]:
            effect = paired_effect(self._per_seed(arm), reference, name=f"{arm.label()} vs {self.arms[0].label()}")
            rows.append(effect.as_dict() | {"rule": self.rule})
        frame = pd.DataFrame(rows)
        for column in ("mean_diff", "ci_low", "ci_high", "boot_low", "boot_high"):
            if column in frame:
                frame[column] = frame[column] * 100
        return frame

    def _per_seed(self, arm: Arm) -> pd.Series:
        return pd.Series({r.config["seed"]: trial_score(r, self.rule) for r in arm.remeasured}, dtype=float)


CURSE_COLUMNS = ["arm", "tune_score_pct", "remeasured_pct", "curse_pp", "n_arms", "n_positive", "max_curse_pp"]


def winners_curse(summary: pd.DataFrame, arm_columns: Sequence[str]) -> pd.DataFrame:
    """The winner's curse of a tuned study, per arm and over all arms: the winner's tuning score (its mean over
    the tuning seeds, the best of the points it was chosen among) minus its re-measured mean on the fresh
    seeds, in accuracy points (``curse_pp``; positive: the tuning score was optimistic).

    ``summary``: one row per arm with ``tune_score_pct`` and ``remeasured_pct`` (:meth:`TunedGrid.summary`,
    several studies' summaries concatenated, or a hand-made frame); ``arm_columns`` name the arm (``arm`` is
    ``name=value, ...``). The last row, ``arm="all arms"``, has the means over the arms with both scores, how
    many there are (``n_arms``), how many have a positive curse (``n_positive``) and the largest
    (``max_curse_pp``). The re-measure removes the curse from the level of a claim, not from which
    configuration was picked (that is what a replication with fresh tuning seeds asks)."""
    rows = []
    for _, row in summary.iterrows():
        curse = float(row["tune_score_pct"]) - float(row["remeasured_pct"])
        label = ", ".join(f"{name}={row[name]}" for name in arm_columns)
        rows.append({"arm": label, "tune_score_pct": float(row["tune_score_pct"])})
        rows[-1] |= {"remeasured_pct": float(row["remeasured_pct"]), "curse_pp": curse}
        rows[-1] |= {"n_arms": int(not math.isnan(curse)), "n_positive": int(curse > 0), "max_curse_pp": curse}
    frame = pd.DataFrame(rows, columns=CURSE_COLUMNS)
    scored = frame[frame["curse_pp"].notna()]
    total = {"arm": "all arms", "n_arms": len(scored), "n_positive": int((scored["curse_pp"] > 0).sum())}
    for column in ("tune_score_pct", "remeasured_pct", "curse_pp"):
        total[column] = float(scored[column].mean()) if len(scored) else math.nan
    total["max_curse_pp"] = float(scored["curse_pp"].max()) if len(scored) else math.nan
    return pd.concat([frame, pd.DataFrame([total], columns=CURSE_COLUMNS)], ignore_index=True)


def _nuisance_points(roles: Roles) -> list[dict[str, Any]]:
    names = list(roles.nuisance)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*roles.nuisance.values())]


def plan(base: TrialConfig | dict[str, Any] | None, roles: Roles, tune_seeds, seeds) -> list[TrialConfig]:
    """Validate the whole design (every tuning point) before anything is written; the tuning configs."""
    check_seeds(tune_seeds, seeds)
    base_config = base if isinstance(base, TrialConfig) else TrialConfig.from_flat(base or {})
    points = [arm | nuisance for arm in roles.arms() for nuisance in _nuisance_points(roles)]
    return grid.point_configs(base_config, points, tune_seeds)


def mean_score(results: list[TrialResult], wanted: dict[str, Any], rule: str, seeds: Sequence) -> tuple[float, int]:
    """The mean score (by ``rule``) of the trials with the values ``wanted`` over the tuning ``seeds``, and how
    many of them finished; NaN unless every seed finished (a failed seed is not averaged away)."""
    done = [s for s in (trial_score(r, rule) for r in results if matches(r, wanted)) if not math.isnan(s)]
    complete = len(done) == len(set(seeds)) and len(done) > 0
    return (sum(done) / len(done) if complete else math.nan), len(done)


def _tuning_table(results: list[TrialResult], roles: Roles, arm: dict[str, Any], rule: str, seeds) -> pd.DataFrame:
    """Mean score over the tuning seeds per nuisance combination of one arm (:func:`mean_score`)."""
    rows = []
    for point in _nuisance_points(roles):
        score, finished = mean_score(results, arm | point, rule, seeds)
        rows.append(point | {"score": score, "finished": finished})
    return pd.DataFrame(rows)


def pick_winner(table: pd.DataFrame, nuisance: Sequence[str], score: str = "score") -> dict[str, Any] | None:
    """The tuning rule of every tuned study, one place for the tuning code and the report: among the nuisance
    combinations whose every tuning seed finished (``score`` not NaN: the mean over those seeds), the one with
    the highest mean. ``None`` when none is complete."""
    if not len(table) or table[score].notna().sum() == 0:
        return None
    row = table.loc[table[score].idxmax()]
    return {name: (row[name].item() if hasattr(row[name], "item") else row[name]) for name in nuisance}


def _winner(table: pd.DataFrame, roles: Roles) -> dict[str, Any] | None:
    """The arm's winner by the one tuning rule (:func:`pick_winner`, which the report reuses)."""
    return pick_winner(table, list(roles.nuisance))


def study_tags(roles: Roles, identity: str, rule: str, fixed_nuisance: dict[str, Any]) -> dict[str, str]:
    """The tags every run of a tuned study carries: the roles, its identity, the rule, the fixed nuisance values."""
    tags = roles.tags() | {TAG_TUNING_ID: identity, TAG_CHECKPOINT_RULE: rule}
    return tags | {TAG_FIXED_NUISANCE: json.dumps(fixed_nuisance, default=str)}


def run_tuned_grid(
    base: TrialConfig | dict[str, Any] | None,
    roles: Roles,
    tune_seeds: Sequence[int],
    seeds: Sequence[int],
    experiment: str,
    data: DataSpec = DataSpec(),
    tags: dict[str, str] | None = None,
    rule: str = "last",
    winner_hypothesis: str | None = None,
    **options: Any,
) -> TunedGrid:
    """:func:`run_study` as keywords; ``options`` are :func:`lib.engine.grid.run_trials`' (``workers``,
    ``progress``, ``engine``)."""
    request = StudyRequest.of(experiment, base, data, tags, **options)
    return run_study(request, roles, tune_seeds, seeds, rule, winner_hypothesis)


def run_study(
    request: StudyRequest,
    roles: Roles,
    tune_seeds: Sequence[int],
    seeds: Sequence[int],
    rule: str = "last",
    winner_hypothesis: str | None = None,
) -> TunedGrid:
    """Tune ``roles.nuisance`` for each scientific value on ``tune_seeds``, then re-measure each arm's
    winner (and the fixed-nuisance configuration) on the fresh ``seeds`` (module docstring).

    ``winner_hypothesis``: a name added to the ``hypotheses`` tag of every re-measured winner run, so
    an analysis can read the claim's runs back from the store (``lib.study.inputs.trial_runs``).
    """
    check_rule(rule)
    tuning = plan(request.config, roles, tune_seeds, seeds)
    identity = tuning_id(request.experiment, roles, tune_seeds, seeds, request.data)
    fixed_nuisance = {name: request.config.flat()[name] for name in roles.nuisance}
    request = request.tagged(study_tags(roles, identity, rule, fixed_nuisance))
    tuned = run_phase(request, tuning, {TAG_PHASE: "tune"})
    arms = []
    for value in roles.arms():
        table = _tuning_table(tuned, roles, value, rule, tune_seeds)
        arms.append(Arm(value, table, _winner(table, roles)))
    remeasure(request, arms, seeds, fixed_nuisance)
    record_hypotheses(arms, winner_hypothesis)
    return TunedGrid(roles, arms, list(tune_seeds), list(seeds), rule, identity, fixed_nuisance)


def run_phase(request: StudyRequest, configs: list[TrialConfig], tags: dict[str, str]) -> list[TrialResult]:
    """One phase (or rung) of a tuned study: ``configs`` run by :func:`lib.engine.grid.run_trials` with the
    request's tags and ``tags``, each trial once; a run reused from an earlier call without this study's tags
    gets them (:func:`tag_reused`)."""
    request = request.tagged(tags)
    found = grid.run_trials(configs, request.experiment, request.data, request.tags, **request.options)
    results = unique_results(found)
    tag_reused(results, request.tags)
    return results


def remeasure(
    request: StudyRequest,
    arms: list[Arm],
    seeds: Sequence[int],
    fixed_nuisance: dict[str, Any],
    fixed_seeds: Sequence[int] | None = None,
) -> None:
    """Each arm's winner on the fresh ``seeds`` and the fixed-nuisance configuration on ``fixed_seeds``
    (default: the same seeds; ``[]``: none), in one phase; fills each arm's ``remeasured`` and ``fixed``."""
    fixed_on = list(seeds) if fixed_seeds is None else list(fixed_seeds)
    configs = []
    for arm in arms:
        if fixed_on:
            configs += grid.point_configs(request.config, [arm.value | fixed_nuisance], fixed_on)
        if arm.winner:
            configs += grid.point_configs(request.config, [arm.value | arm.winner], seeds)
    results = run_phase(request, configs, {TAG_PHASE: "remeasure"})
    for arm in arms:
        arm.fixed = [r for r in results if matches(r, arm.value | fixed_nuisance)]
        arm.remeasured = [r for r in results if arm.winner and matches(r, arm.value | arm.winner)]


def record_hypotheses(arms: list[Arm], winner_hypothesis: str | None, fixed_hypothesis: str | None = None) -> None:
    """Add ``winner_hypothesis`` to the ``hypotheses`` tag of every re-measured winner run, then
    ``fixed_hypothesis`` to every fixed-nuisance run (read afresh: a run can be both)."""
    winners = [store.stored_run(r.run_id) for arm in arms for r in arm.remeasured if r.run_id]
    records.add_hypothesis(winners, winner_hypothesis)
    if fixed_hypothesis:
        fixed_runs = [store.stored_run(r.run_id) for arm in arms for r in arm.fixed if r.run_id]
        records.add_hypothesis(fixed_runs, fixed_hypothesis)


def unique_results(results: list[TrialResult]) -> list[TrialResult]:
    """Each trial once (a request repeated, e.g. a winner equal to the fixed configuration, is one run)."""
    return list({result.key or id(result): result for result in results}.values())


def matches(result: TrialResult, wanted: dict[str, Any]) -> bool:
    """Whether the trial's config has every value of ``wanted``."""
    return all(result.config.get(k) == v for k, v in wanted.items())


def tag_reused(results: list[TrialResult], tags: dict[str, str]) -> None:
    """A run reused from an earlier call without role tags gets this study's (first use keeps its own)."""
    for result in results:
        if result.cached and result.run_id:
            stored = store.stored_run(result.run_id)
            if TAG_PHASE not in stored.tags:
                tracking.set_tags(result.run_id, tags)
