"""quantize_8bit: the fused kernel against the reference, the grid, the gradient."""

from __future__ import annotations

import pytest
import torch

from ebir_fast.ops import quantize_8bit
from ebir_fast.ops.quantize import QUANTIZE_BACKENDS
from tests.ops.helpers import fast_backend_params

BACKENDS = [p for p in fast_backend_params() if p.values[0] in QUANTIZE_BACKENDS]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
def test_matches_reference_exactly(backend, dtype):
    x = (torch.rand(3, 3, 17, 29, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2).to(dtype)
    x[0, 0, 0, :4] = torch.tensor([0.5 / 255, 1.5 / 255, 2.5 / 255, float("nan")]).to(dtype)
    want = quantize_8bit(x, backend="reference")
    got = quantize_8bit(x.contiguous(memory_format=torch.channels_last), backend=backend)
    assert got.dtype == dtype
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_grid_range_and_straight_through_gradient(backend):
    x = (torch.rand(2, 3, 8, 8, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()
    y = quantize_8bit(x, backend=backend)
    assert torch.equal(y, torch.round(y * 255) / 255)
    assert y.min() >= 0
    assert y.max() <= 1
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(grad, ((x >= 0) & (x <= 1)).double())
