"""The Triton blur kernels (ebir_fast.ops.triton.blur) against the PyTorch reference.

Without a GPU the kernels run in the Triton interpreter, whose cost grows with the number of
programs and operations, so the images are small and odd-sized: they exercise the borders, the
masked edges of the tiles and the repeated reflection of images smaller than the kernel radius.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

# The interpreter has to be chosen before triton compiles anything; conftest.py may have done it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton", reason="the triton backend needs triton")

from ebir_fast import _ext
from ebir_fast.ops import blur_mse, gaussian_blur, gaussian_taps
from ebir_fast.ops._dispatch import triton_interpreted
from ebir_fast.ops.reference import (
    blur_mse_reference,
    gaussian_blur_adjoint_reference,
    gaussian_blur_reference,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not triton_interpreted():
    pytest.skip("no CUDA device and TRITON_INTERPRET is off", allow_module_level=True)

from ebir_fast.ops.triton import blur as triton_blur  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

#: Relative to max|expected|. Both sides accumulate in float32 (float64 for float64) and round
#: once, so the budget is an ulp or two of the output dtype (the accumulation dtype's for sums).
TOLERANCES = {
    torch.float32: 2e-6,
    torch.float64: 1e-13,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}

# (shape, sigma): odd sizes; an image smaller than the radius (9) in both directions; one row; one
# column. Two planes at most: the interpreter runs the programs one after the other.
CASES = [
    ((2, 1, 37, 41), 2.0),
    ((1, 1, 5, 7), 3.0),
    ((1, 1, 1, 9), 1.0),
    ((2, 1, 11, 1), 1.5),
]


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _ks(sigma: float) -> int:
    return 2 * math.ceil(3 * sigma) + 1


def _taps(sigma: float, ks: int, dtype: torch.dtype) -> torch.Tensor:
    """The taps the ops pass to the launchers: accumulation dtype, on the test device."""
    return gaussian_taps(sigma, ks, _acc(dtype), DEVICE)


def _images(shape, dtype, seed, n=2):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(shape, generator=gen, dtype=torch.float64) - 0.5).to(DEVICE, dtype)
        for _ in range(n)
    ]


def _close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """|actual - expected| <= TOLERANCES[dtype] * max|expected|, NaNs in the same places."""
    assert actual.shape == expected.shape
    a, e = actual.detach().double(), expected.detach().double()
    atol = TOLERANCES[dtype] * float(e.abs().max().clamp_min(1e-30))
    torch.testing.assert_close(a, e, rtol=0.0, atol=atol, equal_nan=True)


def _expected_fwd(x, y, sigma, ks):
    """(blur(x - y) in the accumulation dtype, its per-sample sum of squares in float64)."""
    acc = _acc(x.dtype)
    diff = x.to(acc) if y is None else x.to(acc) - y.to(acc)
    e = gaussian_blur_reference(diff, sigma, ks)
    return e, e.double().square().flatten(1).sum(1)


def _expected_bwd(grad, sigma, ks, scale=None):
    """scale[b] * blur^T(grad) in the accumulation dtype."""
    adj = gaussian_blur_adjoint_reference(grad.to(_acc(grad.dtype)), sigma, ks)
    return adj if scale is None else scale.view(-1, 1, 1, 1) * adj


# ---- the launchers, directly ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "sigma"), CASES, ids=str)
def test_fwd_loss_and_bwd(shape, sigma, dtype):
    """blur_mse's kernels: e = blur(x - y) in acc dtype + sumsq, then the scaled adjoint + out_y."""
    ks, acc = _ks(sigma), _acc(dtype)
    taps = _taps(sigma, ks, dtype)
    x, y = _images(shape, dtype, seed=0)
    e = torch.empty(shape, dtype=acc, device=DEVICE)
    sumsq = torch.empty(shape[0], dtype=acc, device=DEVICE)
    triton_blur.blur_fwd(x, y, taps, e, sumsq)
    e_ref, sumsq_ref = _expected_fwd(x, y, sigma, ks)
    _close(e, e_ref, acc)
    _close(sumsq, sumsq_ref, acc)

    scale = torch.linspace(0.5, -2.0, shape[0], dtype=acc, device=DEVICE)
    out_x = torch.empty(shape, dtype=dtype, device=DEVICE)
    out_y = torch.empty(shape, dtype=dtype, device=DEVICE)
    triton_blur.blur_bwd(e, taps, scale, out_x, out_y)
    _close(out_x, _expected_bwd(e, sigma, ks, scale).to(dtype), dtype)
    assert torch.equal(out_y, -out_x)  # negation commutes with rounding


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_blur_and_adjoint_in_input_dtype(dtype):
    """gaussian_blur's kernels: no y, no sumsq, no scale, outputs in the input dtype."""
    shape, sigma = (1, 2, 19, 23), 1.3
    ks = _ks(sigma)
    taps = _taps(sigma, ks, dtype)
    (x,) = _images(shape, dtype, seed=1, n=1)
    out = torch.empty_like(x)
    triton_blur.blur_fwd(x, None, taps, out, None)
    _close(out, gaussian_blur_reference(x, sigma, ks), dtype)
    grad = torch.empty_like(x)
    triton_blur.blur_bwd(x, taps, None, grad, None)
    _close(grad, gaussian_blur_adjoint_reference(x, sigma, ks), dtype)


@pytest.mark.skipif(_ext.extension_error("_C") is not None, reason="C++ CPU kernels not built")
@pytest.mark.skipif(DEVICE != "cpu", reason="compares with the CPU kernels on CPU tensors")
@pytest.mark.parametrize(("shape", "sigma"), [((2, 3, 37, 41), 2.0), ((1, 1, 5, 7), 3.0)], ids=str)
def test_matches_cpu_kernels(shape, sigma):
    """Same arithmetic order as the C++ kernels: float32 results agree to an ulp or so."""
    from ebir_fast.ops import _cpu

    taps = _taps(sigma, _ks(sigma), torch.float32)
    x, y = _images(shape, torch.float32, seed=2)
    results = []
    for backend in (triton_blur, _cpu):
        e = torch.empty(shape)
        sumsq = torch.empty(shape[0])
        backend.blur_fwd(x, y, taps, e, sumsq)
        grad = torch.empty(shape)
        backend.blur_bwd(e, taps, torch.linspace(3.0, -1.0, shape[0]), grad, None)
        results.append((e, sumsq, grad))
    for ours, theirs in zip(*results, strict=True):
        _close(ours, theirs, torch.float32)


def test_many_tiles(monkeypatch):
    """16 x 16 tiles: interior tiles (one preimage), partial edge tiles, per-tile partial sums."""
    monkeypatch.setattr(triton_blur, "_blocks", lambda H, W: (16, 16))
    shape, sigma = (2, 1, 37, 41), 0.8  # R = 3: most tiles never see the border
    ks = _ks(sigma)
    taps = _taps(sigma, ks, torch.float32)
    x, y = _images(shape, torch.float32, seed=3)
    e = torch.empty(shape, device=DEVICE)
    sumsq = torch.empty(shape[0], device=DEVICE)
    triton_blur.blur_fwd(x, y, taps, e, sumsq)
    e_ref, sumsq_ref = _expected_fwd(x, y, sigma, ks)
    _close(e, e_ref, torch.float32)
    _close(sumsq, sumsq_ref, torch.float32)
    grad = torch.empty(shape, device=DEVICE)
    triton_blur.blur_bwd(e, taps, None, grad, None)
    _close(grad, _expected_bwd(e, sigma, ks), torch.float32)


@pytest.mark.parametrize("ks", [1, 41])
def test_kernel_size_extremes(ks):
    """R = 0 is the identity, bit for bit; R = 20 wraps around a 9 x 12 image several times."""
    (x,) = _images((1, 1, 9, 12), torch.float16, seed=4, n=1)
    taps = _taps(2.0, ks, torch.float16)
    out = torch.empty_like(x)
    triton_blur.blur_fwd(x, None, taps, out, None)
    grad = torch.empty_like(x)
    triton_blur.blur_bwd(x, taps, None, grad, None)
    if ks == 1:
        assert torch.equal(out, x)
        assert torch.equal(grad, x)
    else:
        _close(out, gaussian_blur_reference(x, 2.0, ks), torch.float16)
        _close(grad, gaussian_blur_adjoint_reference(x, 2.0, ks), torch.float16)


# ---- memory layouts ------------------------------------------------------------------------

FULL = (2, 2, 25, 31)
SLICE = (slice(None), slice(None), slice(1, None, 2), slice(None, None, 3))
LAYOUTS = {
    "sliced": lambda t: t[SLICE],  # strides in every dimension, offset storage
    "channels-last": lambda t: t.contiguous(memory_format=torch.channels_last),
    "transposed": lambda t: t.transpose(2, 3),
}


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=str)
def test_layouts(layout):
    """Strided inputs and outputs are read and written in place."""
    make = LAYOUTS[layout]
    sigma, ks = 1.2, _ks(1.2)
    taps = _taps(sigma, ks, torch.float32)
    x, y, g = (make(t) for t in _images(FULL, torch.float32, seed=5, n=3))
    assert not x.is_contiguous()
    # Outputs in the same layout, cut from NaN-filled buffers: a stray write would show.
    bufs = [torch.full(FULL, float("nan"), device=DEVICE) for _ in range(2)]
    out, out_y = (make(b) for b in bufs)
    sumsq = torch.empty(x.shape[0], device=DEVICE)
    triton_blur.blur_fwd(x, y, taps, out, sumsq)
    e_ref, sumsq_ref = _expected_fwd(x, y, sigma, ks)
    _close(out, e_ref, torch.float32)
    _close(sumsq, sumsq_ref, torch.float32)
    out_x = torch.empty(x.shape, device=DEVICE)
    scale = torch.tensor([0.25, 4.0], device=DEVICE)
    triton_blur.blur_bwd(g, taps, scale, out_x, out_y)
    _close(out_x, _expected_bwd(g, sigma, ks, scale), torch.float32)
    assert torch.equal(out_y, -out_x)
    if layout == "sliced":
        outside = torch.ones(FULL, dtype=torch.bool, device=DEVICE)
        outside[SLICE] = False
        assert all(b[outside].isnan().all() for b in bufs)


def test_expanded_input():
    """A broadcast (zero-stride) input is read correctly."""
    (row,) = _images((1, 1, 1, 33), torch.float32, seed=6, n=1)
    x = row.expand(2, 3, 17, 33)
    taps = _taps(1.0, _ks(1.0), torch.float32)
    out = torch.empty(x.shape, device=DEVICE)
    triton_blur.blur_fwd(x, None, taps, out, None)
    _close(out, gaussian_blur_reference(x, 1.0, _ks(1.0)), torch.float32)


# ---- properties ----------------------------------------------------------------------------


def test_adjoint_identity():
    """<B x, g> == <x, B^T g> in float64, on an image smaller than the radius."""
    x, g = _images((1, 1, 6, 4), torch.float64, seed=7)
    taps = _taps(2.5, _ks(2.5), torch.float64)
    bx = torch.empty_like(x)
    triton_blur.blur_fwd(x, None, taps, bx, None)
    btg = torch.empty_like(g)
    triton_blur.blur_bwd(g, taps, None, btg, None)
    torch.testing.assert_close((bx * g).sum(), (x * btg).sum(), rtol=1e-13, atol=0.0)


def test_deterministic_and_nan_local():
    """The same inputs give bitwise the same loss; a NaN spreads over its 7 x 7 footprint only."""
    shape = (2, 1, 24, 20)
    x, y = _images(shape, torch.float32, seed=8)
    x[1, 0, 12, 10] = float("nan")
    taps = _taps(1.0, _ks(1.0), torch.float32)  # R = 3
    runs = []
    for _ in range(2):
        e = torch.empty(shape, device=DEVICE)
        sumsq = torch.empty(2, device=DEVICE)
        triton_blur.blur_fwd(x, y, taps, e, sumsq)
        runs.append((e, sumsq))
    (e, sumsq), (e2, sumsq2) = runs
    assert torch.equal(sumsq[0], sumsq2[0])
    assert torch.equal(e[0], e2[0])
    assert not sumsq[0].isnan()
    assert sumsq[1].isnan()
    assert e[1, 0, 9:16, 7:14].isnan().all()
    assert e[1].isnan().sum() == 49


# ---- through the public ops -----------------------------------------------------------------


def test_public_ops():
    """gaussian_blur and blur_mse with backend="triton", forward and backward, against the
    reference ops (tests/ops/test_blur.py covers the other dtypes through the dispatcher)."""
    dtype = torch.float32
    shape, sigma = (2, 2, 13, 17), 1.5
    ks = _ks(sigma)
    x, y, g = _images(shape, dtype, seed=9, n=3)

    xa = x.clone().requires_grad_()
    out = gaussian_blur(xa, sigma, backend="triton")
    assert out.dtype == dtype
    _close(out, gaussian_blur_reference(x, sigma, ks), dtype)
    out.backward(g)
    _close(xa.grad, gaussian_blur_adjoint_reference(g, sigma, ks), dtype)

    for reduction in ("mean", "none"):
        xa, ya = x.clone().requires_grad_(), y.clone().requires_grad_()
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        loss = blur_mse(xa, ya, sigma, reduction=reduction, backend="triton")
        expected = blur_mse_reference(xr, yr, sigma, ks, reduction)
        _close(loss, expected, _acc(dtype))
        weights = torch.tensor([1.0, -3.0], dtype=loss.dtype, device=DEVICE)
        loss.backward(weights if reduction == "none" else None)
        expected.backward(weights if reduction == "none" else None)
        assert xa.grad.dtype == ya.grad.dtype == dtype
        _close(xa.grad, xr.grad, dtype)
        _close(ya.grad, yr.grad, dtype)
