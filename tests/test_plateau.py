"""The plateau check behind H1's budget (lib.study.plateau): the longer twin of each control and the gain rule."""

from __future__ import annotations

import pandas as pd
import pytest

from lib.study import plateau


def _controls(epochs: int, accuracies: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for norm, values in accuracies.items():
        for seed, accuracy in zip(range(20, 25), values, strict=True):
            rows.append(
                {"status": "finished", "norm_type": norm, "seed": seed, "epochs": epochs, "val_accuracy": accuracy,
                 "dropout_p": 0.0, "lr": 2e-3, "weight_decay": 1e-4, "dropout_placement": "block"}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_a_control_that_gains_from_longer_training_has_not_stopped_improving():
    budget = _controls(12, {"none": [0.870, 0.872, 0.869, 0.871, 0.870], "batch": [0.880, 0.881, 0.879, 0.880, 0.882]})
    longer = _controls(24, {"none": [0.869, 0.873, 0.868, 0.871, 0.871], "batch": [0.890, 0.892, 0.889, 0.891, 0.893]})
    table = plateau.check(budget, longer).set_index("norm_type")
    assert table.loc["none", "stopped improving"] == "yes" and table.loc["batch", "stopped improving"] == "no"
    assert table.loc["batch", "gain (pp)"] == pytest.approx(1.06, abs=1e-9)
    assert table.loc["none", "longer epochs"] == 24 and table.loc["none", "seeds"] == 5


def test_the_longer_twin_is_the_same_configuration_with_twice_the_epochs():
    budget = _controls(12, {"none": [0.87] * 5})
    configs = plateau.longer_configs(budget)
    assert [c.train.epochs for c in configs] == [24] * 5 and [c.seed for c in configs] == list(range(20, 25))
    assert {c.train.lr for c in configs} == {2e-3} and {c.train.weight_decay for c in configs} == {1e-4}

