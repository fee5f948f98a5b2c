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

from lib.config import DEFAULT_PRECISION
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
#   grid_channels            the first block's channels of the grids' CNN (02, 02b, 03)
#   dropout_values/_epochs   H1's dose-response (02); H2b compares its two dropout-0 arms
#   lr_values, lr_epochs     H2a's learning-rate grid (02), on lr_seeds
#   plateau_checks           the plateau checks a run trains (names in lib.study.registry.BUDGET_CHECKS); a
#   plateau_max_factor       check not run leaves its claims "not decided: budget"; the ladder doubles the
#                            epochs of a still-improving control up to plateau_max_factor x (2: the check alone)
#   tune_ranges, tune_*      02 and 03: lr x weight decay tuned per arm by successive halving (tune_points
#   h1_rungs, h3_rungs       points, keep 1/tune_eta per rung, rungs in epochs, tune_extensions range
#                            extensions) on tune_seeds, disjoint from ``seeds``, on which each arm's
#                            winner is re-measured; fixed_seeds: the fixed lr/wd arms (described);
#                            tune_last_rung: the least configurations the last rung compares at the claim's
#                            budget (resolve() checks it: 3 in full/deep, 1 = exempt in smoke and quick)
#   replicate_seeds/_arms    H1's BatchNorm tuning again on fresh tuning seeds for the reference arm and these
#                            dropout values, to report how often the same decision results (lib.engine.replication)
#   epochs                   02b, 03 and the 04 sweep
#   candidate_*              06: the declared candidates compared on validation before the final model (v5:
#                            lib.study.finalists, each tuned by halving at its own schedule)
#   precision                fp32 / bf16 pinned for every config of the profile, or native (the CPU's default)
#   final_*                  06: the winner retrained on train + validation, scored once on the test set
#   budget_*                 05: H1 re-asked at full budget
#   search_*                 05: random search vs TPE at equal trials and budget
#   study_profile            05 reads 02/02b runs of this profile; budget_profile: 04 reads 05's runs of this one
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "dataset": "fashion_mnist",
        "train_subset": 600,
        "val_subset": 300,
        "grid_channels": 16,
        "epochs": 1,
        "dropout_epochs": 1,
        "seeds": [0, 1],
        "baseline_epochs": 2,
        "baseline_seeds": [0, 1],
        "dropout_values": [0.0, 0.3, 0.6],
        "lr_values": [1e-3, 1e-2],
        "lr_epochs": 1,
        "lr_seeds": [0, 1],
        # smoke and quick are below the short-budget rule (every row "budget too short to decide"): only H1's
        # check (run in 02 since v4), one doubling; H2a's and H3's are tested in tests/test_budget_checks.py
        "plateau_checks": ["H1 controls"],
        "plateau_max_factor": 2,
        "tune_ranges": ["lr=3e-4:3e-2:log", "weight_decay=1e-5:1e-2:log"],
        "tune_points": 2,
        "tune_eta": 2,
        "tune_extensions": 0,
        "h1_rungs": [1],
        "h3_rungs": [1],
        "tune_seeds": [10, 11],
        "tune_last_rung": 1,  # exempt from the last-rung rule (a smoke test of the code, no decision)
        "replicate_seeds": [12, 13],
        "replicate_arms": [0.6],
        "fixed_seeds": [0, 1],
        "shift_dropout_values": [0.5],
        "placements": ["block", "head"],
        "block_values": [0, 1, 2],
        "sweep_evals": 3,
        "candidate_seeds": [0, 1],
        "candidate_epochs": 1,
        "candidate_recipe_epochs": 1,
        "candidate_train_subset": 600,
        "candidate_long_epochs": 1,
        "candidate_erase_p": 0.5,
        "candidate_wide": False,
        "candidate_tune_subset": 600,
        "candidate_tune_points": 2,
        "candidate_tune_eta": 2,
        "candidate_tune_fractions": [],
        "candidate_tune_extensions": 0,
        "candidate_tune_seeds": [10, 11],
        "final_seeds": [300, 301],
        "final_train_subset": 1000,
        "precision": "native",
        "budget_train_subset": 600,
        "budget_epochs": 2,
        "budget_seeds": [0, 1],
        "budget_dropout_values": [0.0, 0.3, 0.6],
        "search_evals": 3,
        "search_seeds": [0, 1],
        "search_epochs": 1,
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
        "grid_channels": 16,
        "epochs": 2,
        "dropout_epochs": 3,
        "seeds": [0, 1, 2],
        "baseline_epochs": 4,
        "baseline_seeds": [0, 1, 2],
        "dropout_values": [0.0, 0.3, 0.6],
        "lr_values": _lr_grid(-4, -1, 1),
        "lr_epochs": 2,
        "lr_seeds": [0, 1, 2],
        "plateau_checks": ["H1 controls"],
        "plateau_max_factor": 2,
        "tune_ranges": ["lr=3e-4:3e-2:log", "weight_decay=1e-5:1e-2:log"],
        "tune_points": 3,
        "tune_eta": 3,
        "tune_extensions": 0,
        "h1_rungs": [1, 3],
        "h3_rungs": [1, 2],
        "tune_seeds": [10, 11],
        "tune_last_rung": 1,  # exempt from the last-rung rule: quick makes no decision (short-budget rule)
        "replicate_seeds": [12, 13],
        "replicate_arms": [0.6],
        "fixed_seeds": [],
        "shift_dropout_values": [0.5],
        "placements": ["block", "head"],
        "block_values": [0, 1, 2, 3],
        "sweep_evals": 4,
        "candidate_seeds": [0, 1, 2],
        "candidate_epochs": 2,
        "candidate_recipe_epochs": 3,
        "candidate_train_subset": 5000,
        "candidate_long_epochs": 4,
        "candidate_erase_p": 0.5,
        "candidate_wide": False,
        "candidate_tune_subset": 2000,
        "candidate_tune_points": 3,
        "candidate_tune_eta": 3,
        "candidate_tune_fractions": [0.5],
        "candidate_tune_extensions": 0,
        "candidate_tune_seeds": [10, 11],
        "final_seeds": [300, 301],
        "final_train_subset": 5000,
        "precision": "native",
        "budget_train_subset": 10000,
        "budget_epochs": 4,
        "budget_seeds": [0, 1, 2],
        "budget_dropout_values": [0.0, 0.3, 0.6],
        "search_evals": 4,
        "search_seeds": [0, 1, 2],
        "search_epochs": 2,
        "study_profile": "quick",
        "budget_profile": "quick",
        "workers": "auto",
    },
    # The report, meant to take <= 60 min of `make run` on the 2-core course machine. v4 fits: 3,001 s
    # (bf16 CPU, under load), 3,348 s, 3,142 s and 3,206 s (fp32 CPUs) from an empty store on 2026-12-06
    # (MEASURED_SECONDS); v3 took 6,039 s on 2026-12-02. v5's tuning design is estimated at about 3,440 s in all
    # (the arithmetic at tune_points below), not yet measured.
    "full": {
        "dataset": "fashion_mnist",
        # v4: 4,000 training images, so that the no-dropout control stops improving within the H1 budget
        # (12 epochs, shown in 02) and every arm can be tuned; the grids' CNN has 16 channels in its first
        # block (grid_channels: about 2x faster than the default 32 on this CPU; a fixed choice).
        "train_subset": 4000,
        "val_subset": None,
        "grid_channels": 16,
        "epochs": 8,
        "dropout_epochs": 12,
        "seeds": [20, 21, 22, 23, 24],
        "baseline_epochs": 12,
        "baseline_seeds": [0, 1, 2],
        # v5: three doses (v4 ran 7): the arms cut so that halving with a last rung of 3 fits the hour (below);
        # they are 05's budget_dropout_values, so 05 re-asks every H1 arm
        "dropout_values": [0.0, 0.3, 0.6],
        # H2a: half decades from 1e-4 to 1 at 4,000 img x 6 epochs (v4: both usable ranges ended inside this grid),
        # weight decay 5e-4 on every trial (stated); the widths are interpolated on each seed's curve (no lattice).
        # v5: 8 seeds, two-sided (declared in lib.study.registry): the sign-flip test's smallest p is 2/2^8 =
        # 0.0078, so H2a can be rejected at Holm's first step (0.025) on its own, even with one small difference of
        # the wrong sign (p = 4/256); v4's 6 seeds (2/64 = 0.031) could not. 7 is the fewest that can.
        "lr_values": _lr_grid(-4, 0, 2),
        "lr_epochs": 6,
        "lr_seeds": [0, 1, 2, 3, 4, 5, 6, 7],
        # v5's plateau checks, all three, with the ladder up to 4x (a control still improving at 2x gets 4x).
        # Estimated added time (rates above and in the 05 comment: 16-channel CNN alone 10,000 img/s without
        # normalization, 8,000 with BatchNorm, x 0.8 side by side; evaluation ~3x faster; ~1.5 s per trial):
        # 2 more H2a seeds: 36 trials x 24,000 img = 54 + 68 s training + 43 s eval + 54 s = ~220 worker-s;
        # H2a check at 2x: 16 trials x 48,000 img = 48 + 60 + 38 + 24 = ~170 worker-s; H3 check at 2x: 25 trials
        # x 64,000 img = 250 + 80 + 37 = ~370 worker-s; H1's none control at 4x (v4: it failed at 2x): 5 x 192,000
        # img = 120 + 48 + 8 = ~176 worker-s. In all ~940 worker-s, ~470 s on 2 workers (estimated, not
        # measured); if every arm also failed at 2x, ~1,100 s.
        "plateau_checks": ["H1 controls", "H2a best rates", "H3 block counts"],
        "plateau_max_factor": 4,
        # the per-arm tuning of H1 (02) and H3 (03): lr x weight decay over these ranges by successive
        # halving on the tuning seeds; each arm's winner is re-measured on `seeds`, the fixed values (lr 1e-3,
        # weight decay 5e-4) on `fixed_seeds` (described sensitivity).
        # v5 design (v4: 6 points, rungs 6/2/1, so the winner was never compared at the budget it is used at):
        # 19 Halton points, keep 1/3 per rung: 19/7/3 configurations at 1/3/12 epochs (H1) and 1/3/8 (H3), so
        # the last rung compares 3 (tune_last_rung, checked by resolve()) at the claim's budget on both tuning
        # seeds; a winner in the outer 10% of a range that can still move widens it, at most twice per arm
        # (tune_extensions), and one still there after that is reported "not decided: tuning range".
        # Cost (estimated, in 4,000-image epochs with their validation pass, by halving_cost): an H1 arm tunes
        # in 2 x (19x1 + 7x3 + 3x12) = 152 epochs, an H3 arm in 2 x (19 + 21 + 24) = 128 (27 points: 180 and
        # 156). Rate: v4's committed run trained 02's 3,128 epochs in 2,154 s and 03's 560 in 385 s: 0.69 s per
        # epoch on 2 workers (idle machine); measured here on 2026-12-08 under load (uptime 1.2-3.8, nice 19,
        # 1 thread): one epoch 2.1 s without and 2.3 s with BatchNorm (1.9-3.3 s at load 2.5-3.8), and the
        # engine's overhead per trial 0.02 s (nothing to add per trial). 02: H1 6 arms x 152 = 912, re-measure
        # 6 x (5 + 3 seeds) x 12 = 576, the replication below 2 x 152 + at most 2 x 5 x 12 = 424, H2a 648,
        # plateau 240, one arm extended once 152: 2,952 epochs = 2,033 s. 03: 5 x 128 + 5 x 8 x 8 + 128 =
        # 1,088 = 749 s. With 01, 02b and 04 as measured in v4 (660 s): about 3,440 s = 57 min, estimated, not
        # measured (27 points: about 3,730 s, over the hour; 7 doses at 19 points: about 4,810 s). Each further
        # extension adds 105 s (H1) or 88 s (H3); the worst case (every arm twice, the replica too) adds about
        # 2,360 s. If the hour is missed, cut the first rung's fidelity or fixed_seeds, never the last rung.
        "tune_ranges": ["lr=3e-4:3e-2:log", "weight_decay=1e-5:1e-2:log"],
        "tune_points": 19,
        "tune_eta": 3,
        "tune_extensions": 2,
        "h1_rungs": [1, 3, 12],
        "h3_rungs": [1, 3, 8],
        "tune_seeds": [10, 11],
        "tune_last_rung": 3,
        # the replication: H1's BatchNorm study tuned again on fresh tuning seeds for its reference (dropout 0)
        # and dropout 0.6, each new winner re-measured on `seeds` (a repeated winner reuses its runs)
        "replicate_seeds": [12, 13],
        "replicate_arms": [0.6],
        "fixed_seeds": [20, 21, 22],
        "shift_dropout_values": [0.25, 0.5],
        "placements": ["block", "head"],
        "block_values": [0, 1, 2, 3, 4],
        "sweep_evals": 16,
        # v4's 06 (committed; deep profile, <= 50 min meant, 2 workers): 4 candidates x 3 seeds on all 55,000
        # training images, each at its own schedule (the final retrains the winner at the same one on 60,000).
        # Measured (2026-12-06, 4,000 images x 2 epochs, crop 2 + flip, BatchNorm, 1 thread, 2 side by side):
        # default 32 channels ~3,300 img/s, 2 convs/block at 16 channels ~3,150, at 32 channels ~1,200 (too
        # slow for a long schedule: 3 seeds x 55k x 20 ep take 23 min on 2 workers, its final 33 more); v3's 04
        # ran its candidates at ~3,300 and its finals at ~2,750 img/s per worker (+ ~90 s per final trial); one
        # epoch on all 55,000 (2 side by side): the recipe 3,000 img/s, the default (no augmentation) 3,150. Sized
        # at 3,000 img/s for candidates: sweep best, default, best controlled arm at 10 epochs (v3's final schedule):
        # 9 x 550,000 img = 4.95M; the v4 recipe at 20 epochs: 3 x 1.1M = 3.3M; 8.25M / 6,000 = 1,375 s
        # (~1,470 s as 12 trials pack on 2 workers). Final (the recipe, the dearest winner): 4 x 60,000 x 20 =
        # 4.8M img / 5,500 = 873 s + 2 rounds x 90 s = 1,053 s. The notebook itself (kernel, reading 02-04's
        # runs, verdicts, logging): ~120 s. In all ~2,640 s = 44 min.
        "candidate_seeds": [0, 1, 2],
        "candidate_epochs": 10,
        "candidate_recipe_epochs": 20,
        "candidate_train_subset": None,
        # v5's 06 (lib.study.finalists, declared before any run): the v4 recipe at candidate_recipe_epochs and the
        # recipe + random erasing (p 0.5) at candidate_long_epochs, each with lr x weight decay tuned by halving at
        # its own schedule (9 Halton points, eta 3, rungs at 0.2 of the schedule and the schedule: 9/3 points, so
        # 3 at the full schedule, on 2 tuning seeds and 5,000 training images, re-measured on candidate_seeds);
        # then both on all 55,000 images x 3 seeds, the winner's final on 60,000 x 4 fresh seeds. The wider first
        # block (candidate_wide) is declared but off (v4 measured 32 channels 2.6x slower than 16). Estimated
        # from v4's measured fp32 rate (06 trained 13.3M images, validation passes counted as 1/3 image each, in
        # 4,810 s on 2 workers: ~2,800 img/s), finalists.cost(knobs, 2_800, 300):
        # tuning 2 x 5,000 (+1,667 validation) x (9 x 4 + 3 x 20 + 9 x 6 + 3 x 30) = 3.20M; its re-measure 3 x
        # 6,667 x 50 = 1.00M; the comparison 3 x 56,667 x (20 + 30) = 8.50M; the final 4 x 60,000 x 30 = 7.20M:
        # 19.90M images / 2,800 img/s + 300 s = 7,407 s (123 min), without a range extension (one adds its
        # candidate's tuning again: 1.28M or 1.92M images, 8 or 11 min). With 05 at its measured 4,325 s the
        # deep profile is ~3 h 15 min on an fp32 CPU: NOT within 2 h. The final at 30 epochs alone is 7.2M
        # images (~43 min). Cuts, estimated the same way: the comparison on 20,000 images 92 min; that and 3
        # final seeds 81 min. The wide candidate would add ~190 min (its final included, if it won).
        "candidate_long_epochs": 30,
        "candidate_erase_p": 0.5,
        "candidate_wide": False,
        "candidate_tune_subset": 5000,
        "candidate_tune_points": 9,
        "candidate_tune_eta": 3,
        "candidate_tune_fractions": [0.2],
        "candidate_tune_extensions": 1,
        "candidate_tune_seeds": [10, 11],
        # v5's one new test reading, the seventh of this test set: seeds never used before (v1/v2 read it with
        # 100-103, v3 200-203, v4 300-303; lib.study.ledger refuses a used seed)
        "final_seeds": [400, 401, 402, 403],
        "final_train_subset": None,
        # pinned, so the decisions are the same numbers on either CPU kind. bf16 pinned on a CPU without native
        # bf16 is emulated: measured on this 2-core AMD EPYC (AVX2), the recipe with erasing, 1 thread, 1 epoch
        # of 4,000 images: fp32 872 img/s, bf16 74 (12x slower; load 2.2-4.2); of 3,000 at erase p 0.25: 510 vs
        # 118 (load 0.7-2.3). The cross-check in bf16 runs on a CPU with it: resolve("deep", precision="bf16").
        "precision": "fp32",
        # 05 (deep profile: 05 + 06 <= 120 min; 05 <= 65 min) on the 2-core machine. Measured: the default 32-channel
        # CNN trains ~3,500 img/s per 1-thread process with 2 side by side (4,300 alone), evaluation ~3x faster,
        # ~1.5 s per trial; 02's arms are the grids' 16-channel CNN, measured alone at 10,000 (none), 8,000
        # (batch/head) and 7,000 (none/block dropout) img/s, x 0.8 side by side.
        # A: 02's tuned H1 arms (none/block, batch/head) x dropout {0, 0.3, 0.6} = 6 arms on 02's 5 seeds (the
        #    same arms at 02's budget are then 02's own runs: 0 s) at 55,000 img x 12 ep (02's H1 epochs, so
        #    only the images differ) = 660,000 img: 83 s (none, p=0), 3 x 103 s (batch), 2 x 118 s (block
        #    dropout) + 6 x 5 s eval and overhead = 658 worker-s per seed, 329 s on 2 workers; x 5 = 1,645 s.
        # B: 5 sweep seeds x (16 random + 11 new TPE trials; TPE's 5 start-up points are random's) = 135 trials,
        #    one at a time, on the grids' 4,000 img x 8 ep (>= the 24,000 image-epochs a decision needs):
        #    32,000 img / 4,300 = 7.4 s (32 channels; 16 is faster) + 3.1 s eval + 1.5 s = 12 s: 1,620 s;
        #    the default reference (32 channels), 5 seeds x 14.4 s on 2 workers: 43 s.
        # The notebook itself (kernel, reading runs, histories and intervals): ~180 s. In all ~3,490 s = 58 min.
        "budget_train_subset": None,
        "budget_epochs": 12,
        "budget_seeds": [20, 21, 22, 23, 24],
        "budget_dropout_values": [0.0, 0.3, 0.6],
        "search_evals": 16,
        "search_seeds": [0, 1, 2, 3, 4],
        "search_epochs": 8,
        "study_profile": "full",
        "budget_profile": "deep",
        "workers": "auto",
    },
}
# Measured wall seconds per notebook and profile on the 2-core course machine (README and docs/teaching.md
# give date and load). The study runner prints its time-left estimate from them; a notebook without a
# measurement gets none. full: the committed run of 2026-12-06 (3,206 s from an empty store, fp32 on a CPU
# without native bf16, idle but for editing); deep: 05 and 06 on 2026-12-06 (fp32 CPUs, 05 after that
# full run in its store, 06 after an earlier one);
# quick: `make run` on a fresh clone on 2026-12-08 (234 s in all, idle; the store held only 00's runs, from
# `papermill notebooks/00_by_hand.ipynb ... -p profile quick` just before: 102 s).
MEASURED_SECONDS: dict[str, dict[str, float]] = {
    "quick": {"00_by_hand": 102, "01_baseline": 35, "02_norm_dropout": 97, "02b_dropout_bn": 32,
              "03_conv_blocks": 34, "04_analysis": 36},
    "full": {"01_baseline": 109, "02_norm_dropout": 2154, "02b_dropout_bn": 288, "03_conv_blocks": 385,
             "04_analysis": 263},
    "deep": {"05_budget_and_search": 4325, "06_final_model": 4810},
}

# `make run PROFILE=deep` (05 and 06, meant for <= 2 h): the full profile's knobs, its runs tagged "deep";
# it reads the full profile's runs of 02-04, so run `make run PROFILE=full` first. 05 was estimated at
# about 58 min and 06 at 44 (the arithmetic at their knobs, on a CPU with native bf16); on CPUs without it
# (fp32) they took 4,325 s and 4,810 s (MEASURED_SECONDS): 2 h is not met there; with native bf16 it is
# estimated, not measured.
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
    """The profile's knobs with every non-``None`` override applied, the tuning design checked
    (:func:`check_tuning`)."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}: unknown. Allowed: {', '.join(PROFILES)}")
    unknown = set(overrides) - set(PROFILES[profile])
    if unknown:
        raise ValueError(f"unknown profile knob(s) {sorted(unknown)}. Allowed: {sorted(PROFILES[profile])}")
    knobs = PROFILES[profile] | {k: v for k, v in overrides.items() if v is not None} | {"profile": profile}
    check_tuning(knobs)
    return knobs


def check_tuning(knobs: dict[str, Any]) -> None:
    """The halving design of 02 (``h1_rungs``) and 03 (``h3_rungs``) compares at least ``tune_last_rung``
    configurations at its last rung, on at least 2 tuning seeds: a one-line
    :class:`lib.engine.backend.StudyError` naming the knob and the fix otherwise, before anything trains."""
    from lib.engine.backend import StudyError
    from lib.engine.halving import check_last_rung

    least = int(knobs.get("tune_last_rung", 1))
    if least > 1 and len(set(knobs["tune_seeds"])) < 2:
        raise StudyError(f"tune_seeds {knobs['tune_seeds']}: the last-rung rule needs 2 or more, e.g. [10, 11]")
    for rungs in ("h1_rungs", "h3_rungs"):
        names = ("tune_points", "tune_eta", rungs)
        check_last_rung(knobs["tune_points"], knobs[rungs], knobs["tune_eta"], least, names)


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


PRECISIONS = ("fp32", "bf16", "native")


def precision(knobs: dict[str, Any]) -> str:
    """The training precision a profile pins (knob ``precision``): ``fp32`` or ``bf16`` as written, ``native`` the
    CPU's own default (:data:`lib.config.DEFAULT_PRECISION`: bf16 where the CPU computes it natively, else fp32).

    full and deep pin fp32, so their decisions are the same numbers on either CPU kind (bf16 on a CPU without it
    is emulated: measured 4x to 12x slower there, see the comment at :data:`PROFILES`); smoke and quick decide
    nothing and take the faster. Raises ``ValueError`` naming the knob for any other value."""
    value = knobs.get("precision", "native")
    if value not in PRECISIONS:
        raise ValueError(f"precision={value!r}: unknown. Allowed: {', '.join(PRECISIONS)} (knob 'precision')")
    return DEFAULT_PRECISION if value == "native" else value


def pinned(knobs: dict[str, Any]) -> dict[str, str]:
    """``{"precision": ...}``: merged into every configuration a notebook of this profile trains."""
    return {"precision": precision(knobs)}


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
