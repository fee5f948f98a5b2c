"""lib.model: the CNN's shapes, layer order, dropout placement and config validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lib.config import ConfigError, ModelConfig, TrialConfig
from lib.model import (
    build_model,
    conv_block_parameters,
    count_parameters,
    describe,
    feature_map_sizes,
    max_conv_blocks,
)

FASHION = (1, 28, 28)
_NORM_TYPES = {
    "none": None,
    "batch": (nn.BatchNorm2d, nn.BatchNorm1d),
    "layer": (nn.GroupNorm, nn.LayerNorm),
    "group": (nn.GroupNorm, nn.GroupNorm),
}


def _model(input_shape=FASHION, n_classes=10, **fields):
    return build_model(dict(fields), input_shape, n_classes)


def _types(module: nn.Module) -> list[type]:
    return [type(m) for m in module]


def _forward(model: nn.Module, input_shape, n=4) -> torch.Tensor:
    torch.manual_seed(0)
    model.train()
    return model(torch.randn(n, *input_shape))


@pytest.mark.parametrize("blocks", [0, 1, 2, 3])
def test_logit_shape_for_every_depth(blocks):
    model = _model(num_conv_blocks=blocks)
    assert len(model.blocks) == blocks
    logits = _forward(model, FASHION, n=5)
    assert logits.shape == (5, 10)
    assert torch.isfinite(logits).all()
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, *FASHION)).shape == (1, 10)


@pytest.mark.parametrize("blocks", [0, 1, 2, 3])
def test_first_head_linear_matches_the_feature_map(blocks):
    config = ModelConfig.create(num_conv_blocks=blocks)
    channels, height, width = feature_map_sizes(config, FASHION)[-1]
    expected = {0: (1, 28, 28), 1: (32, 14, 14), 2: (64, 7, 7), 3: (128, 3, 3)}[blocks]
    assert (channels, height, width) == expected
    first_linear = next(m for m in build_model(config, FASHION, 10).head if isinstance(m, nn.Linear))
    assert first_linear.in_features == channels * height * width


@pytest.mark.parametrize(
    ("input_shape", "n_classes", "blocks"),
    [((3, 32, 32), 10, 3), ((3, 32, 32), 4, 5), ((1, 8, 8), 10, 3), ((1, 8, 8), 2, 0)],
)
def test_other_input_shapes(input_shape, n_classes, blocks):
    model = _model(input_shape, n_classes, num_conv_blocks=blocks, conv_out_channels=8)
    assert len(model.blocks) == blocks
    if blocks:
        assert model.blocks[0][0].in_channels == input_shape[0]
    else:
        assert model.head[1].in_features == input_shape[0] * input_shape[1] * input_shape[2]
    assert _forward(model, input_shape, n=3).shape == (3, n_classes)


@pytest.mark.parametrize("norm_type", list(_NORM_TYPES))
def test_each_norm_type_builds_the_right_layers(norm_type):
    model = _model(norm_type=norm_type, num_conv_blocks=2, hidden_sizes=(64,))
    assert _forward(model, FASHION).shape == (4, 10)
    conv_norms = [block[1] for block in model.blocks]
    head_norm = model.head[2]
    assert isinstance(model.head[1], nn.Linear)
    expected = _NORM_TYPES[norm_type]
    if expected is None:
        assert all(isinstance(m, nn.Identity) for m in [*conv_norms, head_norm])
        # without a norm layer the conv/linear layers need their own bias
        assert model.blocks[0][0].bias is not None and model.head[1].bias is not None
    else:
        assert all(type(m) is expected[0] for m in conv_norms)
        assert type(head_norm) is expected[1]
        # a norm layer with an affine shift makes the preceding bias redundant
        assert model.blocks[0][0].bias is None and model.head[1].bias is None
    if norm_type == "layer":
        assert all(m.num_groups == 1 for m in conv_norms)
    if norm_type == "group":
        assert all(m.num_groups == 8 for m in [*conv_norms, head_norm])


def test_batchnorm_sits_between_conv_and_activation():
    model = _model(norm_type="batch", num_conv_blocks=3, hidden_sizes=(64, 32), activation="gelu")
    for block in model.blocks:
        kinds = _types(block)
        conv = kinds.index(nn.Conv2d)
        assert kinds[conv + 1] is nn.BatchNorm2d
        assert kinds[conv + 2] is nn.GELU
        assert block[conv + 1].num_features == block[conv].out_channels
    kinds = _types(model.head)
    for index, kind in enumerate(kinds[:-1]):
        if kind is nn.Linear:
            assert kinds[index + 1] is nn.BatchNorm1d
            assert kinds[index + 2] is nn.GELU


@pytest.mark.parametrize("placement", ["block", "head", "pool"])
def test_dropout_placement(placement):
    model = _model(dropout_p=0.3, dropout_placement=placement, num_conv_blocks=2, hidden_sizes=(64,))
    for block in model.blocks:
        kinds = _types(block)
        pool = kinds.index(nn.MaxPool2d)
        act = kinds.index(nn.ReLU)
        dropouts = [i for i, kind in enumerate(kinds) if issubclass(kind, nn.Dropout)]
        if placement == "head":
            assert dropouts == []
        elif placement == "block":
            assert dropouts == [pool - 1] and act < dropouts[0]
        else:
            assert dropouts == [pool + 1]
        assert all(block[i].p == 0.3 for i in dropouts)
    head_dropouts = [m for m in model.head if isinstance(m, nn.Dropout)]
    assert len(head_dropouts) == 1 and head_dropouts[0].p == 0.3
    assert isinstance(model.head[-1], nn.Linear)
    assert isinstance(model.head[-2], nn.Dropout)  # the hidden layer's dropout feeds the output layer


def test_zero_dropout_creates_no_dropout_layers():
    model = _model(dropout_p=0.0, dropout_placement="pool", num_conv_blocks=2)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


@pytest.mark.parametrize("norm_type", list(_NORM_TYPES))
@pytest.mark.parametrize("hidden_sizes", [(), (64,), (64, 32)])
def test_output_layer_has_no_norm_and_no_dropout(norm_type, hidden_sizes):
    model = _model(norm_type=norm_type, hidden_sizes=hidden_sizes, dropout_p=0.5, dropout_placement="head")
    last = model.head[-1]
    assert isinstance(last, nn.Linear)
    assert last.out_features == 10
    assert last.bias is not None
    assert sum(isinstance(m, nn.Linear) for m in model.head) == len(hidden_sizes) + 1
    assert sum(isinstance(m, nn.Dropout) for m in model.head) == len(hidden_sizes)


def test_pool_type_and_kernel():
    model = _model(pool_type="avg", pool_kernel_size=3, num_conv_blocks=2, conv_kernel_size=5)
    pools = [m for m in model.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 2 and all(p.kernel_size == 3 for p in pools)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.blocks[0][0].kernel_size == (5, 5) and model.blocks[0][0].padding == (2, 2)
    assert feature_map_sizes(model.config, FASHION)[-1] == (64, 3, 3)
    assert _forward(model, FASHION).shape == (4, 10)


def test_channels_grow_by_the_multiplier():
    model = _model(num_conv_blocks=3, conv_out_channels=8, channel_multiplier=3)
    assert [block[0].out_channels for block in model.blocks] == [8, 24, 72]


@pytest.mark.parametrize(
    ("fields", "input_shape", "field_name"),
    [
        ({"dropout_p": 1.0}, FASHION, "dropout_p"),
        ({"dropout_p": -0.1}, FASHION, "dropout_p"),
        ({"norm_type": "bn"}, FASHION, "norm_type"),
        ({"pool_type": "median"}, FASHION, "pool_type"),
        ({"num_conv_blocks": 5}, FASHION, "num_conv_blocks"),
        ({"num_conv_blocks": 4}, (1, 8, 8), "num_conv_blocks"),
        ({"num_conv_blocks": 9}, FASHION, "num_conv_blocks"),
        ({"conv_kernel_size": 4}, FASHION, "conv_kernel_size"),
        ({"learning_rate": 0.1}, FASHION, "learning_rate"),
        ({"norm_type": "group", "group_norm_groups": 5}, FASHION, "group_norm_groups"),
        (
            {"norm_type": "group", "conv_out_channels": 16, "hidden_sizes": (100,)},
            FASHION,
            "group_norm_groups",
        ),
        ({"hidden_sizes": (64, 0)}, FASHION, "hidden_sizes"),
        ({"activation": "tanh"}, FASHION, "activation"),
    ],
)
def test_invalid_config_raises_config_error_naming_the_field(fields, input_shape, field_name):
    with pytest.raises(ConfigError) as excinfo:
        build_model(fields, input_shape, 10)
    assert isinstance(excinfo.value, ValueError)
    assert field_name in str(excinfo.value)


def test_vanishing_feature_map_error_says_what_is_allowed():
    with pytest.raises(ConfigError, match="at most 4 blocks"):
        _model(num_conv_blocks=5)
    with pytest.raises(ConfigError, match="at most 3 blocks"):
        _model((1, 8, 8), num_conv_blocks=4)
    assert max_conv_blocks(2, FASHION) == 4
    assert max_conv_blocks(2, (1, 8, 8)) == 3
    assert max_conv_blocks(3, (3, 32, 32)) == 3
    # the deepest allowed model still builds and runs
    assert _forward(_model(num_conv_blocks=4, conv_out_channels=4), FASHION).shape == (4, 10)


def test_unknown_field_error_suggests_the_close_name():
    with pytest.raises(ConfigError, match="dropout_p"):
        build_model({"dropout_prob": 0.2}, FASHION, 10)


@pytest.mark.parametrize(("input_shape", "n_classes"), [((28, 28), 10), ((1, 0, 28), 10), (FASHION, 1)])
def test_bad_input_shape_or_class_count(input_shape, n_classes):
    with pytest.raises(ConfigError):
        build_model({}, input_shape, n_classes)


def test_count_parameters():
    model = _model(num_conv_blocks=2, norm_type="batch")
    total = count_parameters(model)
    assert total > 0
    assert total == sum(p.numel() for p in model.parameters())
    # known by hand: Linear 64->10 on an 8x8 grey image, and one conv block in front of it
    assert count_parameters(_model((1, 8, 8), num_conv_blocks=0, hidden_sizes=())) == 64 * 10 + 10
    one_block = _model((1, 8, 8), num_conv_blocks=1, conv_out_channels=4, hidden_sizes=())
    assert count_parameters(one_block) == (4 * 9 + 4) + (4 * 4 * 4 * 10 + 10)
    # only trainable parameters count
    model.head[-1].weight.requires_grad_(False)
    assert count_parameters(model) == total - model.head[-1].weight.numel()


# --- convs_per_block (study v4): (Conv -> Norm -> Act) x n -> Dropout -> Pool ---------------------------


@pytest.mark.parametrize("placement", ["block", "pool"])
def test_two_convs_per_block_repeat_conv_norm_act_then_one_dropout_and_the_pool(placement):
    model = _model(norm_type="batch", dropout_p=0.3, dropout_placement=placement, num_conv_blocks=2, convs_per_block=2)
    act_pair = [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    for block, channels in zip(model.blocks, [32, 64], strict=True):
        kinds = _types(block)
        assert kinds[:6] == act_pair
        tail = kinds[6:]
        assert len(tail) == 2 and issubclass(tail[0 if placement == "block" else 1], nn.Dropout)
        assert tail[1 if placement == "block" else 0] is nn.MaxPool2d
        convs = [m for m in block if isinstance(m, nn.Conv2d)]
        assert [c.out_channels for c in convs] == [channels, channels]  # both convs: the block's width
        assert convs[1].in_channels == channels
    assert model.blocks[1][0].in_channels == 32
    assert _forward(model, FASHION).shape == (4, 10)
    assert feature_map_sizes(model.config, FASHION)[-1] == (64, 7, 7)  # 'same' convs: only pools shrink


def test_one_conv_per_block_is_the_course_block_unchanged():
    one = _model(norm_type="batch", dropout_p=0.3, num_conv_blocks=2)
    assert [_types(block) for block in one.blocks] == [
        [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, type(one.blocks[0][3]), nn.MaxPool2d]
    ] * 2
    text = describe(ModelConfig(norm_type="batch"), FASHION, 10)
    assert "convs" not in text and text.splitlines()[-1] == "parameters       421,866"


def test_parameter_count_of_a_two_conv_block():
    # by hand on an 8x8 grey image, 4 channels, no norm (convs have biases), no hidden layer:
    # conv 1->4: 4*9 + 4; conv 4->4: 4*4*9 + 4; output Linear on 4x4x4 values: 64*10 + 10
    two = _model((1, 8, 8), num_conv_blocks=1, conv_out_channels=4, hidden_sizes=(), convs_per_block=2)
    assert count_parameters(two) == (4 * 9 + 4) + (4 * 4 * 9 + 4) + (4 * 4 * 4 * 10 + 10)
    config = ModelConfig(norm_type="batch", convs_per_block=2)
    model = build_model(config, FASHION, 10)
    # with BatchNorm: no conv bias, 2 parameters per channel and norm layer
    assert conv_block_parameters(config, 1, 32) == (9 * 32 + 2 * 32) + (9 * 32 * 32 + 2 * 32)
    for block, (c_in, c_out) in zip(model.blocks, [(1, 32), (32, 64)], strict=True):
        assert count_parameters(block) == conv_block_parameters(config, c_in, c_out)
    assert "2 convs: 9,632 parameters" in describe(config, FASHION, 10)


@pytest.mark.parametrize("value", [0, 5, 1.5, "two"])
def test_bad_convs_per_block_is_a_one_line_error_naming_the_field(value):
    with pytest.raises(ConfigError) as excinfo:
        build_model({"convs_per_block": value}, FASHION, 10)
    message = str(excinfo.value)
    assert "convs_per_block" in message and "\n" not in message
    with pytest.raises(ConfigError, match="convs_per_block"):
        TrialConfig.from_flat({"convs_per_block": value})


def test_one_conv_per_block_keeps_the_fingerprint_it_had_before_the_field_existed():
    import hashlib
    import json

    for flat in ({}, {"norm_type": "batch", "dropout_p": 0.25}, {"convs_per_block": 1, "lr": 2e-3}):
        config = TrialConfig.from_flat(flat)
        before = {k: v for k, v in config.canonical().flat().items() if k != "convs_per_block"}
        text = json.dumps(before, sort_keys=True, default=list)
        assert config.fingerprint() == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert TrialConfig.from_flat({"convs_per_block": 2}).fingerprint() != TrialConfig().fingerprint()
    assert TrialConfig.from_flat({"convs_per_block": 2}).flat()["convs_per_block"] == 2
