"""Declare first, then run: a hypothesis and its decision rule (or the final choice) recorded with a timestamp.

:func:`declare` writes one run tagged ``kind=declaration`` into the experiment: the hypothesis, the rule, the
factor and its values, the nuisance hyperparameters (each held at a value or ``"tune"`` per arm) and the seeds,
as tags. The run's start time is the declaration's time, so the rubric check can compare it with the first
trial's start. :func:`declare_final` records the final configuration and its success criterion before the
test set is read. ``python -m lib declare`` does the same from a terminal.

What this is not: a lock (a later declaration is recorded too, and the check says so), or the check itself.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from lib import tracking
from lib.assignment.records import AssignmentError, RunRecord, _runs, when
from lib.config import ConfigError, TrialConfig
from lib.store.schema import KIND_DECLARATION, TAG_DECLARATION, TAG_KIND, hyperparameters

KIND = KIND_DECLARATION
MAX_TEXT = 4000  # characters of a hypothesis, rule or criterion (an MLflow tag holds 8,000)


@dataclass(frozen=True)
class Declaration:
    """A recorded declaration: ``stage`` is ``hypothesis`` or ``final``; ``time`` in ms since 1970."""

    stage: str
    experiment: str
    run_id: str
    time: int
    hypothesis: str = ""
    rule: str = ""
    factor: str = ""
    values: list[Any] = field(default_factory=list)
    nuisance: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    criterion: str = ""

    def __str__(self) -> str:
        what = (
            f"hypothesis and rule ({self.factor or 'no factor named'})"
            if self.stage == "hypothesis"
            else ("final configuration and its success criterion")
        )
        return f"declared the {what} in '{self.experiment}' at {when(self.time)} (run {self.run_id})"


def _text(value: Any, name: str) -> str:
    text = " ".join(str(value or "").split())
    if not text:
        raise AssignmentError(f'{name} is empty: write it in a sentence, e.g. {name}="..."')
    if len(text) > MAX_TEXT:
        raise AssignmentError(f"{name} has {len(text)} characters; keep it under {MAX_TEXT}")
    return text


def _names(names: Any, what: str) -> None:
    known = set(hyperparameters())
    unknown = sorted(str(n) for n in names if n not in known)
    if unknown:
        raise AssignmentError(f"{what} {unknown[0]!r} is not a hyperparameter; use one of {', '.join(sorted(known))}")


def _checked(factor: str | None, values: Any, nuisance: Any, seeds: Any) -> tuple[list, dict, list[int]]:
    if factor is not None:
        _names([factor], "factor")
    values = list(values or [])
    nuisance = dict(nuisance or {})
    _names(nuisance, "nuisance")
    seeds = list(seeds or [])
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise AssignmentError(f"seeds {seeds!r}: give whole numbers >= 0, e.g. seeds=[0, 1, 2]")
    try:
        json.dumps([values, nuisance])
    except (TypeError, ValueError) as exc:
        raise AssignmentError(f"values and nuisance must be plain numbers and text ({exc})") from None
    return values, nuisance, seeds


def _record(experiment: str, stage: str, fields: dict[str, Any]) -> Declaration:
    """Write the declaration run (FINISHED at once), read it back, and warn when trials came first."""
    experiment = _text(experiment, "experiment")
    exp_id = tracking.experiment_id(experiment)
    runs = _runs(experiment)
    earlier = [r for r in runs if r.is_trial]
    first = min((r.start for r in earlier), default=None)
    declared_first = any(r.is_declaration and first is not None and r.start < first for r in runs)
    tags = {TAG_KIND: KIND, TAG_DECLARATION: stage} | {
        k: (v if isinstance(v, str) else json.dumps(v)) for k, v in fields.items() if v not in (None, "", [], {})
    }
    run_id = tracking.start_run(exp_id, {}, tags, run_name=f"declaration-{stage}")
    tracking.end_run(run_id)
    declared = declaration_of(next(r for r in _runs(experiment) if r.run_id == run_id), experiment)
    if earlier and stage == "hypothesis" and not declared_first:  # a rerun after a timely declaration is fine
        print(
            f"warning: {len(earlier)} trials were already in '{experiment}': a hypothesis declared after its runs "
            "scores 0 on 'hypothesis first'",
            file=sys.stderr,
        )
    return declared


def declare(
    experiment: str,
    hypothesis: str,
    rule: str,
    factor: str | None = None,
    values: Any = None,
    nuisance: dict[str, Any] | None = None,
    seeds: Any = None,
) -> Declaration:
    """Record the hypothesis and its decision rule in ``experiment``, before its first trial.

    ``factor``: the scientific hyperparameter (``"dropout_p"``), ``values`` its arms; ``nuisance``: each nuisance
    hyperparameter and how it is handled, a held value (``{"lr": 3e-3}``, a caveat of the claim) or ``"tune"``
    (tuned per arm); ``seeds``: the paired seeds every arm gets. Returns the :class:`Declaration`.
    """
    values, nuisance, seeds = _checked(factor, values, nuisance, seeds)
    fields = {
        "hypothesis": _text(hypothesis, "hypothesis"),
        "rule": _text(rule, "rule"),
        "factor": factor,
        "values": values,
        "nuisance": nuisance,
        "seeds": seeds,
    }
    return _record(experiment, "hypothesis", fields)


def declare_final(experiment: str, config: dict[str, Any], criterion: str) -> Declaration:
    """Record the final configuration (a dict of hyperparameters) and its success criterion before the test
    set is read. Returns the :class:`Declaration`."""
    if not isinstance(config, dict) or not config:
        raise AssignmentError("config must be a dict of the final hyperparameters, e.g. config={'dropout_p': 0.3}")
    try:
        TrialConfig.from_flat({k: v for k, v in config.items() if k != "seed"})
    except ConfigError as exc:
        raise AssignmentError(f"config: {exc}") from None
    return _record(experiment, "final", {"config": config, "criterion": _text(criterion, "criterion")})


def declaration_of(run: RunRecord, experiment: str = "") -> Declaration:
    """The :class:`Declaration` a ``kind=declaration`` run records (tags read back from JSON)."""

    def value(name: str, default: Any) -> Any:
        text = run.tags.get(name)
        if text is None:
            return default
        try:
            return json.loads(text)
        except ValueError:
            return text

    return Declaration(
        stage=run.tags.get(TAG_DECLARATION, "hypothesis"),
        experiment=experiment,
        run_id=run.run_id,
        time=run.start,
        hypothesis=run.tags.get("hypothesis", ""),
        rule=run.tags.get("rule", ""),
        factor=run.tags.get("factor", ""),
        values=value("values", []),
        nuisance=value("nuisance", {}),
        seeds=value("seeds", []),
        config=value("config", {}),
        criterion=run.tags.get("criterion", ""),
    )


def declarations(runs: list[RunRecord], stage: str) -> list[Declaration]:
    """The declarations of ``stage`` among ``runs``, oldest first."""
    found = [declaration_of(r) for r in runs if r.is_declaration and r.tags.get("declaration", "hypothesis") == stage]
    return sorted(found, key=lambda d: d.time)


__all__ = ["Declaration", "declaration_of", "declarations", "declare", "declare_final"]
