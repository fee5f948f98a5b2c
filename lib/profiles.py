"""Budgets for the notebooks: ``smoke`` (tests), ``quick`` (a try-out) and ``full`` (the report).

A notebook reads its profile from its papermill ``parameters`` cell, which defaults to the
``HYPERTUNE_PROFILE`` environment variable (nbval cannot inject parameters), and any knob set in
that cell overrides the profile's value. Grids train on a stratified training subset for a few
epochs (a comparison needs many trials, not the best possible accuracy); the final model trains on
all 60k training + validation images.
"""

from __future__ import annotations

import os
from typing import Any

from lib.trial import DataSpec

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
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
        "shift_dropout_values": [0.5],
        "placements": ["block", "head"],
        "block_values": [0, 1, 2],
        "sweep_evals": 3,
        "final_seeds": [100, 101],
        "final_epochs": 1,
        "final_train_subset": 1000,
        "workers": 1,
    },
    "quick": {
        "train_subset": 3000,
        "val_subset": 2000,
        "epochs": 2,
        "dropout_epochs": 3,
        "seeds": [0, 1, 2],
        "baseline_epochs": 4,
        "baseline_seeds": [0, 1, 2],
        "dropout_values": [0.0, 0.25, 0.6],
        "lr_values": [1e-4, 1e-3, 1e-2],
        "lr_epochs": 2,
        "shift_dropout_values": [0.5],
        "placements": ["block", "head"],
        "block_values": [0, 1, 2, 3],
        "sweep_evals": 4,
        "final_seeds": [100, 101],
        "final_epochs": 2,
        "final_train_subset": 10000,
        "workers": "auto",
    },
    "full": {
        "train_subset": 8000,
        "val_subset": None,
        "epochs": 4,
        "dropout_epochs": 12,
        "seeds": [0, 1, 2],
        "baseline_epochs": 10,
        "baseline_seeds": [0, 1, 2],
        "dropout_values": [0.0, 0.25, 0.4, 0.6],
        "lr_values": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
        "lr_epochs": 3,
        "shift_dropout_values": [0.25, 0.5],
        "placements": ["block", "head", "pool"],
        "block_values": [0, 1, 2, 3, 4],
        "sweep_evals": 16,
        "final_seeds": [100, 101, 102, 103],
        "final_epochs": 15,
        "final_train_subset": None,
        "workers": "auto",
    },
}


def default_profile() -> str:
    """``HYPERTUNE_PROFILE`` or ``quick``."""
    return os.environ.get("HYPERTUNE_PROFILE", "quick")


def resolve(profile: str, **overrides: Any) -> dict[str, Any]:
    """The profile's knobs with every non-``None`` override applied."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}: unknown. Allowed: {', '.join(PROFILES)}")
    unknown = set(overrides) - set(PROFILES[profile])
    if unknown:
        raise ValueError(f"unknown profile knob(s) {sorted(unknown)}. Allowed: {sorted(PROFILES[profile])}")
    return PROFILES[profile] | {k: v for k, v in overrides.items() if v is not None} | {"profile": profile}


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
