"""Dropout with a cheaper random mask on the CPU: the same Bernoulli(1 - p) keep-mask, drawn faster.

``nn.Dropout`` on the CPU draws its mask with ``bernoulli_``, one random number per activation; on the
2-core course machine that costs about three times as much as the whole rest of a dropout layer, and
makes dropout roughly half of a training step of the 32/64-channel CNN (see ``benchmarks/speed.py``).
:class:`FastDropout` draws 64-bit random words from the same seeded torch generator and cuts each
into four 16-bit lanes: a unit is kept when its lane lies in the top ``1 - p`` of the 65,536 values.
So every unit is dropped independently with probability ``p`` rounded to a multiple of 1/65,536
(exact for 0.25, 0.5, ...; off by less than 8e-6 otherwise), and survivors are scaled by the exact
inverse of the keep rate, so the layer stays unbiased. A run repeats exactly for the same seed.

What this is not: a different regulariser. Same distribution, same placement, identity at
evaluation time; only the random stream differs from ``nn.Dropout``. On other devices (CUDA already
draws masks fast) it is ``nn.Dropout``. ``ModelConfig.dropout_impl="torch"`` switches it off; the
controlled accuracy comparison that justified making it the default is ``benchmarks/dropout_numerics.py``.
"""

from __future__ import annotations

import torch
from torch import nn

LANES = 65536  # values of one 16-bit lane


def dropped_lanes(p: float) -> int:
    """How many of the 65,536 lane values mean "drop": ``p`` rounded to the lane grid."""
    return round(p * LANES)


def keep_mask(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A boolean mask shaped (and, for channels_last maps, laid out) like ``x``; True keeps a unit."""
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
    words.random_(-(2**63), None, generator=generator)  # the full 64-bit range: four uniform 16-bit lanes
    lanes = words.view(torch.int16)[:n]
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        batch, channels, height, width = x.shape
        lanes = lanes.view(batch, height, width, channels).permute(0, 3, 1, 2)  # same strides as x
    else:
        lanes = lanes.view(x.shape)
    return lanes >= -(LANES // 2) + dropped_lanes(p)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with the faster CPU mask of :func:`keep_mask` (a drop-in subclass)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped = dropped_lanes(self.p)
        if not self.training or dropped == 0:
            return x
        if x.device.type != "cpu" or not x.is_floating_point() or dropped >= LANES or self.inplace:
            return super().forward(x)
        scale = LANES / (LANES - dropped)
        # the bool mask converted through its uint8 view (same bytes, 0 or 1): bool -> float is a slow
        # scalar loop on the CPU (9 ms on the first block's map), uint8 -> float a vectorised one (2.4 ms)
        return x * keep_mask(x, self.p).view(torch.uint8).to(x.dtype).mul_(scale)
