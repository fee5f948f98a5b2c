"""The configurable CNN, built from a validated :class:`lib.config.ModelConfig`.

Layout: ``num_conv_blocks`` blocks of (Conv -> Norm -> Activation) x ``convs_per_block`` -> Dropout ->
Pool (0 blocks is a plain MLP; one conv per block is the course's block), then a dense head where each
hidden Linear is followed by Norm -> Activation -> Dropout, then the output Linear with no norm and no
dropout. The model knows nothing about training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lib.config import ConfigError, ModelConfig
from lib.dropout import FastDropout

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def feature_map_sizes(config: ModelConfig, input_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """``(C, H, W)`` after each conv block (first entry: the input).

    Raises :class:`ConfigError` when pooling shrinks the map to nothing for this input size.
    """
    channels, height, width = input_shape
    sizes = [(channels, height, width)]
    for block, out_channels in enumerate(config.channels(), start=1):
        height //= config.pool_kernel_size
        width //= config.pool_kernel_size
        if height < 1 or width < 1:
            raise ConfigError(
                f"num_conv_blocks={config.num_conv_blocks} with pool_kernel_size="
                f"{config.pool_kernel_size}: the feature map vanishes after block {block} for "
                f"input {input_shape[1]}x{input_shape[2]}. Allowed: at most "
                f"{max_conv_blocks(config.pool_kernel_size, input_shape)} blocks for this input."
            )
        sizes.append((out_channels, height, width))
    return sizes


def max_conv_blocks(pool_kernel_size: int, input_shape: tuple[int, int, int]) -> int:
    """The largest number of pooling blocks that leaves at least a 1x1 map."""
    if pool_kernel_size == 1:
        return 8
    side, blocks = min(input_shape[1:]), 0
    while side // pool_kernel_size >= 1:
        side //= pool_kernel_size
        blocks += 1
    return blocks


def _norm(config: ModelConfig, features: int, spatial: bool) -> nn.Module:
    kind = config.norm_type
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(features) if spatial else nn.BatchNorm1d(features)
    if kind == "layer":  # over all of (C, H, W) for conv maps, over features for vectors
        return nn.GroupNorm(1, features) if spatial else nn.LayerNorm(features)
    groups = config.group_norm_groups
    if features % groups:
        raise ConfigError(
            f"group_norm_groups={groups} does not divide a layer width of {features}. Allowed: a "
            f"divisor of every conv/hidden width (e.g. {_divisors(features)})."
        )
    return nn.GroupNorm(groups, features)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, min(n, 32) + 1) if n % d == 0]


def _dropout(config: ModelConfig) -> nn.Module:
    if config.dropout_p == 0:
        return nn.Identity()
    return FastDropout(config.dropout_p) if config.dropout_impl == "fast" else nn.Dropout(config.dropout_p)


class ConvNet(nn.Module):
    """Conv blocks (an ``nn.Sequential`` each, in an ``nn.ModuleList``) and a dense head."""

    def __init__(self, config: ModelConfig, input_shape: tuple[int, int, int], n_classes: int) -> None:
        super().__init__()
        self.config = config
        self.input_shape = tuple(input_shape)
        sizes = feature_map_sizes(config, self.input_shape)
        pool_cls = nn.MaxPool2d if config.pool_type == "max" else nn.AvgPool2d
        act = _ACTIVATIONS[config.activation]
        self.blocks = nn.ModuleList()
        in_channels = input_shape[0]
        for out_channels in config.channels():
            conv_dropout = _dropout(config) if config.dropout_placement != "head" else nn.Identity()
            layers: list[nn.Module] = []
            for _ in range(config.convs_per_block):  # every conv of a block has the block's channels
                layers += [
                    nn.Conv2d(
                        in_channels,
                        out_channels,
                        config.conv_kernel_size,
                        padding=config.conv_kernel_size // 2,
                        bias=config.norm_type == "none",
                    ),
                    _norm(config, out_channels, spatial=True),
                    act(),
                ]
                in_channels = out_channels
            pool = pool_cls(config.pool_kernel_size)  # dropout only after the block's last activation
            layers += [pool, conv_dropout] if config.dropout_placement == "pool" else [conv_dropout, pool]
            self.blocks.append(nn.Sequential(*layers))
        channels, height, width = sizes[-1]
        head: list[nn.Module] = [nn.Flatten()]
        width_in = channels * height * width
        for hidden in config.hidden_sizes:
            head += [
                nn.Linear(width_in, hidden, bias=config.norm_type == "none"),
                _norm(config, hidden, spatial=False),
                act(),
                _dropout(config),
            ]
            width_in = hidden
        head.append(nn.Linear(width_in, n_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def build_model(config: ModelConfig | dict[str, Any], input_shape: tuple[int, int, int], n_classes: int) -> ConvNet:
    """Build the CNN for inputs of shape ``(C, H, W)`` and ``n_classes`` outputs.

    ``config`` may be a :class:`ModelConfig` or a dict of its fields; anything that cannot work
    raises :class:`ConfigError` naming the field, the value and what is allowed.
    """
    if isinstance(config, dict):
        config = ModelConfig.create(**config)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ConfigError(f"input_shape={tuple(input_shape)}: must be (C, H, W) with positive sizes")
    if n_classes < 2:
        raise ConfigError(f"n_classes={n_classes}: must be >= 2")
    return ConvNet(config, tuple(input_shape), n_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv_block_parameters(config: ModelConfig, in_channels: int, out_channels: int) -> int:
    """Trainable parameters of one conv block (its ``convs_per_block`` convolutions and their norms).

    A conv has ``k*k*c_in*c_out`` weights plus ``c_out`` biases without a norm layer; a norm layer
    adds ``2*c_out`` (scale and shift; BatchNorm's running statistics are buffers, not parameters).
    """
    total, k = 0, config.conv_kernel_size
    for _ in range(config.convs_per_block):
        total += k * k * in_channels * out_channels
        total += out_channels if config.norm_type == "none" else 2 * out_channels
        in_channels = out_channels
    return total


def describe(config: ModelConfig, input_shape: tuple[int, int, int], n_classes: int) -> str:
    """A short text summary: feature-map size after each block and the parameter count.

    With more than one conv per block, each block's line also says how many convs it has and their
    parameters (one conv per block prints exactly as before the option existed).
    """
    sizes = feature_map_sizes(config, input_shape)
    model = build_model(config, input_shape, n_classes)
    lines = [f"input            {sizes[0][0]:>4} x {sizes[0][1]:>2} x {sizes[0][2]:>2}"]
    for i, (c, h, w) in enumerate(sizes[1:], start=1):
        line = f"after block {i:<4} {c:>4} x {h:>2} x {w:>2}  ({c * h * w} values)"
        if config.convs_per_block > 1:
            params = conv_block_parameters(config, sizes[i - 1][0], c)
            line += f", {config.convs_per_block} convs: {params:,} parameters"
        lines.append(line)
    lines.append(f"parameters       {count_parameters(model):,}")
    return "\n".join(lines)
