"""resize_ragged: the CPU kernel against F.interpolate per sample, gradients, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ebir_fast.ops import resize_ragged
from ebir_fast.ops.resize import RESIZE_BACKENDS
from tests.ops.helpers import assert_close, fast_backend_params

BACKENDS = [p for p in fast_backend_params() if p.values[0] in RESIZE_BACKENDS]
SIZES = torch.tensor([[40, 50], [17, 23], [40, 50], [1, 1], [33, 7], [40, 50]])
OUT = torch.tensor([[13, 77], [50, 9], [40, 50], [5, 3], [8, 8], [97, 120]])


def _check_per_sample(x, y, sizes, out, mode, tolerance_dtype):
    """Each sample of ``y`` equals torch's resize of its extent in ``x``, and is 0 beyond it."""
    for b in range(x.shape[0]):
        (h, w), (oh, ow) = sizes[b].tolist(), out[b].tolist()
        src = x[b : b + 1, :, :h, :w]
        if mode == 0:
            want = F.adaptive_avg_pool2d(src, (oh, ow))
        else:
            name = ("bilinear", "bicubic")[mode - 1]
            want = F.interpolate(src, size=(oh, ow), mode=name, align_corners=False)
        assert_close(y[b : b + 1, :, :oh, :ow], want, tolerance_dtype)
        assert y[b, :, oh:].abs().sum() == 0
        assert y[b, :, :, ow:].abs().sum() == 0


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
@pytest.mark.parametrize("mode", [0, 1, 2], ids=["area", "bilinear", "bicubic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_matches_interpolate_per_sample(backend, mode, dtype):
    x = torch.rand(6, 3, 40, 50, generator=torch.Generator().manual_seed(0), dtype=dtype)
    y = resize_ragged(x, SIZES, OUT, torch.full((6,), mode), backend=backend)
    assert y.shape == (6, 3, 97, 120)
    _check_per_sample(x, y, SIZES, OUT, mode, dtype if mode == 0 else torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", [0, 1, 2], ids=["area", "bilinear", "bicubic"])
def test_large_upscale_across_row_bands(backend, mode):
    # The CPU kernel resamples an upscale's input rows once per band of output rows: many bands,
    # each starting mid-way between input rows, and a sample that is still downscaled.
    x = torch.rand(2, 3, 60, 13, generator=torch.Generator().manual_seed(1))
    sizes, out = torch.tensor([[9, 13], [60, 11]]), torch.tensor([[203, 150], [31, 40]])
    y = resize_ragged(x, sizes, out, torch.full((2,), mode), backend=backend)
    _check_per_sample(x, y, sizes, out, mode, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_modes_strided_input_and_identity(backend):
    x = torch.rand(3, 3, 20, 30).contiguous(memory_format=torch.channels_last)
    sizes = torch.tensor([[20, 30], [11, 13], [20, 30]])
    out = torch.tensor([[20, 30], [11, 13], [7, 9]])
    modes = torch.tensor([2, 1, 0])
    got = resize_ragged(x, sizes, out, modes, backend=backend)
    assert_close(got, resize_ragged(x, sizes, out, modes, backend="reference"), torch.float32)
    assert torch.equal(got[0], x[0])  # same size: the identity, exactly, in every mode
    assert torch.equal(got[1, :, :11, :13], x[1, :, :11, :13])


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_flows_through_the_reference(backend):
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    out = torch.tensor([[8, 8], [24, 20]])
    modes = torch.tensor([0, 2])
    assert torch.autograd.gradcheck(
        lambda t: resize_ragged(t, None, out, modes, backend=backend), (x,)
    )


@pytest.mark.parametrize(
    ("out", "modes", "match"),
    [
        (torch.tensor([[0, 4], [4, 4]]), torch.tensor([0, 0]), "out_sizes: expected sizes >= 1"),
        (torch.tensor([4, 4]), torch.tensor([0, 0]), r"out_sizes: expected a \[2, 2\]"),
        (torch.tensor([[4, 4], [4, 4]]), torch.tensor([0, 3]), "modes: expected indices"),
        (torch.tensor([[4, 4], [4, 4]]), torch.tensor([0]), r"modes: expected a \[2\]"),
    ],
)
def test_errors_name_the_argument(out, modes, match):
    with pytest.raises(ValueError, match=match):
        resize_ragged(torch.rand(2, 3, 8, 8), None, out, modes)
