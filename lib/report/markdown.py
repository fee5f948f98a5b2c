"""The report's markdown: ``report.md`` with its figures, checks and best configurations, for any experiments.

:func:`write_report` (``python -m lib report --experiment NAME [--experiment ...] [--out DIR]``) reads the
trials once (:func:`lib.report.table.trial_runs`), draws the figures (``lib.report.figures``), runs the
checks (``lib.report.checks``) and writes the study log, the sections and their captions. What it is not:
the pieces themselves (their modules, listed in ``lib.report``) or the hypothesis verdicts (``lib.study``),
which decide claims by fixed rules.

Budget: a trial's cost is *training images x epochs*; configurations are only ranked against others of
the same budget and the same validation data, since more data or more epochs buys accuracy by itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lib import plots, stats, store, tracking
from lib.report.checks import (
    ARM_COLUMNS,
    boundary_warnings,
    failure_shares,
    role_names,
    searched_ranges,
    top_configs,
    tuned_arms,
)
from lib.report.figures import (
    curves_figure,
    expected_max_figure,
    factor_figure,
    factor_figure_name,
    importance_table,
    scatter_figure,
    tuning_expected_max_figure,
)
from lib.report.links import runs_url
from lib.report.table import _short, budget_label, controlled, trial_runs, varied, with_best_epoch
from lib.store.schema import (
    FINISHED,
    PHASE,
    PHASE_REMEASURE,
    SWEEP,
    TAG_CHECKPOINT_RULE,
    TAG_CODE_VERSION,
    TAG_GIT_COMMIT,
    TAG_QUESTION,
    TAG_ROLE,
    TAG_STUDY_COMMAND,
    column,
)


def write_report(
    experiments: str | Sequence[str], out_dir: str | Path, top: int = 10, ui_base: str | None = None
) -> Path:
    """Write the figures, ``top_runs.csv`` and ``report.md`` for ``experiments`` into ``out_dir``.

    ``report.md`` opens with the study log (:func:`study_log`), then the checks (boundary warnings,
    failed trials per value), the isolation plot of a tuned study (``isolation.png``), the validation
    curves (``validation_curves.png``), ``acc_vs_<factor>.png`` for every hyperparameter that varies (the
    assignment's ``acc_vs_dropout.png`` for ``dropout_p``), ``lr_weight_decay_scatter.png``,
    ``expected_max.png`` (sweeps), ``hyperparameter_importance.png`` (8 or more finished search trials) and
    the best configurations (``top_runs.csv``). Returns the path of ``report.md``.
    """
    names = [experiments] if isinstance(experiments, str) else list(experiments)
    runs = trial_runs(names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    histories = store.epoch_histories(runs, metrics=("val_accuracy",))
    runs = with_best_epoch(runs, histories)
    best = top_configs(runs, top)
    best.to_csv(out / "top_runs.csv", index=False)
    lines = [f"# Report: {', '.join(names)}", "", *study_log(runs, names, best), *_overview(runs)]
    lines += checks_section(runs, names)
    lines += _isolation_section(runs, out)
    lines += _curves_section(runs, histories, out)
    lines += _factor_section(runs, out)
    lines += _figure_section(
        "Learning rate and weight decay",
        "lr_weight_decay_scatter",
        scatter_figure(runs),
        out,
        "Each point is one trial, colour = validation accuracy; the ringed point is the best trial.",
    )
    lines += _importance_section(runs, out)
    lines += _expected_max_section(runs, out)
    lines += _top_section(best, varied(runs), top)
    links = [f"- {name}: {runs_url(name, ui_base)}" for name in names]
    lines += ["## In the MLflow UI", "", "Start it with `make ui`, then open:", "", *links, ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _figure_section(heading: str, name: str, fig: plt.Figure, out: Path, caption: str) -> list[str]:
    plots.save_figure(fig, name, caption, folder=out)
    plt.close(fig)
    return [f"## {heading}", "", f"![{name}]({name}.png)", "", f"*{caption}*", ""]


def _overview(runs: pd.DataFrame) -> list[str]:
    finished = runs[runs["status"] == FINISHED]
    fell = int(runs["collapsed"].sum()) if "collapsed" in runs else 0
    lines = [
        "## The runs",
        "",
        f"Store: `{tracking.tracking_uri()}`. {len(finished)} finished ({fell} of them collapsed to chance "
        f"accuracy and left out of every mean) and {len(runs) - len(finished)} failed "
        f"trial runs ({', '.join(f'{n} {s}' for s, n in runs['source'].value_counts().items())}); "
        f"{budget_label(runs)}.",
        "",
        "Validation accuracy in %. Configurations are compared only at equal budget (training images × epochs) "
        "and on the same validation data; a grid gives a mean and a 95% CI over seeds, a search gives points.",
        "",
    ]
    version = column(TAG_CODE_VERSION)
    versions = runs[version].nunique() if version in runs else 1
    if versions > 1:
        note = f"Note: these runs come from {versions} versions of the training code; "
        lines += [note + "configurations of different versions are listed separately.", ""]
    return lines


def _factor_section(runs: pd.DataFrame, out: Path) -> list[str]:
    finished = runs[runs["status"] == FINISHED]
    factors = varied(runs)
    lines = ["## Accuracy per hyperparameter", ""]
    if not factors:
        lines += ["No hyperparameter varies among the finished trials: there is nothing to plot against.", ""]
    skipped = []
    for factor in factors:
        fig = factor_figure(runs, factor)
        if fig is None:
            skipped.append(factor)
            continue
        caption = f"Validation accuracy against {factor}. " + (
            "Grid: mean ± 95% CI over seeds; a line per value of the grid's other factor, the rest fixed."
            if len(controlled(finished[finished["source"] == "grid"], factor))
            else "Search: each point is one trial, black = mean per bin; other settings vary too."
        )
        name = factor_figure_name(factor)
        plots.save_figure(fig, name, caption, folder=out)
        plt.close(fig)
        lines += [f"![{name}]({name}.png)", "", f"*{caption}*", ""]
    if skipped:
        lines += [
            f"No figure for {', '.join(skipped)}: it varies only between separate grids, never with "
            "everything else fixed, so a plot would compare different experiments.",
            "",
        ]
    return lines


def _importance_section(runs: pd.DataFrame, out: Path) -> list[str]:
    search = runs[(runs["status"] == FINISHED) & (runs["source"] == "sweep")]
    if len(search) < 8:
        return []
    table = importance_table(search)
    if not len(table):
        return []
    fig = plots.importance(table, budget=budget_label(search))
    caption = "η² per hyperparameter over the search trials; pale bars are within what chance gives."
    return _figure_section("Hyperparameter importance (search)", "hyperparameter_importance", fig, out, caption)


def _top_section(best: pd.DataFrame, factors: list[str], top: int) -> list[str]:
    lines = ["## Best configurations per budget", "", "Full table: [top_runs.csv](top_runs.csv).", ""]
    lines += [
        "`mean_val_acc_pct` scores each trial at its last epoch; `best_epoch_val_acc_pct` at the epoch of its "
        "highest validation accuracy (`best_epoch`, median over seeds). The best epoch is chosen on the same "
        "validation data it is scored on, so it reads optimistic: it says where to stop, not how good.",
        "",
    ]
    show = ["budget", "rank_in_budget", "n", "mean_val_acc_pct", "ci_low_pct", "ci_high_pct"]
    show += ["best_epoch", "best_epoch_val_acc_pct"]
    show = [c for c in show if c in best]
    show += [f for f in factors if f in best and f not in show]
    if len(best):
        lines += [_markdown_table(best[show].head(3 * top)), ""]
    return lines


def checks_section(runs: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """Boundary warnings (grids: the span of their values; sweeps: their searched ranges) and the share
    of failed trials per hyperparameter value."""
    lines = ["## Checks before reading the results", ""]
    sweeps = runs[runs["source"] == "sweep"]
    grids = runs[runs["source"] == "grid"]
    warnings = boundary_warnings(grids) if len(grids) else []
    warnings += boundary_warnings(sweeps, searched_ranges(names)) if len(sweeps) else []
    lines += [
        "**Search-space boundaries** (the best configuration in the outer 10% of a searched range, "
        "log-scaled for log ranges):",
        "",
    ]
    lines += [f"- ⚠ {w}" for w in warnings] or ["- none: every best value lies inside its range."]
    shares = failure_shares(runs)
    failed = shares[(shares["failed"] > 0) | (shares["collapsed"] > 0)] if len(shares) else shares
    lines += [
        "",
        "**Failed and collapsed trials per hyperparameter value** (failed: diverged, impossible or crashed; "
        f"collapsed: finished at or near chance accuracy, at most {100 * stats.COLLAPSE_MARGIN:.0f} points above "
        "1 / classes, counted apart and left out of every mean):",
        "",
    ]
    fell = int(runs["collapsed"].sum()) if "collapsed" in runs else 0
    if len(failed):
        lines += [_markdown_table(shares[shares["hyperparameter"].isin(failed["hyperparameter"])]), ""]
    elif fell or (runs["status"] != FINISHED).any():
        lines += [f"- {fell} collapsed, {int((runs['status'] != FINISHED).sum())} failed.", ""]
    else:
        lines += [f"- none of the {len(runs)} trials failed or collapsed.", ""]
    return lines


def _isolation_section(runs: pd.DataFrame, out: Path) -> list[str]:
    arms = tuned_arms(runs)
    if arms.empty:
        return []
    factor = role_names(runs, "scientific")[0]
    again = runs[(runs.get(PHASE) == PHASE_REMEASURE) & (runs["status"] == FINISHED)]
    fig = plots.isolation(arms, factor, budget=budget_label(again))
    caption = (
        f"Each {factor} at its own best nuisance setting (chosen on the tuning seeds, scored by the "
        f"'{arms['rule'].iloc[0]}' rule) and re-measured on fresh seeds, next to the fixed-nuisance line."
    )
    lines = _figure_section("Isolation plot (nuisance tuned per arm)", "isolation", fig, out, caption)
    table = arms.assign(**{c: arms[c] * 100 for c in ("mean", "ci_low", "ci_high", "tune_mean")})
    return lines + [_markdown_table(table.drop(columns=["rule"])), ""]


def _curves_section(runs: pd.DataFrame, histories: pd.DataFrame, out: Path) -> list[str]:
    if histories.empty:
        return []
    fig = curves_figure(runs, histories)
    caption = (
        "Every trial's validation accuracy per epoch (grey), the best five in colour, each best epoch marked. "
        "Still rising at the end: more epochs would help; a peak and a fall: overfitting."
    )
    return _figure_section("Validation curves", "validation_curves", fig, out, caption)


def study_log(runs: pd.DataFrame, names: Sequence[str], best: pd.DataFrame | None = None) -> list[str]:
    """The study log (markdown lines): per experiment its question, the role of each hyperparameter,
    trials finished/failed, the checkpoint rule, the best validation score with its interval, the
    budget, and the command and git commit that reproduce it (tags the CLI records)."""
    lines = ["## Study log", ""]
    for name in names:
        part = runs[runs["experiment"] == name]
        lines += [f"**{name}**", "", *_log_entries(part, best), ""]
    return lines


def _tag_values(frame: pd.DataFrame, tag: str) -> list[str]:
    name = column(tag)
    return sorted(frame[name].dropna().astype(str).unique()) if name in frame else []


def _log_entries(part: pd.DataFrame, best: pd.DataFrame | None) -> list[str]:
    done = part[part["status"] == FINISHED]
    question = _tag_values(part, TAG_QUESTION)
    entries = [f"- Question: {' / '.join(question) if question else 'not recorded (give --question next time)'}"]
    entries.append(f"- Roles: {_roles_text(part)}")
    phases = part[PHASE].fillna("—").value_counts().to_dict() if PHASE in part else {}
    detail = f" (by phase: {', '.join(f'{k} {v}' for k, v in phases.items())})" if phases else ""
    fell = int(part["collapsed"].sum()) if "collapsed" in part else 0
    entries.append(
        f"- Trials: {len(done)} finished ({fell} collapsed to chance accuracy), {len(part) - len(done)} failed{detail}"
    )
    rules = _tag_values(part, TAG_CHECKPOINT_RULE) or ["last"]
    entries.append(f"- Checkpoint rule: {', '.join(rules)} epoch (a trial's score is its validation accuracy there)")
    entries.append(f"- Best validation score: {_best_text(part, best)}")
    entries.append(f"- Budget per trial: {budget_label(part).removeprefix('budget per trial: ')}")
    commands = _tag_values(part, TAG_STUDY_COMMAND)
    commits = _tag_values(part, TAG_GIT_COMMIT)
    if commands:
        entries += [f"- Reproduce: `{c}`" for c in commands]
    else:
        entries.append("- Reproduce: no command recorded (these runs were not started by `python -m lib`)")
    entries.append(f"- Git commit: {', '.join(f'`{c}`' for c in commits) or 'unknown'}")
    return entries


def _roles_text(part: pd.DataFrame) -> str:
    """The roles of an experiment's hyperparameters, per grid and per sweep when they differ (a grid's
    factors are its scientific ones even when its runs predate the role tags)."""
    texts = [(label, _group_roles(rows, label == "grid")) for label, rows in _role_groups(part)]
    if len({text for _, text in texts}) <= 1:
        return texts[0][1] if texts else "no trials"
    return " | ".join(f"{label}: {text}" for label, text in texts)


def _role_groups(part: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The grid trials of an experiment, then each sweep's, as ``(label, rows)``."""
    source = part["source"] if "source" in part else pd.Series("grid", part.index)
    groups = [("grid", part[source == "grid"])]
    sweeps = part[source == "sweep"]
    names = sweeps[SWEEP].fillna("") if SWEEP in sweeps else pd.Series("", sweeps.index)
    groups += [(f"sweep {name}".strip(), rows) for name, rows in sweeps.groupby(names, sort=True)]
    return [(label, rows) for label, rows in groups if len(rows)]


def _group_roles(rows: pd.DataFrame, grid: bool) -> str:
    declared = {role: _tag_values(rows, TAG_ROLE[role]) for role in ("scientific", "nuisance", "fixed")}
    if any(declared.values()):
        words = {role: sorted({n for v in values for n in v.split(",") if n}) for role, values in declared.items()}
        return "; ".join(f"{role}: {', '.join(values) or '—'}" for role, values in words.items())
    names = varied(rows)
    if grid and names:  # a grid run before grids tagged their roles: its factors are what it varied
        return f"scientific: {', '.join(sorted(names))}; nuisance: —; fixed: everything else (its other settings)"
    return (
        f"not declared; varied: {', '.join(names) or 'nothing'}; everything else fixed at one value, a caveat on "
        "any conclusion (declare roles with grid --factor/--tune or sweep --role)"
    )


def _best_text(part: pd.DataFrame, best: pd.DataFrame | None) -> str:
    arms = tuned_arms(part)
    if len(arms):
        row = arms[arms["kind"] == "tuned"].sort_values("mean", ascending=False).iloc[0]
        factor = [c for c in arms.columns if c not in ARM_COLUMNS]
        arm = ", ".join(f"{c}={_short(row[c])}" for c in factor)
        return (
            f"{row['mean'] * 100:.2f}% (95% CI {row['ci_low'] * 100:.2f}–{row['ci_high'] * 100:.2f}, "
            f"{row['n']} fresh seeds) for {arm} at {row['nuisance']} (re-measured, not the tuning score)"
        )
    table = top_configs(part, 1)
    if not len(table):
        return "none finished"
    row = table.iloc[0]
    interval = (
        f" (95% CI {row['ci_low_pct']:.2f}–{row['ci_high_pct']:.2f}, {row['n']} seeds)"
        if not math.isnan(row["ci_low_pct"])
        else f" ({row['n']} seed{'s' if row['n'] != 1 else ''}, no interval)"
    )
    changed = ", ".join(f"{n}={_short(row[n])}" for n in varied(part) if n in row)
    return f"{row['mean_val_acc_pct']:.2f}%{interval}" + (f" at {changed}" if changed else "")


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return ""
            return f"{value:.4g}" if abs(value) < 0.01 or value.is_integer() else f"{value:.2f}"
        return str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _expected_max_section(runs: pd.DataFrame, out: Path) -> list[str]:
    """Expected-max curves: per sweep, and per arm of a tuned study (its quasi-random tuning points)."""
    lines = []
    figures = {"expected_max": expected_max_figure(runs), "expected_max_tuning": tuning_expected_max_figure(runs)}
    for name, made in figures.items():
        if made is not None:
            lines += _figure_section("Would more trials have helped?", name, made[0], out, made[1])
    return lines
