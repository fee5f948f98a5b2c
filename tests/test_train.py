"""lib.train: learning, exact repeatability, divergence, evaluation, early stopping, BN recalibration."""

from __future__ import annotations

import copy
import math
from itertools import islice

import pytest
import torch
from torch import nn

from lib.config import TrialConfig
from lib.data import ArrayData
from lib.model import build_model
from lib.train import evaluate, fit, recalibrate_bn

RECALIBRATION_KEYS = {
    "val_accuracy_before_recalibration",
    "val_loss_before_recalibration",
    "val_accuracy_after_recalibration",
    "val_loss_after_recalibration",
}


def _train(splits, flat, train_data=None, val_data="val", **fit_kwargs):
    """Build the model for ``flat`` (seeded like a trial) and fit it on the small split."""
    config = TrialConfig.from_flat(flat)
    torch.manual_seed(config.seed)
    model = build_model(config.model, splits.input_shape, splits.n_classes)
    result = fit(
        model,
        train_data if train_data is not None else splits.train,
        splits.val if val_data == "val" else val_data,
        config.train,
        seed=config.seed,
        device="cpu",
        progress=False,
        **fit_kwargs,
    )
    return model, result, config


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bn_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]


@pytest.fixture(scope="module")
def trained(small_splits):
    """Two epochs of the default CNN with BatchNorm on 2000 real images."""
    return _train(small_splits, {"epochs": 2, "norm_type": "batch", "precision": "fp32"})


def test_short_training_learns_well_above_chance(trained, small_splits):
    model, result, config = trained
    assert result.status == "finished"
    assert result.failure_reason == ""
    assert [s.epoch for s in result.history] == [1, 2]
    assert result.history[-1].val_accuracy > 0.6
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.history[0].train_loss < math.log(10)
    assert result.images_seen == 2 * len(small_splits.train)
    assert result.train_seconds > 0
    assert result.history[0].lr == pytest.approx(config.train.lr)
    assert result.history[1].lr < result.history[0].lr  # cosine decay
    # the reported validation metrics are those of the returned model
    final = evaluate(model, small_splits.val, device="cpu")
    assert final.accuracy == result.history[-1].val_accuracy
    assert final.loss == pytest.approx(result.history[-1].val_loss, rel=1e-6)


def test_same_seed_gives_identical_history_and_weights(small_splits):
    flat = {"epochs": 2, "conv_out_channels": 8, "hidden_sizes": (32,), "dropout_p": 0.2, "seed": 3}
    model_a, first, _ = _train(small_splits, flat)
    model_b, second, _ = _train(small_splits, flat)
    key = [(s.train_loss, s.val_loss, s.val_accuracy, s.lr) for s in first.history]
    assert key == [(s.train_loss, s.val_loss, s.val_accuracy, s.lr) for s in second.history]
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    # and the seed matters: another seed gives another run
    _, other, _ = _train(small_splits, {**flat, "seed": 4})
    assert [s.train_loss for s in other.history] != [s.train_loss for s in first.history]


def test_huge_learning_rate_diverges_and_stops_early(small_splits):
    flat = {
        "epochs": 3,
        "optimizer": "sgd",
        "lr": 10.0,
        "scheduler": "none",
        "norm_type": "none",
        "num_conv_blocks": 1,
        "conv_out_channels": 8,
    }
    _, result, config = _train(small_splits, flat)
    assert result.status == "diverged"
    assert "loss became" in result.failure_reason
    assert len(result.history) < config.train.epochs


def test_nan_weights_mid_run_diverge_after_the_finished_epochs(small_splits):
    config = TrialConfig.from_flat({"epochs": 4, "conv_out_channels": 8, "hidden_sizes": (16,)})
    model = build_model(config.model, small_splits.input_shape, small_splits.n_classes)

    def poison_after_first_epoch(stats):
        if stats.epoch == 1:
            with torch.no_grad():
                model.head[-1].weight.fill_(math.nan)

    result = fit(
        model,
        small_splits.train,
        small_splits.val,
        config.train,
        device="cpu",
        progress=False,
        on_epoch=poison_after_first_epoch,
    )
    assert result.status == "diverged"
    assert "epoch 2" in result.failure_reason
    assert [s.epoch for s in result.history] == [1]
    assert math.isfinite(result.history[0].train_loss)


def test_nan_validation_loss_counts_as_diverged(small_splits):
    bad_val = ArrayData(torch.full_like(small_splits.val.images[:50], math.nan), small_splits.val.labels[:50])
    _, result, config = _train(small_splits, {"epochs": 3, "conv_out_channels": 8}, val_data=bad_val)
    assert result.status == "diverged"
    assert "validation loss" in result.failure_reason
    assert len(result.history) == 1 < config.train.epochs


def test_nan_training_images_diverge_in_the_first_epoch(small_splits):
    images = small_splits.train.images.clone()
    images[::7] = math.nan
    _, result, _ = _train(
        small_splits,
        {"epochs": 2, "conv_out_channels": 8},
        train_data=ArrayData(images, small_splits.train.labels),
    )
    assert result.status == "diverged"
    assert result.history == []


class _LabelReader(nn.Module):
    """Logits = the (one-hot x scale) image itself: a model whose accuracy is known in advance."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x.flatten(1) * self.scale + self.dummy


def test_evaluate_returns_accuracy_in_unit_interval(trained, small_splits):
    model, _, _ = trained
    result = evaluate(model, small_splits.val, device="cpu")
    assert 0.0 <= result.accuracy <= 1.0
    assert result.loss > 0
    # exact values on a model whose answers are known
    labels = torch.arange(30) % 3
    one_hot = nn.functional.one_hot(labels, 3).float()[:, None, None, :]  # (N, 1, 1, 3)
    data = ArrayData(one_hot, labels)
    right = evaluate(_LabelReader(100.0), data, batch_size=7, device="cpu")
    wrong = evaluate(_LabelReader(-100.0), data, batch_size=7, device="cpu")
    uniform = evaluate(_LabelReader(0.0), data, batch_size=7, device="cpu")
    assert right.accuracy == 1.0 and right.loss < 1e-6
    assert wrong.accuracy == 0.0
    assert uniform.loss == pytest.approx(math.log(3))
    # evaluation does not leave the model in a different mode
    reader = _LabelReader(1.0).train()
    evaluate(reader, data, device="cpu")
    assert reader.training


def test_early_stopping_restores_the_best_epoch(small_splits):
    # training on shifted labels makes validation loss rise after the first epoch
    shifted = ArrayData(small_splits.train.images, (small_splits.train.labels + 1) % 10)
    states = {}
    holder = {}

    def remember(stats):
        states[stats.epoch] = _state(holder["model"])

    config = TrialConfig.from_flat(
        {"epochs": 6, "early_stopping_patience": 1, "conv_out_channels": 8, "precision": "fp32"}
    )
    torch.manual_seed(0)
    model = holder["model"] = build_model(config.model, small_splits.input_shape, small_splits.n_classes)
    result = fit(model, shifted, small_splits.val, config.train, device="cpu", progress=False, on_epoch=remember)
    losses = [s.val_loss for s in result.history]
    assert result.status == "finished"
    assert len(result.history) < config.train.epochs, "patience=1 should stop a run that gets worse"
    assert result.restored_epoch == losses.index(min(losses)) + 1
    assert result.restored_epoch < len(result.history)
    final = model.state_dict()
    assert all(torch.equal(final[k], states[result.restored_epoch][k]) for k in final)
    assert not all(torch.equal(final[k], states[len(result.history)][k]) for k in final)
    assert evaluate(model, small_splits.val, device="cpu").loss == pytest.approx(min(losses), rel=1e-6)


def test_recalibrate_bn_changes_only_running_stats(trained, small_splits):
    model = copy.deepcopy(trained[0]).train()
    before = _state(model)
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    bn_layers = _bn_layers(model)
    assert len(bn_layers) == 3  # two conv blocks and one hidden layer

    count = recalibrate_bn(model, small_splits.train, n_batches=4, batch_size=128, seed=1, device="cpu")

    assert count == 3
    assert all(torch.equal(p, params[name]) for name, p in model.named_parameters())
    after = model.state_dict()
    for name in before:
        if name.endswith(("running_mean", "running_var")):
            assert not torch.equal(after[name], before[name]), name
        if name.endswith("num_batches_tracked"):
            assert int(after[name]) == 4
    assert model.training  # mode restored
    assert all(bn.momentum == 0.1 for bn in bn_layers)  # momentum restored

    # the first BN's running mean is the plain average of the conv outputs over the drawn batches
    generator = torch.Generator().manual_seed(1)
    conv = model.blocks[0][0]
    with torch.no_grad():
        batches = islice(small_splits.train.batches(128, shuffle=True, generator=generator), 4)
        means = [conv(x).mean(dim=(0, 2, 3)) for x, _ in batches]
    assert torch.allclose(bn_layers[0].running_mean, torch.stack(means).mean(0), atol=1e-5)


def test_recalibrate_bn_is_deterministic_with_dropout_switched_off(small_splits):
    config = TrialConfig.from_flat({"norm_type": "batch", "dropout_p": 0.5, "conv_out_channels": 8})
    model = build_model(config.model, small_splits.input_shape, small_splits.n_classes)
    recalibrate_bn(model, small_splits.train, n_batches=3, seed=0, device="cpu")
    first = _state(model)
    torch.manual_seed(12345)  # a different global RNG state would change active dropout masks
    recalibrate_bn(model, small_splits.train, n_batches=3, seed=0, device="cpu")
    second = model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_recalibrate_bn_without_batchnorm_is_a_no_op(small_splits):
    config = TrialConfig.from_flat({"norm_type": "none", "conv_out_channels": 8})
    model = build_model(config.model, small_splits.input_shape, small_splits.n_classes)
    before = _state(model)
    assert recalibrate_bn(model, small_splits.train, n_batches=2, device="cpu") == 0
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_fit_with_recalibration_records_before_and_after(small_splits):
    flat = {
        "epochs": 1,
        "norm_type": "batch",
        "recalibrate_bn": True,
        "recalibrate_batches": 4,
        "conv_out_channels": 8,
        "dropout_p": 0.3,
        "precision": "fp32",
    }
    model, result, _ = _train(small_splits, flat)
    assert result.status == "finished"
    assert set(result.recalibration) == RECALIBRATION_KEYS
    for key in ("val_accuracy_before_recalibration", "val_accuracy_after_recalibration"):
        assert 0.0 <= result.recalibration[key] <= 1.0
    # the epoch history is measured after recalibration (issue 22 defect 1): what the trial reports,
    # not the variance-shifted model before it
    assert result.history[-1].val_accuracy == result.recalibration["val_accuracy_after_recalibration"]
    assert result.history[-1].val_loss == pytest.approx(result.recalibration["val_loss_after_recalibration"])
    assert result.history[-1].val_loss != result.recalibration["val_loss_before_recalibration"]
    assert result.final.accuracy == result.recalibration["val_accuracy_after_recalibration"]
    assert evaluate(model, small_splits.val).accuracy == result.recalibration["val_accuracy_after_recalibration"]
    assert all(int(bn.num_batches_tracked) == 4 for bn in _bn_layers(model))


def test_fit_without_recalibration_records_nothing(trained):
    assert trained[1].recalibration == {}


def test_fit_without_validation_data_reports_nan_metrics(small_splits):
    flat = {
        "epochs": 1,
        "norm_type": "batch",
        "recalibrate_bn": True,
        "conv_out_channels": 8,
        "early_stopping_patience": 1,
    }
    _, result, _ = _train(small_splits, flat, val_data=None)
    assert result.status == "finished"
    assert math.isnan(result.history[0].val_loss) and math.isnan(result.history[0].val_accuracy)
    assert result.recalibration == {}
    assert result.restored_epoch is None
    assert result.best_epoch_metrics() == {}


# --- regressions: bugs found while writing these tests -----


def test_recalibration_also_happens_when_early_stopping_ends_the_run(small_splits):
    shifted = ArrayData(small_splits.train.images, (small_splits.train.labels + 1) % 10)
    flat = {
        "epochs": 6,
        "early_stopping_patience": 1,
        "norm_type": "batch",
        "recalibrate_bn": True,
        "conv_out_channels": 8,
    }
    _, result, config = _train(small_splits, flat, train_data=shifted)
    assert len(result.history) < config.train.epochs
    assert set(result.recalibration) == RECALIBRATION_KEYS


def test_training_set_size_one_more_than_a_batch_multiple(small_splits):
    data = ArrayData(small_splits.train.images[:65], small_splits.train.labels[:65])
    _, result, _ = _train(
        small_splits,
        {"epochs": 1, "norm_type": "batch", "batch_size": 64, "conv_out_channels": 8},
        train_data=data,
    )
    assert result.status == "finished"


# --- precision, label smoothing, augmentation, the checkpoint rule, honest recalibrated curves -----


def _dtypes_seen(model: nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    model.blocks[0][0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_sets_the_dtype_of_training_and_evaluation(small_splits, precision, dtype):
    data = ArrayData(small_splits.train.images[:512], small_splits.train.labels[:512])
    config = TrialConfig.from_flat({"epochs": 1, "norm_type": "batch", "precision": precision, "conv_out_channels": 8})
    model = build_model(config.model, small_splits.input_shape, small_splits.n_classes)
    seen = _dtypes_seen(model)
    result = fit(model, data, small_splits.val, config.train, device="cpu", progress=False)
    n_train_batches = 4
    assert result.status == "finished"
    assert seen[:n_train_batches] == [dtype] * n_train_batches  # training forward passes
    assert set(seen[n_train_batches:]) == {dtype}  # the validation pass, in the same precision
    # weights and BatchNorm statistics stay fp32 (autocast casts on the fly)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(bn.running_var.dtype == torch.float32 for bn in _bn_layers(model))
    assert result.history[0].val_accuracy > 0.3  # 4 steps: it learns, in either precision
    seen.clear()
    evaluate(model, small_splits.val, device="cpu", precision=precision)
    assert set(seen) == {dtype}


def test_bf16_training_tracks_fp32_closely(small_splits):
    flat = {
        "epochs": 1,
        "norm_type": "batch",
        "conv_out_channels": 8,
        "hidden_sizes": (32,),
        "seed": 1,
        "precision": "fp32",
    }
    data = ArrayData(small_splits.train.images[:1000], small_splits.train.labels[:1000])
    _, fp32, _ = _train(small_splits, flat, train_data=data)
    _, bf16, _ = _train(small_splits, flat | {"precision": "bf16"}, train_data=data)
    assert fp32.history[0].val_loss != bf16.history[0].val_loss  # it really ran differently
    assert abs(fp32.history[0].val_accuracy - bf16.history[0].val_accuracy) < 0.05


def test_label_smoothing_applies_to_the_training_loss_only(small_splits):
    smoothing = 0.3
    flat = {"epochs": 3, "lr": 3e-3, "label_smoothing": smoothing, "conv_out_channels": 16, "norm_type": "batch"}
    data = ArrayData(small_splits.train.images[:1000], small_splits.train.labels[:1000])
    _, result, _ = _train(small_splits, flat, train_data=data)
    # cross-entropy against the smoothed target can never go below that target's entropy
    target = torch.full((10,), smoothing / 10) + torch.eye(10)[0] * (1 - smoothing)
    floor = float(-(target * target.log()).sum())
    assert all(row.train_loss > floor for row in result.history)
    assert result.history[-1].val_loss < floor  # validation loss is plain cross-entropy


def test_augmented_training_repeats_for_a_seed_and_differs_from_plain(small_splits):
    augment = {"augment_crop_padding": 2, "augment_flip": True, "augment_erase_p": 0.5}
    flat = {"epochs": 1, "conv_out_channels": 8, "seed": 2}
    _, first, _ = _train(small_splits, flat | augment)
    _, again, _ = _train(small_splits, flat | augment)
    _, plain, _ = _train(small_splits, flat)
    assert first.history[0].train_loss == again.history[0].train_loss
    assert first.history[0].val_loss == again.history[0].val_loss
    assert first.history[0].train_loss != plain.history[0].train_loss
    assert first.history[0].val_accuracy > 0.3


def test_best_epoch_is_the_highest_validation_accuracy_earliest_on_ties():
    from lib.train import EpochStats, FitResult

    rows = [(1, 0.50, 0.9), (2, 0.80, 0.5), (3, 0.80, 0.4), (4, 0.70, 0.6)]
    result = FitResult(history=[EpochStats(e, 1.0, loss, acc, 1e-3, 1.0) for e, acc, loss in rows])
    assert result.best_epoch_metrics() == {"best_epoch": 2, "best_val_accuracy": 0.80, "best_val_loss": 0.5}


def test_recalibrated_curves_leave_training_unchanged(small_splits):
    flat = {"epochs": 2, "norm_type": "batch", "conv_out_channels": 8, "dropout_p": 0.3, "recalibrate_batches": 3}
    plain_model, plain, _ = _train(small_splits, flat)
    recal_model, recal, _ = _train(small_splits, flat | {"recalibrate_bn": True})
    # per-epoch recalibration is put back after scoring: training sees exactly the same steps
    assert [s.train_loss for s in plain.history] == [s.train_loss for s in recal.history]
    weights = {k: v for k, v in recal_model.state_dict().items() if "running" not in k and "batches" not in k}
    assert all(torch.equal(v, plain_model.state_dict()[k]) for k, v in weights.items())
    assert plain.history[0].val_loss != recal.history[0].val_loss
    assert recal.history[-1].val_accuracy == recal.recalibration["val_accuracy_after_recalibration"]


def test_evaluation_reports_which_images_it_got_right(trained, small_splits):
    model = trained[0]
    val = evaluate(model, small_splits.val, device="cpu")
    assert val.correct.dtype == torch.bool and len(val.correct) == len(small_splits.val)
    assert val.correct.float().mean().item() == pytest.approx(val.accuracy)
    with torch.no_grad():
        predicted = model.eval()(small_splits.val.images[:10]).argmax(1)
    assert val.correct[:10].tolist() == (predicted == small_splits.val.labels[:10]).tolist()
