"""gaussian_blur and blur_mse: every fast backend against the reference, forward and backward."""

from __future__ import annotations

import math

import pytest
import torch

from ebir_fast.ops import blur_mse, gaussian_blur, gaussian_taps
from ebir_fast.ops.reference import (
    blur_mse_reference,
    gaussian_blur_adjoint_reference,
    gaussian_blur_reference,
)
from tests.ops.helpers import assert_close, fast_backend_params

BACKENDS = fast_backend_params()
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

# (shape, sigma): odd sizes, one channel, batch 1, and images smaller than the kernel radius.
CASES = [
    ((2, 3, 37, 129), 2.0),
    ((1, 1, 37, 129), 0.8),
    ((1, 3, 5, 7), 3.0),  # radius 9 > H, W: the reflection repeats
    ((1, 1, 1, 9), 1.0),  # a single row
    ((3, 2, 24, 1), 1.5),  # a single column
]


def _images(shape, dtype, seed=0, n=2):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype) for _ in range(n)]


def _kernel_size(sigma: float) -> int:
    return 2 * math.ceil(3 * sigma) + 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "sigma"), CASES, ids=str)
class TestAgainstReference:
    def test_gaussian_blur_forward(self, backend, dtype, shape, sigma):
        (x,) = _images(shape, dtype, n=1)
        out = gaussian_blur(x, sigma, backend=backend)
        assert out.dtype == dtype
        assert_close(out, gaussian_blur_reference(x, sigma, _kernel_size(sigma)), dtype)

    def test_gaussian_blur_backward(self, backend, dtype, shape, sigma):
        x, g = _images(shape, dtype, seed=1)
        x.requires_grad_()
        gaussian_blur(x, sigma, backend=backend).backward(g)
        assert x.grad.dtype == dtype
        expected = gaussian_blur_adjoint_reference(g, sigma, _kernel_size(sigma))
        assert_close(x.grad, expected, dtype)

    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_blur_mse(self, backend, dtype, shape, sigma, reduction):
        x, y = _images(shape, dtype, seed=2)
        xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
        x.requires_grad_()
        y.requires_grad_()
        loss = blur_mse(x, y, sigma, reduction=reduction, backend=backend)
        expected = blur_mse_reference(xr, yr, sigma, _kernel_size(sigma), reduction)
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        assert loss.dtype == expected.dtype == acc
        assert loss.shape == expected.shape == ((shape[0],) if reduction == "none" else ())
        # The loss comes from unrounded values on both sides: accumulation-precision tolerance.
        assert_close(loss, expected, acc)
        weights = torch.arange(1.0, shape[0] + 1, dtype=acc) if reduction == "none" else None
        loss.backward(weights)
        expected.backward(weights)
        assert x.grad.dtype == y.grad.dtype == dtype
        assert_close(x.grad, xr.grad, dtype)
        assert_close(y.grad, yr.grad, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
class TestLayouts:
    @pytest.mark.parametrize(
        "make",
        [
            lambda t: t[:, :, :, ::2],  # strided width
            lambda t: t.transpose(2, 3),  # H and W swapped in memory
            lambda t: t.contiguous(memory_format=torch.channels_last),
            lambda t: t[:, 1:],  # offset storage
        ],
        ids=["stride-w", "transposed", "channels-last", "offset"],
    )
    def test_views(self, backend, make):
        x, y = (make(t) for t in _images((2, 3, 30, 42), torch.float32, seed=3))
        assert not x.is_contiguous()
        ks = _kernel_size(1.3)
        assert_close(
            gaussian_blur(x, 1.3, backend=backend),
            gaussian_blur_reference(x, 1.3, ks),
            torch.float32,
        )
        xg = x.detach().clone().requires_grad_()
        xr = x.detach().clone().requires_grad_()
        blur_mse(xg, y, 1.3, backend=backend).backward()
        blur_mse_reference(xr, y, 1.3, ks).backward()
        assert_close(xg.grad, xr.grad, torch.float32)

    def test_expanded_input(self, backend):
        # A zero-stride (broadcast) input is read correctly and never written.
        row = torch.rand(1, 1, 1, 33)
        x = row.expand(2, 3, 17, 33)
        assert_close(
            gaussian_blur(x, 1.0, backend=backend),
            gaussian_blur_reference(x, 1.0, 7),
            torch.float32,
        )

    def test_explicit_kernel_size(self, backend):
        (x,) = _images((1, 2, 20, 21), torch.float32, n=1)
        for ks in (1, 3, 5, 41):
            assert_close(
                gaussian_blur(x, 2.0, ks, backend=backend),
                gaussian_blur_reference(x, 2.0, ks),
                torch.float32,
            )

    def test_kernel_size_one_is_identity(self, backend):
        # Every finite float16 value survives the load and store conversions bit for bit.
        bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
        x = bits.view(torch.float16)
        x = x[torch.isfinite(x)].reshape(1, 1, -1, 2)[:, :, : 2**14]
        out = gaussian_blur(x, 1.0, 1, backend=backend)
        assert torch.equal(out.view(torch.int16), x.view(torch.int16))

    def test_nan_propagates(self, backend):
        x, y = _images((1, 1, 16, 16), torch.float32, seed=4)
        x[0, 0, 8, 8] = float("nan")
        out = gaussian_blur(x, 1.0, backend=backend)
        assert out[0, 0, 5:12, 5:12].isnan().all()
        assert not out[0, 0, 0, 0].isnan()
        assert blur_mse(x, y, 1.0, backend=backend).isnan()

    def test_deterministic(self, backend):
        x, y = _images((2, 3, 40, 50), torch.float32, seed=5)
        first = blur_mse(x, y, 2.0, reduction="none", backend=backend)
        assert torch.equal(first, blur_mse(x, y, 2.0, reduction="none", backend=backend))


def _gradcheck_kwargs(backend: str) -> dict:
    # Under the Triton interpreter every kernel launch costs ~0.1 s and a full gradcheck perturbs
    # each input element: check random directional derivatives instead (fast_mode).
    return {"fast_mode": backend == "triton"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("shape", "sigma"), [((2, 2, 9, 11), 1.2), ((1, 1, 3, 4), 2.0)], ids=str)
def test_gradcheck(backend, shape, sigma):
    x, y = (t.requires_grad_() for t in _images(shape, torch.float64, seed=6))
    kw = _gradcheck_kwargs(backend)
    torch.autograd.gradcheck(lambda a: gaussian_blur(a, sigma, backend=backend), (x,), **kw)
    for reduction in ("mean", "sum", "none"):
        torch.autograd.gradcheck(
            lambda a, b, r=reduction: blur_mse(a, b, sigma, reduction=r, backend=backend),
            (x, y),
            **kw,
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_gaussian_blur_gradgradcheck(backend):
    # The blur and its adjoint are each other's backward, so second derivatives work too.
    (x,) = (t.requires_grad_() for t in _images((1, 2, 7, 8), torch.float64, n=1))
    torch.autograd.gradgradcheck(
        lambda a: gaussian_blur(a, 1.0, backend=backend), (x,), **_gradcheck_kwargs(backend)
    )


def test_cpu_threads_do_not_change_results():
    # The CPU kernels reduce per row in a fixed order: bitwise the same for any thread count.
    pytest.importorskip("ebir_fast._C")
    x, y = _images((1, 3, 200, 64), torch.float32, seed=7)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(blur_mse(x, y, 1.5, reduction="none", backend="cpu"))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], r) for r in results[1:])


class TestReference:
    """The reference itself against independent implementations."""

    @pytest.mark.parametrize(("shape", "sigma"), [((2, 3, 37, 129), 2.0), ((1, 2, 16, 9), 1.0)])
    def test_matches_kornia(self, shape, sigma):
        kornia = pytest.importorskip("kornia")
        (x,) = _images(shape, torch.float32, n=1)
        ks = _kernel_size(sigma)
        expected = kornia.filters.gaussian_blur2d(x, ks, (sigma, sigma), border_type="reflect")
        assert_close(gaussian_blur_reference(x, sigma, ks), expected, torch.float32)

    @pytest.mark.parametrize("shape", [(1, 1, 5, 7), (1, 1, 1, 9), (1, 1, 2, 3), (1, 2, 30, 4)])
    def test_mirror_border_matches_scipy(self, shape):
        ndimage = pytest.importorskip("scipy.ndimage")
        (x,) = _images(shape, torch.float64, n=1)
        sigma, ks = 3.0, 19
        taps = gaussian_taps(sigma, ks, torch.float64).numpy()
        expected = ndimage.correlate1d(x.numpy(), taps, axis=2, mode="mirror")
        expected = ndimage.correlate1d(expected, taps, axis=3, mode="mirror")
        assert_close(
            gaussian_blur_reference(x, sigma, ks), torch.from_numpy(expected), torch.float64
        )

    def test_adjoint_identity(self):
        # <B x, g> == <x, B^T g>, and B^T differs from B at the border (it is not a plain blur).
        x, g = _images((1, 1, 12, 13), torch.float64, seed=8)
        lhs = (gaussian_blur_reference(x, 1.5, 11) * g).sum()
        rhs = (x * gaussian_blur_adjoint_reference(g, 1.5, 11)).sum()
        assert torch.allclose(lhs, rhs, rtol=1e-12, atol=0)
        assert not torch.allclose(
            gaussian_blur_adjoint_reference(g, 1.5, 11), gaussian_blur_reference(g, 1.5, 11)
        )

    def test_taps(self):
        taps = gaussian_taps(2.0, 13, torch.float64)
        assert taps.shape == (13,)
        assert torch.allclose(taps.sum(), torch.tensor(1.0, dtype=torch.float64))
        assert torch.equal(taps, taps.flip(0))
        assert taps.argmax() == 6
        t = torch.arange(-6, 7, dtype=torch.float64)
        assert torch.allclose(taps[0] / taps[6], torch.exp(-(t[0] ** 2) / 8))
