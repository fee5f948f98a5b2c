"""The notebooks' facade of the worked study: ``from lib.study import analysis`` and every name they call.

This module only re-exports; the work lives in one module per job:

- ``lib.study.inputs``: the runs a notebook reads (:func:`trial_runs`, :func:`grid_inputs`,
  :class:`MissingRunsError`) through ``lib.report``'s trial table (read by ``lib.store``), and the budget line;
- ``lib.study.registry``: every claim as a record (:data:`HYPOTHESES`), its family (:data:`FAMILIES`,
  :data:`FAMILY_SIZES`, :data:`GRID_FAMILY_HEADINGS`) and the grid inputs (:data:`GRID_INPUTS`);
- ``lib.study.verdicts``: verdict rows, Holm within each declared family (:func:`adjust`, which also binds the
  plateau checks: :data:`NOT_DECIDED_BUDGET`), :func:`display` and :func:`summary_markdown`;
- ``lib.study.plateau``: the plateau checks (:data:`BUDGET_CHECKS`, declared in the registry) and the budget
  a failed one would need;
- ``lib.study.hypotheses``: the rules that test the records: H1, H2a/H2b, H3 and the variance shift
  (:func:`grid_verdicts`), most of them the ``contrast`` of two arms (``lib.study.contrast``);
- ``lib.study.final``: choosing the final model (:func:`final_choice`, :func:`candidates`,
  :func:`compare_candidates`, :func:`recommendation`);
- ``lib.study.comparisons``: 05's budget (interaction), overfitting and search comparisons;
- ``lib.store``: per-epoch histories of runs (:func:`epoch_histories`) and a run's config (:func:`run_config`);
- ``lib.study.figures``: the study's own figures; ``lib.study.ledger``: the test-set readings.

What this is not: a place for code. New study code goes into the module of its job; a notebook may
import those modules directly.
"""

from __future__ import annotations

from lib.engine.trial import code_version
from lib.store import config_identity, epoch_histories, run_config
from lib.study.comparisons import (
    OVERFIT_REFERENCE,
    best_so_far,
    budget_change_lines,
    budget_changes,
    interaction,
    overfitting,
    run_curves,
    search_comparison,
)
from lib.study.contrast import design_columns
from lib.study.final import (
    DEFAULT_CONFIG,
    REGULARISATION,
    best_bn_placement,
    candidates,
    compare_candidates,
    controlled_arms,
    describe_config,
    final_choice,
    recommendation,
)
from lib.study.hypotheses import (
    HIGH_DROPOUT_ABOVE,
    LITTLE_GAIN,
    LR_TOLERANCE,
    MODERATE_DROPOUT,
    best_lrs,
    grid_verdicts,
    h1,
    h2_best,
    h2_lr_range,
    h2b_tuned,
    h3,
    lr_grid_step,
    usable_widths,
    variance_shift,
)
from lib.study.inputs import (
    MissingRunsError,
    budget_text,
    grid_inputs,
    join_budgets,
    train_images,
    trial_runs,
    trial_runs_or_empty,
)
from lib.study.registry import (
    BUDGET_CHECKS,
    FAMILIES,
    FAMILY_SIZES,
    FIXED_LABEL,
    GRID_FAMILY_HEADINGS,
    GRID_INPUTS,
    HYPOTHESES,
    SENSITIVITY,
)
from lib.study.verdicts import (
    ALPHA,
    DISPLAY_COLUMNS,
    NOT_DECIDED_BUDGET,
    adjust,
    decision_words,
    display,
    effect_between,
    summary_markdown,
    verdict_row,
)

identity = config_identity  # the name the notebooks use (lib.store.config_identity)
_identity = identity  # the name the v2 notebooks and tests used


__all__ = [
    "ALPHA",
    "BUDGET_CHECKS",
    "NOT_DECIDED_BUDGET",
    "DEFAULT_CONFIG",
    "DISPLAY_COLUMNS",
    "FAMILIES",
    "FAMILY_SIZES",
    "GRID_FAMILY_HEADINGS",
    "GRID_INPUTS",
    "HYPOTHESES",
    "FIXED_LABEL",
    "HIGH_DROPOUT_ABOVE",
    "LITTLE_GAIN",
    "LR_TOLERANCE",
    "MODERATE_DROPOUT",
    "OVERFIT_REFERENCE",
    "REGULARISATION",
    "SENSITIVITY",
    "MissingRunsError",
    "adjust",
    "best_bn_placement",
    "best_lrs",
    "best_so_far",
    "budget_change_lines",
    "budget_changes",
    "budget_text",
    "candidates",
    "code_version",
    "compare_candidates",
    "controlled_arms",
    "decision_words",
    "describe_config",
    "display",
    "effect_between",
    "epoch_histories",
    "final_choice",
    "grid_inputs",
    "grid_verdicts",
    "h1",
    "h2_best",
    "h2_lr_range",
    "h2b_tuned",
    "design_columns",
    "h3",
    "identity",
    "interaction",
    "join_budgets",
    "lr_grid_step",
    "overfitting",
    "recommendation",
    "run_config",
    "run_curves",
    "search_comparison",
    "summary_markdown",
    "train_images",
    "trial_runs",
    "trial_runs_or_empty",
    "usable_widths",
    "variance_shift",
    "verdict_row",
]
