"""lib.config: strict flat configs and canonical fingerprints (the trial cache key)."""

from __future__ import annotations

import pytest

from lib.config import TRIAL_FIELDS, ConfigError, ModelConfig, TrainConfig, TrialConfig


def test_defaults_round_trip_through_flat():
    config = TrialConfig()
    flat = config.flat()
    assert set(flat) == TRIAL_FIELDS
    assert TrialConfig.from_flat(flat) == config
    assert TrialConfig.from_flat(flat).fingerprint() == config.fingerprint()


def test_from_flat_sets_fields_in_the_right_part():
    config = TrialConfig.from_flat({"dropout_p": 0.3, "lr": 0.01, "seed": 5, "hidden_sizes": [64, 32]})
    assert config.model.dropout_p == 0.3
    assert config.model.hidden_sizes == (64, 32)
    assert config.train.lr == 0.01
    assert config.seed == 5
    assert config.model.num_conv_blocks == ModelConfig().num_conv_blocks  # untouched default


def test_from_flat_keeps_the_base_values():
    base = TrialConfig.from_flat({"epochs": 7, "norm_type": "batch", "seed": 2})
    config = TrialConfig.from_flat({"lr": 0.05}, base=base)
    assert (config.train.epochs, config.model.norm_type, config.seed, config.train.lr) == (
        7,
        "batch",
        2,
        0.05,
    )


@pytest.mark.parametrize("key", ["learningrate", "dropout", "Seed", "model"])
def test_from_flat_rejects_unknown_keys(key):
    with pytest.raises(ConfigError) as excinfo:
        TrialConfig.from_flat({key: 1})
    assert isinstance(excinfo.value, ValueError)
    assert f"'{key}'" in str(excinfo.value)


def test_unknown_key_error_suggests_a_near_name():
    with pytest.raises(ConfigError, match="did you mean 'dropout_p'"):
        TrialConfig.from_flat({"dropout_pp": 0.1})


@pytest.mark.parametrize(
    ("flat", "field"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": 100.0}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"scheduler": "step"}, "scheduler"),
        ({"dropout_p": 1.0}, "dropout_p"),
        ({"conv_kernel_size": 2}, "conv_kernel_size"),
    ],
)
def test_from_flat_rejects_bad_values_naming_the_field(flat, field):
    with pytest.raises(ConfigError, match=field):
        TrialConfig.from_flat(flat)


def test_zero_dropout_configs_share_a_fingerprint_across_placements():
    fingerprints = {
        TrialConfig.from_flat({"dropout_p": 0.0, "dropout_placement": placement}).fingerprint()
        for placement in ("block", "head", "pool")
    }
    assert len(fingerprints) == 1
    canonical = TrialConfig.from_flat({"dropout_p": 0.0, "dropout_placement": "pool"}).canonical()
    assert canonical.model.dropout_placement == "block"


def test_placement_matters_once_there_is_dropout():
    fingerprints = {
        TrialConfig.from_flat({"dropout_p": 0.3, "dropout_placement": placement}).fingerprint()
        for placement in ("block", "head", "pool")
    }
    assert len(fingerprints) == 3


def test_different_lr_gives_different_fingerprint():
    assert TrialConfig.from_flat({"lr": 1e-3}).fingerprint() != TrialConfig.from_flat({"lr": 2e-3}).fingerprint()
    assert TrialConfig.from_flat({"lr": 1e-3}).fingerprint() == TrialConfig.from_flat({"lr": 1e-3}).fingerprint()


def test_seed_is_part_of_the_fingerprint():
    assert TrialConfig.from_flat({"seed": 0}).fingerprint() != TrialConfig.from_flat({"seed": 1}).fingerprint()


def test_irrelevant_fields_are_canonicalised():
    # momentum only matters for SGD
    adam = [TrialConfig.from_flat({"optimizer": "adam", "momentum": m}).fingerprint() for m in (0.0, 0.9)]
    sgd = [TrialConfig.from_flat({"optimizer": "sgd", "momentum": m}).fingerprint() for m in (0.0, 0.9)]
    assert adam[0] == adam[1]
    assert sgd[0] != sgd[1]
    # recalibration only matters with BatchNorm
    no_bn = [TrialConfig.from_flat({"norm_type": "none", "recalibrate_bn": r}).fingerprint() for r in (False, True)]
    bn = [TrialConfig.from_flat({"norm_type": "batch", "recalibrate_bn": r}).fingerprint() for r in (False, True)]
    assert no_bn[0] == no_bn[1]
    assert bn[0] != bn[1]
    # the number of recalibration batches only matters when recalibrating
    off = [TrialConfig.from_flat({"norm_type": "batch", "recalibrate_batches": b}).fingerprint() for b in (10, 40)]
    on = [
        TrialConfig.from_flat({"norm_type": "batch", "recalibrate_bn": True, "recalibrate_batches": b}).fingerprint()
        for b in (10, 40)
    ]
    assert off[0] == off[1]
    assert on[0] != on[1]


def test_canonical_does_not_change_the_original():
    config = TrialConfig.from_flat(
        {"dropout_p": 0.0, "dropout_placement": "head", "optimizer": "adam", "momentum": 0.5}
    )
    config.canonical()
    assert config.model.dropout_placement == "head"
    assert config.train.momentum == 0.5


def test_configs_are_frozen():
    config = TrialConfig()
    with pytest.raises(ValueError):
        config.model.dropout_p = 0.5  # type: ignore[misc]
    assert TrainConfig().lr == config.train.lr


def test_bad_seed_raises_config_error():
    with pytest.raises(ConfigError, match="seed"):
        TrialConfig.from_flat({"seed": -1})


def test_precision_is_a_validated_field_in_the_cache_key():
    from lib.config import DEFAULT_PRECISION, native_bf16
    from lib.data import DataSpec
    from lib.engine.trial import trial_key

    assert TrainConfig().precision == DEFAULT_PRECISION == ("bf16" if native_bf16() else "fp32")
    fp32, bf16 = TrialConfig.from_flat({"precision": "fp32"}), TrialConfig.from_flat({"precision": "bf16"})
    assert fp32.fingerprint() != bf16.fingerprint()
    assert trial_key(fp32, DataSpec(dataset="digits")) != trial_key(bf16, DataSpec(dataset="digits"))
    assert fp32.flat()["precision"] == "fp32"  # logged as a param of every run
    with pytest.raises(ConfigError, match="precision"):
        TrialConfig.from_flat({"precision": "fp16"})


@pytest.mark.parametrize(
    ("flat", "field"),
    [
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"augment_crop_padding": -1}, "augment_crop_padding"),
        ({"augment_erase_p": 1.5}, "augment_erase_p"),
        ({"augment_flip": "sometimes"}, "augment_flip"),
    ],
)
def test_final_model_levers_are_validated(flat, field):
    with pytest.raises(ConfigError, match=field):
        TrialConfig.from_flat(flat)


def test_final_model_levers_default_to_todays_behaviour_and_enter_the_key():
    train = TrainConfig()
    assert (train.label_smoothing, train.augment_crop_padding, train.augment_flip, train.augment_erase_p) == (
        0.0,
        0,
        False,
        0.0,
    )
    base = TrialConfig().fingerprint()
    for flat in (
        {"label_smoothing": 0.1},
        {"augment_crop_padding": 2},
        {"augment_flip": True},
        {"augment_erase_p": 0.25},
    ):
        assert TrialConfig.from_flat(flat).fingerprint() != base


def test_bf16_is_native_only_where_the_cpu_flags_say_so(tmp_path):
    from lib.config import native_bf16

    for flags, native in (("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16", True), ("fpu avx512f avx2", False)):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert native_bf16(str(tmp_path / "cpuinfo")) is native
    assert native_bf16(str(tmp_path / "absent")) is False
