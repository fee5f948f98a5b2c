"""lib.dropout: FastDropout draws the same Bernoulli masks as nn.Dropout, stays unbiased and repeats."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lib.config import ModelConfig
from lib.dropout import LANES, FastDropout, dropped_lanes, keep_mask
from lib.model import build_model


@pytest.mark.parametrize("p", [0.1, 0.25, 0.3, 0.5, 0.7])
def test_drop_rate_matches_p(p):
    torch.manual_seed(0)
    x = torch.ones(400_000)
    kept = float(keep_mask(x, p).float().mean())
    # binomial standard error at n=400k is < 8e-4; allow 5 of them
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / x.numel())


def test_output_is_unbiased_and_only_zeros_or_scaled_inputs():
    torch.manual_seed(1)
    layer = FastDropout(0.3).train()
    x = torch.rand(200_000) + 0.5
    out = layer(x)
    scale = 65536 / (65536 - dropped_lanes(0.3))
    dropped = out == 0
    assert torch.allclose(out[~dropped], x[~dropped] * scale)
    assert abs(float(out.mean()) / float(x.mean()) - 1) < 0.01


def test_neighbouring_units_are_independent():
    """Four lanes share one 64-bit word: their drops must not be correlated."""
    torch.manual_seed(2)
    keep = keep_mask(torch.ones(800_000), 0.5).float().view(-1, 4)
    correlation = torch.corrcoef(keep.T)
    off_diagonal = correlation[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 0.01


def test_same_seed_same_mask_and_eval_is_identity():
    layer = FastDropout(0.25)
    x = torch.randn(8, 16, 7, 7)
    torch.manual_seed(3)
    first = layer(x)
    torch.manual_seed(3)
    assert torch.equal(first, layer(x))
    assert torch.equal(layer.eval()(x), x)


def test_channels_last_input_keeps_its_layout_and_gradient_uses_the_mask():
    torch.manual_seed(4)
    x = torch.randn(4, 8, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = FastDropout(0.5)(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.sum().backward()
    assert torch.equal(x.grad == 0, out == 0)
    assert torch.allclose(x.grad[out != 0], torch.tensor(2.0))


def test_tiny_p_keeps_everything_and_p_near_one_falls_back_to_torch():
    x = torch.randn(1000)
    assert torch.equal(FastDropout(1e-6)(x), x)  # rounds to zero dropped lanes
    torch.manual_seed(5)
    out = FastDropout(1 - 1e-6)(x)  # rounds to all lanes dropped: nn.Dropout's own path
    assert torch.isfinite(out).all()


def test_model_uses_the_chosen_implementation():
    def dropouts(impl):
        model = build_model(ModelConfig(dropout_p=0.2, dropout_impl=impl), (1, 28, 28), 10)
        return {type(m) for m in model.modules() if isinstance(m, nn.Dropout)}

    assert dropouts("fast") == {FastDropout}
    assert dropouts("torch") == {nn.Dropout}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.25, 0.6])
def test_the_uint8_mask_path_is_bit_identical_to_the_bool_mask_it_replaced(dtype, p):
    """Output and input gradient equal, bit for bit, those of ``x * mask.to(dtype).mul_(scale)``."""
    x = torch.randn(16, 8, 12, 12).contiguous(memory_format=torch.channels_last).to(dtype)
    grad = torch.randn_like(x)
    results = []
    for use_layer in (True, False):
        torch.manual_seed(3)
        leaf = x.clone().requires_grad_()
        if use_layer:
            out = FastDropout(p).train()(leaf)
        else:
            scale = LANES / (LANES - dropped_lanes(p))
            out = leaf * keep_mask(leaf, p).to(dtype).mul_(scale)
        out.backward(grad)
        results.append((out.detach(), leaf.grad))
    (out_new, grad_new), (out_old, grad_old) = results
    assert out_new.dtype == dtype and out_new.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(
        out_new.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
        out_old.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
    )
    assert torch.equal(grad_new, grad_old)
