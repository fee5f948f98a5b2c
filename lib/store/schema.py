"""The store's schema: every tag name the engine writes and the report reads, the status and kind words, the
typed columns of a frame of runs.

A run's tag ``<name>`` is the column ``tag.<name>`` of a frame of runs (:func:`column`); its params are
columns of their own (``seed``, ``lr``, ``data_train_subset``), its metrics too (``val_accuracy``). The
engine writes these names (``lib.engine.records``, ``tuning``, ``halving``, ``search``), the reader reads them
back (``lib.store.reader``), and the report and the study use the constants below instead of spelling a tag.
Which config fields are integers or booleans is read from :mod:`lib.config` itself, so a new field is typed
without a change here.

What this is not: the reader (``lib.store.reader``) or MLflow (``lib.tracking``, the only module that
imports it). Nothing here reads the store.
"""

from __future__ import annotations

import types
import typing

from lib.config import ModelConfig, TrainConfig, TrialConfig
from lib.tracking import ROW_FAILED, ROW_FINISHED, ROW_KILLED, ROW_RUNNING

# --- tags: one name each -----------------------------------------------------------------------------
# written by lib.engine.records on every trial run
TAG_TRIAL_KEY = "trial_key"  # the cache key: config + data + code version
TAG_SEED = "seed"
TAG_EXPERIMENT = "experiment"
TAG_CODE_VERSION = "code_version"
TAG_SPLIT = "split"
TAG_DATASET = "dataset"
TAG_HYPOTHESIS = "hypothesis"  # the hypothesis a run was trained for
TAG_HYPOTHESES = "hypotheses"  # every hypothesis that uses it (a cached run reused by another one)
TAG_FAILURE_KIND = "failure_kind"
TAG_FAILURE_REASON = "failure_reason"
TAG_PROFILE = "profile"  # the study profile a notebook ran in
# written by lib.engine.search: the sweep a trial belongs to (absent: a grid trial), and its parent run
TAG_SWEEP = "sweep"
TAG_SWEEP_PARENT = "sweep_parent"  # on the sweep's parent run only: the sweep's name
TAG_SWEEP_ID = "sweep_id"
# written by lib.engine.tuning and lib.engine.halving on every run of a tuned study
TAG_PHASE = "phase"  # tune / remeasure
TAG_ROLE = {"scientific": "role_scientific", "nuisance": "role_nuisance", "fixed": "role_fixed"}
TAG_TUNING_ID = "tuning_id"
TAG_CHECKPOINT_RULE = "checkpoint_rule"
TAG_FIXED_NUISANCE = "fixed_nuisance"
TAG_HALVING_RUNGS = "halving_rungs"
TAG_HALVING_ETA = "halving_eta"
TAG_TUNE_SEEDS = "tune_seeds"
TAG_TUNING_RANGES = "tuning_ranges"
TAG_RANGE_EXTENSIONS = "range_extensions"
TAG_TUNING_DECIDED = "tuning_decided"
TAG_TUNING_DESIGN = "tuning_design"  # the halving design a winner was chosen by (one line)
TAG_LAST_RUNG = "tuning_last_rung"  # configurations its last rung compared at the claim's budget
# written by the CLI (lib.cli.commands) and by lib.tracking on every run
TAG_QUESTION = "question"
TAG_STUDY_COMMAND = "study_command"
TAG_GIT_COMMIT = "git_commit"
TAG_DECLARATION = "declaration"  # a declaration run: hypothesis or final
TAG_KIND = "kind"  # what a run is (KINDS); an analysis run carries it, the reader infers it for the others

PHASE_TUNE, PHASE_REMEASURE = "tune", "remeasure"

# --- the one status vocabulary of every frame of runs (MLflow's own words stay in lib.tracking) ---------------
FINISHED, FAILED, KILLED, RUNNING = ROW_FINISHED, ROW_FAILED, ROW_KILLED, ROW_RUNNING
STATUSES = (FINISHED, FAILED, KILLED, RUNNING)

# --- kinds of runs: the reader's ``kind`` column -------------------------------------------------------------
KIND_TRIAL = "trial"  # one config trained and validated (a grid's or a sweep's)
KIND_FINAL = "final"  # a trial trained on training + validation and scored on the test set
KIND_SWEEP = "sweep"  # a sweep's parent run (its settings and best trial, no training)
KIND_ANALYSIS = "analysis"  # a notebook's figures, tables and summary metrics
KIND_DECLARATION = "declaration"  # a hypothesis and its decision rule, declared before the runs (lib.assignment)
KIND_OTHER = "other"
KINDS = (KIND_TRIAL, KIND_FINAL, KIND_SWEEP, KIND_ANALYSIS, KIND_DECLARATION, KIND_OTHER)


def column(tag: str) -> str:
    """The frame's column of a tag: ``tag.<name>``."""
    return f"tag.{tag}"


KEY, PHASE, SWEEP, KIND = column(TAG_TRIAL_KEY), column(TAG_PHASE), column(TAG_SWEEP), "kind"  # frame columns

# --- typed columns ----------------------------------------------------------------------------------------------
DATA_COLUMNS = ("data_train_subset", "data_val_subset", "data_val_size", "data_split_seed")
DATA_FINAL = "data_final"


def _is(annotation: object, kind: type) -> bool:
    """Whether a field's annotation is ``kind`` or ``kind | None``."""
    if annotation is kind:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return set(typing.get_args(annotation)) == {kind, type(None)}
    return False


def _fields(kind: type) -> frozenset[str]:
    models = (ModelConfig, TrainConfig, TrialConfig)
    return frozenset(name for m in models for name, info in m.model_fields.items() if _is(info.annotation, kind))


INTEGER_FIELDS = _fields(int)  # seed, epochs, num_conv_blocks, batch_size, ... (read from lib.config)
BOOLEAN_FIELDS = _fields(bool)  # recalibrate_bn, augment_flip, channels_last, ...
INTEGER_COLUMNS = INTEGER_FIELDS | {"data_split_seed", "data_train_subset", "data_val_subset", "data_val_size"}
BOOLEAN_COLUMNS = BOOLEAN_FIELDS | {DATA_FINAL}


def hyperparameters() -> list[str]:
    """Every hyperparameter of a trial (the params a trial run logs), seed excluded."""
    return [name for name in TrialConfig().flat() if name != "seed"]
