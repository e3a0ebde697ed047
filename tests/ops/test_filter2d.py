"""filter2d: every backend against the reference, forward and backward, on ragged batches."""

from __future__ import annotations

import pytest
import torch

from ebir_fast.ops import MAX_FILTER_SIZE, filter2d
from ebir_fast.ops.filter2d import FILTER2D_BACKENDS
from ebir_fast.ops.reference import filter2d_reference
from tests.ops.helpers import assert_close, fast_backend_params, ragged_sizes

BACKENDS = [p for p in fast_backend_params() if p.values[0] in FILTER2D_BACKENDS]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

# (B, C, H, W, K, support): odd sizes, a kernel larger than the image, 1-pixel images.
CASES = [
    ((3, 3, 37, 29), 21, 13),
    ((2, 1, 5, 9), 21, 21),
    ((2, 2, 1, 1), 5, 5),
    ((1, 3, 40, 70), 9, 3),
    ((4, 2, 16, 1), 7, 7),
]


def _kernels(b: int, k: int, support: int, dtype, seed: int = 0) -> torch.Tensor:
    """[B, K, K]: random (signed) taps inside a centred support, zero rings outside."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(b, k, k, dtype=torch.float64)
    lo = (k - support) // 2
    out[:, lo : lo + support, lo : lo + support] = torch.randn(b, support, support, generator=g)
    return (out / support).to(dtype)


_sizes = ragged_sizes


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    return x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "k", "support"), CASES)
def test_forward_matches_reference(backend, dtype, shape, k, support):
    b, _c, h, w = shape
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    kernels = _kernels(b, k, support, torch.float32 if dtype != torch.float64 else dtype)
    sizes = _sizes(b, h, w)
    expected = filter2d_reference(x, kernels, sizes)
    assert_close(filter2d(x, kernels, sizes, backend=backend), expected, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_any_layout(backend, layout):
    b, c, h, w = 2, 3, 23, 31
    x = torch.rand(b, c, h, w)
    kernels, sizes = _kernels(b, 7, 5, torch.float32), _sizes(b, h, w)
    out = filter2d(_layout(x, layout), kernels, sizes, backend=backend)
    assert_close(out, filter2d_reference(x, kernels, sizes), torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("shape", "k", "support"), CASES)
def test_backward_matches_reference(backend, shape, k, support):
    b, _c, h, w = shape
    x = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    kernels = _kernels(b, k, support, torch.float64).requires_grad_()
    sizes = _sizes(b, h, w)
    g = torch.randn(shape, dtype=torch.float64)
    got = torch.autograd.grad(filter2d(x, kernels, sizes, backend=backend), (x, kernels), g)
    want = torch.autograd.grad(filter2d_reference(x, kernels, sizes), (x, kernels), g)
    for a, e in zip(got, want, strict=True):
        assert_close(a, e, torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_backward_runs_its_own_kernels(backend, dtype, monkeypatch):
    """The fast backward never falls back to the reference; half gradients come back rounded
    once from the float32 accumulation, in the input's dtype."""
    import importlib

    mod = importlib.import_module("ebir_fast.ops.filter2d")  # the package re-exports the function

    def refuse(*args, **kwargs):
        raise AssertionError("the reference ran")

    b, c, h, w = 3, 2, 19, 26
    x64 = torch.rand(b, c, h, w, dtype=torch.float64)
    k64 = _kernels(b, 9, 7, torch.float64)
    sizes = torch.tensor([[19, 26], [4, 3], [11, 1]])
    g64 = torch.randn(b, c, h, w, dtype=torch.float64)
    want = torch.autograd.grad(
        filter2d_reference(x64.requires_grad_(), k64.requires_grad_(), sizes), (x64, k64), g64
    )
    x = x64.detach().to(dtype).requires_grad_()
    kernels = k64.detach().float().requires_grad_()
    monkeypatch.setattr(mod, "filter2d_reference", refuse)
    got = torch.autograd.grad(
        filter2d(x, kernels, sizes, backend=backend), (x, kernels), g64.to(dtype)
    )
    assert got[0].dtype == dtype
    assert got[1].dtype == torch.float32
    # The reference sees the rounded inputs only through x; compare against float64 with the
    # tolerance of the input's dtype.
    assert_close(got[0], want[0].to(dtype), dtype)
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(got[1].double(), want[1], rtol=tol, atol=tol * want[1].abs().max())


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_gradcheck(backend):
    # Every numerical-Jacobian column is a launch, which the Triton interpreter makes slow: keep
    # the problem tiny there.
    b, c, h, w, k = (1, 1, 4, 3, 3) if backend == "triton" else (2, 2, 6, 5, 5)
    x = torch.rand(b, c, h, w, dtype=torch.float64, requires_grad=True)
    kernels = _kernels(b, k, k, torch.float64).requires_grad_()
    sizes = torch.tensor([[h, w], [3, 2]])[:b]
    assert torch.autograd.gradcheck(
        lambda a, kk: filter2d(a, kk, sizes, backend=backend), (x, kernels)
    )


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_only_x_or_only_kernels_need_gradients(backend):
    x = torch.rand(2, 3, 9, 8, requires_grad=True)
    kernels = _kernels(2, 5, 3, torch.float32)
    filter2d(x, kernels, backend=backend).sum().backward()
    assert x.grad is not None
    assert bool(x.grad.abs().sum() > 0)
    kernels.requires_grad_()
    (grad_k,) = torch.autograd.grad(filter2d(x.detach(), kernels, backend=backend).sum(), kernels)
    assert grad_k.shape == kernels.shape


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_semantics(backend):
    b, c, h, w = 3, 2, 12, 17
    x = torch.rand(b, c, h, w)
    sizes = torch.tensor([[12, 17], [5, 9], [1, 1]])
    delta = torch.zeros(b, 21, 21)
    delta[:, 10, 10] = 1.0
    out = filter2d(x, delta, sizes, backend=backend)
    for i, (hh, ww) in enumerate(sizes.tolist()):
        assert torch.equal(out[i, :, :hh, :ww], x[i, :, :hh, :ww])  # a delta is the identity
        assert out[i, :, hh:].abs().sum() == 0
        assert out[i, :, :, ww:].abs().sum() == 0
    # Zero rings change nothing: a 5x5 kernel zero-padded to 21x21 gives the 5x5 result.
    small = _kernels(b, 5, 5, torch.float32)
    padded = torch.nn.functional.pad(small, (8, 8, 8, 8))
    assert_close(
        filter2d(x, padded, sizes, backend=backend),
        filter2d(x, small, sizes, backend=backend),
        torch.float32,
    )
    # A 1-pixel extent is constant under any normalised kernel.
    box = torch.full((b, 7, 7), 1 / 49)
    assert torch.allclose(filter2d(x, box, sizes, backend=backend)[2, :, 0, 0], x[2, :, 0, 0])


def test_auto_picks_the_cpu_kernel_on_cpu_tensors():
    from ebir_fast.ops import available_backends
    from ebir_fast.ops._dispatch import resolve_backend
    from ebir_fast.ops.filter2d import FILTER2D_BACKENDS

    if available_backends("cpu")["cpu"] != "available":
        pytest.skip("the compiled CPU kernels are not built")
    assert resolve_backend("auto", "cpu", FILTER2D_BACKENDS) == "cpu"


@pytest.mark.parametrize(
    ("kernels", "sizes", "match"),
    [
        (torch.zeros(2, 4, 4), None, "odd size"),
        (torch.zeros(2, MAX_FILTER_SIZE + 2, MAX_FILTER_SIZE + 2), None, "odd size"),
        (torch.zeros(3, 5, 5), None, r"kernels: expected shape \[2, K, K\]"),
        (torch.zeros(2, 5, 3), None, "kernels: expected shape"),
        (torch.zeros(2, 5, 5, dtype=torch.int64), None, "floating"),
        (torch.zeros(2, 5, 5), torch.tensor([[8, 8], [0, 3]]), "sizes: expected 1 <= h"),
        (torch.zeros(2, 5, 5), torch.tensor([[8, 8], [9, 3]]), "sizes: expected 1 <= h"),
        (torch.zeros(2, 5, 5), torch.tensor([[8.0, 8.0], [2.0, 3.0]]), "integer"),
        (torch.zeros(2, 5, 5), torch.tensor([8, 8]), r"sizes: expected shape \[2, 2\]"),
    ],
)
def test_errors_name_the_argument(kernels, sizes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        filter2d(torch.rand(2, 3, 8, 8), kernels, sizes)


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_separable_kernels(backend):
    # Rank-one kernels (a Gaussian, a box, an off-centre outer product) may run as two 1D passes;
    # a rank-one kernel with one perturbed tap may not. All agree with the 2D reference.
    t = torch.arange(-6, 7, dtype=torch.float64)
    g = torch.exp(-(t**2) / 8.0)
    g = g / g.sum()
    u = torch.linspace(-1, 2, 13, dtype=torch.float64)
    bent = torch.outer(g, g).clone()
    bent[3, 4] += 1e-3
    kernels = torch.stack(
        [torch.outer(g, g), torch.full((13, 13), 1 / 169.0), torch.outer(u, g), bent]
    ).float()
    x = torch.rand(4, 3, 29, 35, generator=torch.Generator().manual_seed(2))
    sizes = torch.tensor([[29, 35], [10, 35], [29, 3], [7, 7]])
    got = filter2d(x, kernels, sizes, backend=backend)
    assert_close(got, filter2d_reference(x, kernels, sizes), torch.float32)
