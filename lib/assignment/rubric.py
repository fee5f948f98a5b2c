"""The rubric of docs/teaching.md scored from the records of one study: 0, 1 or 2 per criterion, with evidence.

Six of the eight criteria can be read from the runs: *hypothesis first* (the declaration's time against the
first trial's), *controlled comparison* (which hyperparameters varied between the trials), *nuisance
hyperparameters* (named in the declaration, and held or tuned per arm as declared), *seeds, paired* (the seeds
of every arm), *the test set once, at the end* (the final runs, their configurations and times) and
*scripting hygiene* (every hyperparameter and the seed logged). *A plot with intervals and a budget* and
*Conclusions* are judged by reading the report: their score is ``None`` and the evidence says so.

What this is not: a grade (a teacher reads the report and decides), a reader of the store (``records``) or
the table and CSV (``lib.assignment.class_check``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nbformat import NotebookNode

from lib.assignment.declarations import Declaration, declarations
from lib.assignment.records import RunRecord, span, when
from lib.store.schema import hyperparameters

READ = "read the report"


@dataclass(frozen=True)
class Study:
    """What one row of the check is about: who, which experiment, its runs and the hand-in's notebooks."""

    who: str
    experiment: str
    runs: list[RunRecord]
    notebooks: dict[str, NotebookNode] = field(default_factory=dict)

    @property
    def trials(self) -> list[RunRecord]:
        return [r for r in self.runs if r.is_trial]

    @property
    def compared(self) -> list[RunRecord]:
        """Finished validation trials (no tuning phase, no test-set run): what the claim compares."""
        return [r for r in self.trials if not r.is_final and not r.is_tuning and r.status == "FINISHED"]

    @property
    def declared(self) -> Declaration | None:
        found = declarations(self.runs, "hypothesis")
        return found[0] if found else None


@dataclass(frozen=True)
class Score:
    """One criterion's score (``None``: judged by reading) and the evidence behind it."""

    key: str
    title: str
    points: int | None
    evidence: str


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _same(a: object, b: object) -> bool:
    """Two logged values equal: as numbers when both are numbers, else as text with the brackets of a list or
    tuple left out (a declared ``[64]`` is the logged ``(64,)``)."""

    def text(value: object) -> str:
        if isinstance(value, list | tuple):
            value = ",".join(map(str, value))
        return str(value).strip("[]() ").rstrip(",").replace(" ", "")

    try:
        return float(str(a)) == float(str(b))
    except ValueError:
        return text(a) == text(b)


def _varied(runs: list[RunRecord]) -> list[str]:
    configs = [r.config() for r in runs]
    names = sorted({n for c in configs for n in c})
    return [n for n in names if len({c.get(n) for c in configs}) > 1]


def factor_of(study: Study) -> str | None:
    """The declared factor, else the one hyperparameter that varied (``None`` when none or several did)."""
    if study.declared and study.declared.factor:
        return study.declared.factor
    varied = _varied(study.compared)
    return varied[0] if len(varied) == 1 else None


def _short_value(text: str) -> str:
    try:
        return f"{float(text):.3g}"
    except ValueError:
        return text


def _arms(study: Study) -> dict[str, set[str]]:
    """Seeds per arm: per value of the factor, else per setting of the hyperparameters that varied."""
    factor = factor_of(study)
    names = [factor] if factor else _varied(study.compared)
    arms: dict[str, set[str]] = {}
    for run in study.compared:
        config = run.config()
        label = ", ".join(f"{n}={_short_value(str(config.get(n)))}" for n in names) or "one setting"
        arms.setdefault(label, set()).add(run.params.get("seed", "none logged"))
    return arms


def hypothesis_first(study: Study) -> tuple[int, str]:
    found = declarations(study.runs, "hypothesis")
    if not found:
        return 0, (
            f"no declaration in '{study.experiment}': record the hypothesis and its rule first "
            "(assignment.declare or python -m lib declare)"
        )
    first, trials = found[0], study.trials
    said = f'hypothesis "{_short(first.hypothesis)}"; rule "{_short(first.rule)}"'
    if not trials:
        return (2 if first.rule else 1), f"declared at {when(first.time)}; no trial yet; {said}"
    start = min(trials, key=lambda r: r.start)
    if first.time > start.start:
        return 0, (
            f"declared at {when(first.time)}, {span(first.time - start.start)} AFTER the first trial "
            f"({start.name or start.run_id} at {when(start.start)})"
        )
    if not first.rule:
        return 1, f"declared {span(start.start - first.time)} before the first trial, but without a decision rule"
    changed = [
        d for d in found[1:] if d.time > start.start and (d.hypothesis, d.rule) != (first.hypothesis, first.rule)
    ]
    if changed:
        return 1, f"declared first, but declared again with another hypothesis or rule at {when(changed[0].time)}"
    return 2, f"declared at {when(first.time)}, {span(start.start - first.time)} before the first trial; {said}"


def controlled(study: Study) -> tuple[int, str]:
    runs, factor = study.compared, factor_of(study)
    varied = _varied(runs)
    if not runs:
        return 0, "no finished validation trials to compare"
    if factor is None:
        what = (
            "nothing varied between the trials" if not varied else f"{len(varied)} varied at once: {', '.join(varied)}"
        )
        return 0, f"no factor declared and {what}"
    if factor not in varied:
        return 0, f"the factor {factor} did not vary between the {len(runs)} trials"
    declared = study.declared.nuisance if study.declared else {}
    tuned = [n for n, how in declared.items() if how == "tune"]
    others = [n for n in varied if n != factor and n not in tuned]
    values = sorted({r.config().get(factor) for r in runs}, key=str)
    tuning = f"; tuned per arm: {', '.join(tuned)}" if tuned else ""
    if not others:
        return 2, f"only {factor} varied ({', '.join(map(str, values))}) over {len(runs)} trials; the rest held{tuning}"
    groups: dict[tuple, set] = {}
    for run in runs:
        config = run.config()
        groups.setdefault(tuple(config.get(n) for n in others), set()).add(config.get(factor))
    alone = [g for g in groups.values() if len(g) > 1]
    if not alone:
        return 0, f"{factor} never changed alone: it changed together with {', '.join(others)}"
    if all(g == set(values) for g in groups.values()):
        return 2, f"{factor} varied within each setting of {', '.join(others)} (a complete grid){tuning}"
    return 1, f"{factor} changed alone in {len(alone)} of {len(groups)} settings of {', '.join(others)}"


def nuisance(study: Study) -> tuple[int, str]:
    declared = study.declared.nuisance if study.declared else {}
    if not declared:
        return 0, "no nuisance hyperparameter named in the declaration (e.g. nuisance={'lr': 0.003} or {'lr': 'tune'})"
    good, bad = [], []
    for name, how in declared.items():
        if how == "tune":
            arms: dict[str, set[str]] = {}
            for run in (r for r in study.trials if r.is_tuning):
                arms.setdefault(str(run.config().get(factor_of(study))), set()).add(run.params.get(name, "?"))
            compared = {str(r.config().get(factor_of(study))) for r in study.compared}
            if arms and set(arms) >= compared and all(len(v) > 1 for v in arms.values()):
                good.append(f"{name} tuned per arm ({len(arms)} arms)")
            else:
                bad.append(f"{name} declared 'tune' but not tuned in every arm")
            continue
        used = sorted({r.params.get(name, "(not logged)") for r in study.compared})
        if used and all(_same(v, how) for v in used):
            good.append(f"{name} held at {how} in all {len(study.compared)} trials (a caveat of the claim)")
        else:
            bad.append(f"{name} declared held at {how}, but the trials used {', '.join(used) or 'nothing'}")
    return (1 if bad else 2), "; ".join(bad + good)


def seeds_paired(study: Study) -> tuple[int, str]:
    arms = _arms(study)
    if not arms:
        return 0, "no finished validation trials"
    listed = "; ".join(f"{arm}: seeds {','.join(sorted(s, key=str))}" for arm, s in sorted(arms.items())[:3])
    listed += f"; … ({len(arms)} settings)" if len(arms) > 3 else ""
    if max(len(s) for s in arms.values()) <= 1:
        return 0, f"one run per setting ({len(arms)} settings): {listed}"
    same, fewest = len({frozenset(s) for s in arms.values()}) == 1, min(len(s) for s in arms.values())
    if same and fewest >= 3 and len(arms) > 1:
        return 2, f"every arm has the same {fewest} seeds (paired): {listed}"
    why = "fewer than 3 seeds" if fewest < 3 else "the arms have different seeds" if not same else "only one arm"
    return 1, f"{why}: {listed}"


def _readings(study: Study) -> list[list[RunRecord]]:
    """The test-set readings: runs of the same final configuration, not separated by a validation trial."""
    readings: list[list[RunRecord]] = []
    for run in sorted((r for r in study.trials if r.is_final), key=lambda r: r.start):
        last = readings[-1][-1] if readings else None
        between = last and any(last.start < t.start < run.start for t in study.trials if not t.is_final)
        if last is None or between or last.config() != run.config():
            readings.append([])
        readings[-1].append(run)
    return readings


def test_set_once(study: Study) -> tuple[int, str]:
    readings = _readings(study)
    if not readings:
        return 0, "no test-set reading (a final run with test_accuracy) in the experiment"

    def seeds(runs: list[RunRecord]) -> str:
        return ",".join(r.params.get("seed", "none logged") for r in runs)

    if len(readings) > 1:
        listed = "; ".join(f"{when(r[0].start)} (seeds {seeds(r)})" for r in readings)
        return 0, f"the test set was read {len(readings)} times: {listed}"
    reading, start = readings[0], readings[0][0].start
    after = [t for t in study.trials if not t.is_final and t.start > start]
    if after:
        return 1, f"read once at {when(start)}, but {len(after)} validation trials ran after it"
    finals = [d for d in declarations(study.runs, "final") if d.time < start]
    if not finals:
        return 1, f"read once at {when(start)} (seeds {seeds(reading)}), but no final choice was declared before it"
    config = reading[0].config()
    differ = [k for k, v in finals[-1].config.items() if k in config and not _same(v, config[k])]
    if differ:
        return 1, f"read once, but not the declared configuration ({', '.join(differ)} differ)"
    said = f'"{_short(finals[-1].criterion, 60)}"'
    return 2, (
        f"read once at {when(start)} (seeds {seeds(reading)}), after every validation trial; the final choice "
        f"and its criterion {said} declared {span(start - finals[-1].time)} before"
    )


def hygiene(study: Study) -> tuple[int, str]:
    trials = study.trials
    if not trials:
        return 0, "no trial runs: nothing can be found or re-run"
    no_seed = [r for r in trials if "seed" not in r.params]
    if no_seed:
        return 0, f"{len(no_seed)} of {len(trials)} trials log no seed: they cannot be re-run"
    missing = sorted({n for r in trials for n in hyperparameters() if n not in r.params})
    if missing:
        return 1, f"trials lack {len(missing)} hyperparameters (e.g. {', '.join(missing[:4])}): log every one"
    made = (
        ", ".join(study.notebooks)
        or ", ".join(sorted({r.tags["study_command"] for r in trials if "study_command" in r.tags})[:1])
        or "(not said)"
    )
    return 2, f"all {len(trials)} trials log every hyperparameter and the seed; made by: {_short(made, 80)}"


def plot(study: Study) -> tuple[None, str]:
    figures = {
        name: sum(
            o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
        )
        for name, nb in study.notebooks.items()
    }
    found = "; ".join(f"{name}: {n} figure{'s' * (n != 1)}" for name, n in figures.items())
    return None, f"{READ} ({found})" if found else READ


def conclusions(study: Study) -> tuple[None, str]:
    return None, READ


CRITERIA: list[tuple[str, str, Callable[[Study], tuple[int | None, str]]]] = [
    ("hypothesis_first", "Hypothesis first", hypothesis_first),
    ("controlled_comparison", "Controlled comparison", controlled),
    ("nuisance", "Nuisance hyperparameters", nuisance),
    ("seeds_paired", "Seeds, paired", seeds_paired),
    ("plot", "A plot with intervals and a budget", plot),
    ("test_set_once", "The test set once, at the end", test_set_once),
    ("conclusions", "Conclusions", conclusions),
    ("hygiene", "Scripting hygiene", hygiene),
]


def score(study: Study) -> list[Score]:
    """Every criterion of the rubric for ``study``, in the rubric's order."""
    return [Score(key, title, *judge(study)) for key, title, judge in CRITERIA]
