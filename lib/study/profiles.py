"""Budgets for the notebooks: ``smoke`` (tests), ``quick`` (a try-out), ``full`` (the report) and ``deep`` (05).

A notebook reads its profile from its papermill ``parameters`` cell, which defaults to the
``HYPERTUNE_PROFILE`` environment variable (nbval cannot inject parameters), and any knob set in
that cell overrides the profile's value. Grids train on a stratified training subset for a few
epochs (a comparison needs many trials, not the best possible accuracy); the final model trains on
all 60k training + validation images.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lib.data import DataSpec
from lib.datasets import DEFAULT, slug
from lib.paths import current_profile


def _lr_grid(low_exp: float, high_exp: float, per_decade: int) -> list[float]:
    """Log-spaced learning rates from 10**low_exp to 10**high_exp, ``per_decade`` points a decade (3 digits)."""
    steps = round((high_exp - low_exp) * per_decade)
    return [float(f"{10 ** (low_exp + i / per_decade):.3g}") for i in range(steps + 1)]


# Knobs shared by every profile's notebooks 01-05 (each notebook's parameters cell may override them):
#   dataset                  the data set every grid trains on (``grid_data``/``final_data`` read it)
#   train_subset, val_subset training/validation images of the grids (None = all 55k / 5k)
#   seeds                    paired seeds of every controlled grid (every arm gets all of them)
#   dropout_values/_epochs   H1 grid (02); H2b's confirmation grid uses the same budget
#   lr_values, lr_epochs     H2a's learning-rate grid (02), on lr_seeds
#   tune_lr_values, tune_seeds  02 and 03: the lr values tuned per arm on the tuning seeds (disjoint from
#                            ``seeds``, on which each arm's winner is re-measured)
#   epochs                   02b, 03 and the 04 sweep
#   candidate_*              04: the declared candidates compared on validation before the final model
#   final_*                  04: the winner retrained on train + validation, scored once on the test set
#   budget_*                 05: H1 re-asked at full budget
#   search_*                 05: random search vs TPE at equal trials and budget
#   study_profile            05 reads 02/02b runs of this profile; budget_profile: 04 reads 05's runs of this one
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "dataset": "fashion_mnist",
        "train_subset": 600,
        "val_subset": 300,
        "epochs": 1,
        "dropout_epochs": 1,
        "seeds": [0, 1],
        "baseline_epochs": 2,
        "baseline_seeds": [0, 1],
        "dropout_values": [0.0, 0.3, 0.6],
        "lr_values": [1e-3, 1e-2],
        "lr_epochs": 1,
        "lr_seeds": [0, 1],
        "tune_lr_values": [1e-3, 3e-3],
        "tune_seeds": [10],
        "shift_dropout_values": [0.5],
        "placements": ["block", "head"],
        "block_values": [0, 1, 2],
        "sweep_evals": 3,
        "candidate_seeds": [0, 1],
        "candidate_epochs": 1,
        "candidate_train_subset": 600,
        "final_seeds": [100, 101],
        "final_epochs": 1,
        "final_train_subset": 1000,
        "budget_train_subset": 600,
        "budget_epochs": 2,
        "budget_seeds": [0, 1],
        "budget_dropout_values": [0.0, 0.3, 0.6],
        "search_evals": 3,
        "search_seeds": [0, 1],
        "study_profile": "smoke",
        "budget_profile": "smoke",
        "workers": 1,
    },
    # A try-out of every notebook and figure in about 10 minutes on 2 cores (measured: MEASURED_SECONDS). Its
    # budgets are below the short-budget rule (lib.study.verdicts.MIN_IMAGE_EPOCHS): no decision is made.
    "quick": {
        "dataset": "fashion_mnist",
        "train_subset": 1500,
        "val_subset": 1000,
        "epochs": 2,
        "dropout_epochs": 3,
        "seeds": [0, 1, 2],
        "baseline_epochs": 4,
        "baseline_seeds": [0, 1, 2],
        "dropout_values": [0.0, 0.25, 0.6],
        "lr_values": _lr_grid(-4, -1, 1),
        "lr_epochs": 2,
        "lr_seeds": [0, 1, 2],
        "tune_lr_values": [1e-3, 3e-3],
        "tune_seeds": [10],
        "shift_dropout_values": [0.5],
        "placements": ["block", "head"],
        "block_values": [0, 1, 2, 3],
        "sweep_evals": 4,
        "candidate_seeds": [0, 1, 2],
        "candidate_epochs": 2,
        "candidate_train_subset": 5000,
        "final_seeds": [100, 101],
        "final_epochs": 2,
        "final_train_subset": 5000,
        "budget_train_subset": 10000,
        "budget_epochs": 4,
        "budget_seeds": [0, 1, 2],
        "budget_dropout_values": [0.0, 0.25, 0.6],
        "search_evals": 4,
        "search_seeds": [0, 1],
        "study_profile": "quick",
        "budget_profile": "quick",
        "workers": "auto",
    },
    # The report, meant to take <= 60 min of `make run` on the 2-core course machine. v3 does not fit:
    # its run of 2026-12-02 (bf16, fresh store) took 6,039 s: 01 141 s, 02 3,761 s (H1 fixed and tuned
    # per arm, H2a at 6 epochs; most of it while other jobs took about half the CPU), 02b 369 s,
    # 03 382 s, 04 1,386 s (sweep, 4 candidates x 3 seeds at 55k x 6, the final 4 x 60k x 10).
    "full": {
        "dataset": "fashion_mnist",
        "train_subset": 8000,
        "val_subset": None,
        "epochs": 4,
        "dropout_epochs": 10,
        "seeds": [0, 1, 2, 3, 4],
        "baseline_epochs": 10,
        "baseline_seeds": [0, 1, 2],
        "dropout_values": [0.0, 0.25, 0.6],
        # v3: half decades from 1e-4 to 1 at 8,000 img x 6 epochs (v2: quarter decades at 2 epochs, where
        # the low end mostly measured how fast a run converges), 3 seeds; the usable range's resolution
        # floor is h/sqrt(3) = 0.29 decade. v2's probe: no normalization fails at 0.1, BatchNorm at ~1.
        "lr_values": _lr_grid(-4, 0, 2),
        "lr_epochs": 6,
        "lr_seeds": [0, 1, 2],
        # the per-arm tuning of H1 (02) and H3 (03): lr tuned on seed 10, each winner re-measured on `seeds`;
        # the fixed value 1e-3 is one of them, so the fixed-lr rows are the grid's own (cached) runs
        "tune_lr_values": [1e-3, 2e-3, 4e-3],
        "tune_seeds": [10],
        "shift_dropout_values": [0.25, 0.5],
        "placements": ["block", "head"],
        "block_values": [0, 1, 2, 3, 4],
        "sweep_evals": 16,
        "candidate_seeds": [0, 1, 2],
        "candidate_epochs": 6,
        "candidate_train_subset": None,
        # v3's one new test reading: seeds never used before (v1/v2 read the test set with 100-103)
        "final_seeds": [200, 201, 202, 203],
        "final_epochs": 10,
        "final_train_subset": None,
        "budget_train_subset": None,
        "budget_epochs": 10,
        "budget_seeds": [0, 1, 2, 3, 4],
        "budget_dropout_values": [0.0, 0.25, 0.6],
        "search_evals": 16,
        "search_seeds": [0, 1, 2, 3],
        "study_profile": "full",
        "budget_profile": "deep",
        "workers": "auto",
    },
}
# Measured wall seconds per notebook and profile on the 2-core course machine (README and docs/teaching.md
# give date and load). The study runner prints its time-left estimate from them; a notebook without a
# measurement gets none. full: v3's run of 2026-12-02 (under load for 01-02); deep: 05 on 2026-12-02;
# quick: `make run` on 2026-12-06 (217 s in all, load 2.7 falling to 0.9), 00_by_hand's own run under load.
MEASURED_SECONDS: dict[str, dict[str, float]] = {
    "quick": {"00_by_hand": 136, "01_baseline": 28, "02_norm_dropout": 82, "02b_dropout_bn": 26,
              "03_conv_blocks": 27, "04_analysis": 54},
    "full": {"01_baseline": 141, "02_norm_dropout": 3761, "02b_dropout_bn": 369, "03_conv_blocks": 382,
             "04_analysis": 1386},
    "deep": {"05_budget_and_search": 5392},
}

# `make run PROFILE=deep` (05 only, <= 2 h): the full profile's knobs, its runs tagged "deep"; it
# reads 02/02b's full-profile runs, so run `make run` first. Estimate: H1 at full budget, 8 arms x 5
# seeds x 550k images, 2 workers: 852 s per seed (177 s per no-dropout or head-dropout trial,
# 239-259 s per block-dropout trial) = 4,260 s + 3% evaluation; default reference 5 x 32k = 45 s;
# 4 sweep seeds x (16 random + 11 new TPE trials; the 5 start-up points are shared) x 32k images at
# 3,400 img/s one trial at a time + 1.5 s per trial = 1,180 s. In all about 95 min.
PROFILES["deep"] = PROFILES["full"] | {"study_profile": "full", "budget_profile": "deep"}


# The study's sweep space, one place for 04's TPE sweep and 05's random search vs TPE: the engine's
# ``DEFAULT_SPACE`` narrowed so that retraining the chosen configuration on all 60k images with several
# seeds stays affordable (kernel 3 only, 16 or 32 channels, lr from 3e-4, batch 128 or 256; 04's section 1
# says why). The dict's order is part of a sweep's identity (its resume key): add keys at the end only.
SWEEP_SPACE: dict[str, Any] = {
    "norm_type": ["none", "batch"],
    "dropout_p": {"uniform": [0.0, 0.6]},
    "dropout_placement": ["block", "head"],
    "num_conv_blocks": [1, 2, 3],
    "conv_out_channels": [16, 32],
    "conv_kernel_size": [3],
    "pool_type": ["max", "avg"],
    "pool_kernel_size": [2],
    "lr": {"loguniform": [3e-4, 1e-2]},
    "weight_decay": {"loguniform": [1e-5, 1e-2]},
    "optimizer": ["adam", "adamw"],
    "batch_size": [128, 256],
}


def default_profile() -> str:
    """``HYPERTUNE_PROFILE`` or ``quick`` (:func:`lib.paths.current_profile`)."""
    return current_profile()


def resolve(profile: str, **overrides: Any) -> dict[str, Any]:
    """The profile's knobs with every non-``None`` override applied."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}: unknown. Allowed: {', '.join(PROFILES)}")
    unknown = set(overrides) - set(PROFILES[profile])
    if unknown:
        raise ValueError(f"unknown profile knob(s) {sorted(unknown)}. Allowed: {sorted(PROFILES[profile])}")
    return PROFILES[profile] | {k: v for k, v in overrides.items() if v is not None} | {"profile": profile}


def experiment_name(base: str, dataset: str = DEFAULT) -> str:
    """The MLflow experiment that holds this user's runs of a notebook (``base``) on ``dataset``.

    ``base`` itself for Fashion-MNIST, ``<base>-<data set slug>`` for any other data set, so two data
    sets never share an experiment. On a shared server each user needs experiments of their own (the
    first user to create an experiment owns it; anyone else gets 403), so a prefix ``<user>-`` comes
    first: ``HYPERTUNE_EXPERIMENT_PREFIX`` if set (empty: no prefix), else the login of a server with
    logins (``MLFLOW_TRACKING_USERNAME``). Every notebook names the experiments it writes *and* reads
    through this function, so 04 and 05 find the same user's 01-03. A name that already carries the
    prefix is left as it is. Not a check that the experiment exists or that the user may write to it.
    """
    name = base if dataset == DEFAULT else f"{base}-{slug(dataset)}"
    prefix = os.environ.get("HYPERTUNE_EXPERIMENT_PREFIX", os.environ.get("MLFLOW_TRACKING_USERNAME", "")).strip()
    if not prefix or name.startswith(f"{prefix}-"):
        return name
    return f"{prefix}-{name}"


def experiment_namer(dataset: str = DEFAULT) -> Callable[[str], str]:
    """``named(base)``: :func:`experiment_name` of ``base`` on ``dataset`` (04 and 05 read several notebooks' runs)."""

    def named(base: str) -> str:
        return experiment_name(base, dataset)

    return named


def grid_data(knobs: dict[str, Any]) -> DataSpec:
    """The data every grid of a profile trains and validates on (knob ``dataset``, default Fashion-MNIST)."""
    return DataSpec(
        train_subset=knobs["train_subset"],
        val_subset=knobs["val_subset"],
        dataset=knobs.get("dataset", "fashion_mnist"),
    )


def final_data(knobs: dict[str, Any]) -> DataSpec:
    """Training + validation (optionally a subset for smoke runs) scored on the test set."""
    return DataSpec(
        train_subset=knobs["final_train_subset"],
        val_subset=None,
        final=True,
        dataset=knobs.get("dataset", "fashion_mnist"),
    )
