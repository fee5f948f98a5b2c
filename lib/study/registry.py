"""The study's hypotheses as data: one record per claim, the families they are decided in, and the grid
inputs they read.

A claim is a :class:`Hypothesis`: its name (the verdict row's ``hypothesis``), its family, its words, the
two arms it compares (:class:`Arm`: trials picked by one column), the predicted direction and margin, the
rule that tests it (a name in :data:`lib.study.hypotheses.RULES`), the grid input it reads and how that
input is split into one claim per group. Everything else is derived from these records:

- :data:`FAMILIES` (each family's text) and :data:`FAMILY_SIZES` (its declared number of claims, the
  count Holm adjusts over even when a notebook holds only part of it), :data:`DESCRIBED`;
- :data:`GRID_INPUTS` (the runs 04 reads) and :data:`GRID_FAMILY_HEADINGS` (how 04 titles its families);
- the verdict rows: :func:`lib.study.hypotheses.grid_verdicts` runs every record's rule on its input.

Adding a hypothesis: its record here (with its family and grid input when they are new), its rule in
``lib.study.hypotheses`` only when no existing rule fits (most claims are a ``contrast`` of two arms), and
the notebook cell that shows it. The thresholds were declared before the runs were read; H2a's rule and its
history are told in ``docs/design.md``. Two budget rules hold for the rows: the short-budget rule
(``verdicts.MIN_IMAGE_EPOCHS``, ``verdicts.MIN_SEEDS``) for every row, so no claim can opt out of it; and each
decided family's **plateau checks** (:class:`BudgetCheck`, :data:`BUDGET_CHECKS`): which control arm(s) of
which input are trained again for ``factor`` x the epochs, the runs' input, and the claims that depend on them.
A family without a check states why (:attr:`Family.budget_exempt`).

What this is not: the tests themselves (``lib.study.hypotheses``, ``lib.study.contrast``), the decision
(``lib.study.verdicts``: Holm per family, the short-budget rule for every row) or 05's and 06's comparisons
(``comparisons``, ``final``), whose families are declared here but whose rows their modules build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SENSITIVITY = "sensitivity"  # the family of described rows: effects and intervals, never decided
FIXED_LABEL = ", lr and weight decay fixed"  # added to a claim re-asked on its fixed-nuisance input


@dataclass(frozen=True)
class Arm:
    """The trials of a grid input on one side of a claim, picked by one column.

    ``values``: the column is one of these; ``at_least`` / ``above`` / ``at_most``: bounds on it (all that
    are given must hold). ``best_by``: of those trials, only the setting of these columns with the highest
    mean validation accuracy (the claim then names that setting).
    """

    column: str
    values: tuple[object, ...] = ()
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    best_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hypothesis:
    """One claim, as data: what it says, what it compares and how it is decided.

    ``claim`` and ``effect`` are templates: ``{group}`` (the group's label, with ``{design}`` appended),
    ``{design}`` (e.g. :data:`FIXED_LABEL`), ``{treatment}`` / ``{control}`` (the values an arm ran, or the
    best setting it picked), ``{treatment_at}`` / ``{control_at}`` (the same as ``column=value``) and
    ``{margin_pp}``. ``direction``: the predicted sign of treatment - control (``greater`` or ``less``),
    beyond ``margin`` (a fraction: 0.005 = half an accuracy point). ``rule``: the test, a name in
    ``lib.study.hypotheses.RULES``; ``split``: how the input is cut into groups, one claim per group (a name
    in ``lib.study.contrast.SPLITS``); ``claims``: how many rows the study declares for it (its share of the
    family's size). ``input``: the grid input it reads (:data:`INPUTS`); ``fixed_input``: where the same
    claim is re-asked at fixed nuisance values (described, never decided); ``subset``: only these trials of
    the input; ``threshold``: a rule's own declared number (H2a's tolerance); ``alternative``: the side(s) of
    its exact test (``two-sided``, or ``greater`` declared before the run), which with the family's size sets
    the seeds it needs (:func:`first_step_seeds`).
    """

    name: str
    family: str
    claim: str
    treatment: Arm | None = None
    control: Arm | None = None
    direction: str = "greater"
    margin: float = 0.0
    unit: str = "pp"
    rule: str = "contrast"
    input: str = ""
    fixed_input: str = ""
    split: str = "whole grid"
    subset: Arm | None = None
    claims: int = 1
    effect: str = "{treatment} - {control}"
    threshold: float | None = None
    alternative: str = "two-sided"

    def rule_text(self) -> str:
        """The decision rule in words: ``CI > 0``, ``CI < 0``, ``CI < +0.5 pp``."""
        side = ">" if self.direction == "greater" else "<"
        if not self.margin:
            return f"CI {side} 0"
        scale = 100.0 if self.unit == "pp" else 1.0
        return f"CI {side} {self.margin * scale:+.1f} {self.unit}"


@dataclass(frozen=True)
class Family:
    """A declared family of claims, decided together (Holm) or only described (``decided=False``)."""

    name: str
    title: str  # short: how 04 heads its rows
    notebook: str  # where its rows are made
    text: str  # what it asks, in one line
    decided: bool = True
    budget_exempt: str = ""  # a decided family without a plateau check: why none applies (declared)

    def heading(self) -> str:
        """``H1: dropout, per norm type (02)``; a described family: ``Sensitivity (described, not decided)``."""
        if not self.decided:
            return f"{self.title} (described, not decided)"
        return f"{self.name}: {self.title} ({self.notebook})"


@dataclass(frozen=True)
class GridInput:
    """Trial runs a hypothesis reads: the notebook's experiment and the runs' ``hypothesis`` tag.
    ``optional``: it may be empty (a profile may skip the fixed-nuisance arms)."""

    name: str
    notebook: str
    tag: str
    optional: bool = False


@dataclass(frozen=True)
class BudgetCheck:
    """A plateau check, declared before the runs: has the control stopped improving at the decision budget?

    ``control``: which trials of grid input ``input`` are the control (picked per arm, :attr:`by`: one check
    per arm, e.g. per norm type); they are trained again on the same seeds for ``factor`` x their epochs
    (tag :attr:`longer`, a grid input of its own) and the arm has *stopped improving* when the upper end of
    the paired gain's 95% interval is below half a point (``lib.study.plateau.MATERIAL``). ``claims``: the
    records whose rows depend on it; a row depends on the arms its own trials ran (its ``budget_keys``), and
    is *not decided: budget* when the check failed, or was not run, for one of them. The needed-budget ladder
    multiplies the epochs by ``factor`` again for an arm still improving, up to the profile's
    ``plateau_max_factor`` (``lib.study.plateau.run_ladder``).
    """

    name: str
    input: str
    control: Arm
    by: tuple[str, ...]
    longer: str
    claims: tuple[str, ...]
    factor: int = 2
    why: str = ""  # in one line: why these arms are the ones whose budget matters


# The controlled grids, in the order 04 reads and prints them. H1 and H3 are the re-measured winners of the
# per-arm tuning by successive halving; H1-fixed and H3-fixed the same arms at the fixed lr and weight decay.
INPUTS = (
    GridInput("H1", "02_norm_dropout", "H1"),
    GridInput("H1-fixed", "02_norm_dropout", "H1-fixed", optional=True),
    GridInput("H2", "02_norm_dropout", "H2"),
    GridInput("shift", "02b_dropout_bn", "variance_shift"),
    GridInput("H3", "03_conv_blocks", "H3"),
    GridInput("H3-fixed", "03_conv_blocks", "H3-fixed", optional=True),
)

FAMILY_LIST = (
    Family("H1", "dropout, per norm type", "02", "the dropout dose-response per norm type, each arm's lr x weight "
           "decay tuned"),
    Family("H2", "the learning rate", "02", "the usable learning-rate range (lattice-free) and the best accuracy, "
           "tuned arms"),
    Family("H3", "conv blocks", "03", "the number of conv blocks, each arm's lr x weight decay tuned"),
    Family("search", "TPE vs random search", "05", "TPE vs random search at equal trials and budget",
           budget_exempt="the claim is about two searches at one equal budget per trial, not about a model that "
           "could still improve: both searches train the same configurations' budget"),
    Family("final choice", "the final model", "06", "the winner among the declared candidates vs each other one",
           budget_exempt="each candidate is compared at its own declared schedule, the one the final model is "
           "retrained at: the claim is the choice at that schedule"),
    Family(SENSITIVITY, "Sensitivity", "02, 02b, 03, 05", "the fixed-nuisance arms, 02b's dropout placement and BN "
           "recalibration, 05's H1 at full budget and its interaction with the budget", decided=False),
)  # fmt: skip

_MODERATE = Arm("dropout_p", at_least=0.2, at_most=0.4)
_BEST_LR_WD = ("lr", "weight_decay")  # each norm type at its own tuned lr and weight decay

HYPOTHESES = (
    Hypothesis(
        name="H1a",
        family="H1",
        claim="{group}: dropout {treatment} beats none",
        treatment=_MODERATE,
        control=Arm("dropout_p", values=(0,)),
        effect="moderate - none ({group})",
        input="H1",
        fixed_input="H1-fixed",
        split="norm type and placement",
        claims=2,  # one per norm type
    ),
    Hypothesis(
        name="H1b",
        family="H1",
        claim="{group}: dropout {treatment} hurts vs {control}",
        treatment=Arm("dropout_p", above=0.5),
        control=_MODERATE,
        direction="less",
        effect="high - moderate ({group})",
        input="H1",
        fixed_input="H1-fixed",
        split="norm type and placement",
        claims=2,
    ),
    Hypothesis(
        name="H2a",
        family="H2",
        claim="BatchNorm widens the usable learning-rate range",
        treatment=Arm("norm_type", values=("batch",)),
        control=Arm("norm_type", values=("none",)),
        effect="usable LR decades, {treatment} - {control}",
        unit="decades",
        rule="usable learning-rate range",
        threshold=0.02,  # usable: within 2 accuracy points of the norm type's own best mean
        input="H2",
        # Study v5, declared before its run: two-sided, as in v1-v4 (a one-sided test chosen after v4 showed the
        # direction would be a choice made on the data). Decidable at Holm's first step of the 2-claim family
        # needs 2 / 2^k <= 0.05 / 2, i.e. k >= 7 seeds (first_step_seeds); the full profile runs 8 (lr_seeds), so
        # one small difference of the wrong sign still leaves p = 4/256 below 0.025. Weight decay is stated:
        # 5e-4 (the library default) on every trial of the lr grid, named in the row's design.
        alternative="two-sided",
    ),
    Hypothesis(
        name="H2b",
        family="H2",
        claim="BatchNorm raises the best accuracy (batch at {treatment_at} vs none at {control_at})",
        treatment=Arm("norm_type", values=("batch",), best_by=_BEST_LR_WD),
        control=Arm("norm_type", values=("none",), best_by=_BEST_LR_WD),
        effect="best batch arm - best none arm",
        input="H1",
        subset=Arm("dropout_p", values=(0,)),  # H1's two no-dropout arms
    ),
    Hypothesis(
        name="H3a",
        family="H3",
        claim="1-2 conv blocks beat 0{design}",
        treatment=Arm("num_conv_blocks", values=(1, 2)),
        control=Arm("num_conv_blocks", values=(0,)),
        effect="1-2 blocks - 0 blocks",
        input="H3",
        fixed_input="H3-fixed",
    ),
    Hypothesis(
        name="H3b",
        family="H3",
        claim="3+ blocks give little (< +{margin_pp}) or hurt vs {control}{design}",
        treatment=Arm("num_conv_blocks", at_least=3),
        control=Arm("num_conv_blocks", values=(1, 2), best_by=("num_conv_blocks",)),
        direction="less",
        margin=0.005,  # "little": less than half an accuracy point
        effect="3+ blocks - {control} blocks",
        input="H3",
        fixed_input="H3-fixed",
    ),
    Hypothesis(
        name="shift",
        family=SENSITIVITY,
        claim="recalibrating BN helps: {group}",  # after - before recalibration, the same weights
        effect="recalibration ({group})",
        rule="variance shift",
        input="shift",
    ),
    Hypothesis(
        name="placement",
        family=SENSITIVITY,
        claim="{group}: dropout placement '{treatment}' beats '{control}'",
        treatment=Arm("dropout_placement"),
        control=Arm("dropout_placement", values=("block",)),  # the course's order
        effect="{treatment} - {control} ({group})",
        rule="variance shift",
        input="shift",
    ),
)


# The plateau checks (study v5): every decided family's claims depend on one; a family without one states why
# (Family.budget_exempt). H1 and H2b: the no-dropout control of each norm type at its tuned lr and weight decay
# (the H1 check of v4, now binding); H2a: each norm type's best learning rate on the lr grid; H3: every block
# count (each H3 claim compares block counts, and a deeper net may need more epochs than a shallow one).
BUDGET_CHECKS = (
    BudgetCheck(
        "H1 controls", "H1", Arm("dropout_p", values=(0,)), ("norm_type",), "H1-plateau", ("H1a", "H1b", "H2b"),
        why="dropout is a regulariser: it can only pay once the no-dropout control has stopped improving",
    ),
    BudgetCheck(
        "H2a best rates", "H2", Arm("lr", best_by=("lr",)), ("norm_type",), "H2-plateau", ("H2a",),
        why="the usable range is measured against each norm type's own best mean: that best must have stopped "
        "improving, or the range is read off a curve that is still rising",
    ),
    BudgetCheck(
        "H3 block counts", "H3", Arm("num_conv_blocks", at_least=0), ("num_conv_blocks",), "H3-plateau",
        ("H3a", "H3b"),
        why="every H3 claim compares block counts, and a deeper net may need more epochs than a shallow one",
    ),
)


def checks_for(name: str) -> tuple[BudgetCheck, ...]:
    """The plateau checks a claim's rows depend on (by the claim's name, ``H1a``)."""
    return tuple(check for check in BUDGET_CHECKS if name in check.claims)


def budget_check(name: str) -> BudgetCheck:
    """One plateau check by its name; ``KeyError`` naming the declared ones."""
    for check in BUDGET_CHECKS:
        if check.name == name:
            return check
    raise KeyError(f"no budget check {name!r}; declared: {', '.join(c.name for c in BUDGET_CHECKS)}")


def first_step_seeds(record: Hypothesis, family_size: int, alpha: float = 0.05) -> int:
    """The fewest seeds whose exact sign-flip test can reject ``record`` at Holm's first step of a family of
    ``family_size`` claims: its smallest p (2 / 2^k two-sided, 1 / 2^k one-sided) at most ``alpha / size``."""
    sides = 2 if record.alternative == "two-sided" else 1
    seeds = 1
    while sides / 2**seeds > alpha / family_size:
        seeds += 1
    return seeds


def hypothesis(name: str) -> Hypothesis:
    """The record of one claim by its name (``H1a``); ``KeyError`` naming the registered ones."""
    for record in HYPOTHESES:
        if record.name == name:
            return record
    raise KeyError(f"no hypothesis {name!r}; registered: {', '.join(h.name for h in HYPOTHESES)}")


def members(family: str) -> tuple[Hypothesis, ...]:
    """The claims of one family, in the registry's order."""
    return tuple(record for record in HYPOTHESES if record.family == family)


def rule_groups(records: Sequence[Hypothesis] | None = None) -> list[tuple[Hypothesis, ...]]:
    """Neighbouring records (default: :data:`HYPOTHESES`) that one call of their rule tests together (same
    rule, input, split, subset and fixed input): their rows come out group by group (H1a then H1b for each
    norm type), as the notebooks show them."""
    groups: list[list[Hypothesis]] = []
    for record in HYPOTHESES if records is None else records:
        if groups and _together(groups[-1][-1]) == _together(record):
            groups[-1].append(record)
        else:
            groups.append([record])
    return [tuple(group) for group in groups]


def _together(record: Hypothesis) -> tuple[object, ...]:
    return record.rule, record.input, record.split, record.subset, record.fixed_input


def _families_text() -> dict[str, str]:
    texts = {}
    for family in FAMILY_LIST:
        names = "/".join(record.name for record in members(family.name))
        if not family.decided:
            names = "described, not decided"
        texts[family.name] = (f"{names}: " if names else "") + f"{family.text} ({family.notebook})"
    return texts


FAMILIES = _families_text()
# Described families: a sensitivity row asks how a decided claim moves when a fixed choice changes; deciding it
# as well would be a second, uncontrolled family.
DESCRIBED = frozenset(family.name for family in FAMILY_LIST if not family.decided)


def family_sizes(records: Sequence[Hypothesis] | None = None) -> dict[str, int]:
    """Each decided family's declared size: the claims its records declare (H1 = H1a and H1b for each of two
    norm types = 4). Families without records (search, final choice) count the rows they hold; described
    ones are not adjusted."""
    sizes: dict[str, int] = {}
    for record in HYPOTHESES if records is None else records:
        if record.family not in DESCRIBED:
            sizes[record.family] = sizes.get(record.family, 0) + record.claims
    return sizes


FAMILY_SIZES = family_sizes()
GRID_INPUTS = tuple((grid.name, grid.notebook, grid.tag) for grid in INPUTS)
OPTIONAL_INPUTS = frozenset(grid.name for grid in INPUTS if grid.optional)
# The longer runs of the plateau checks (tag = input name), read beside the grids; optional: a check not run
# leaves its input empty, and its claims' rows then read "not decided: budget".
LONGER_INPUTS = tuple(
    GridInput(check.longer, next(grid.notebook for grid in INPUTS if grid.name == check.input), check.longer, True)
    for check in BUDGET_CHECKS
)
GRID_FAMILY_HEADINGS = tuple(
    (family.name, family.heading())
    for family in FAMILY_LIST
    if any(record.family == family.name and record.input for record in HYPOTHESES)
)
