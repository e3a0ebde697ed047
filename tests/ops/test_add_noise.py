"""add_noise: the C++ kernel reproduces the counter-stream reference; the normal quantile."""

from __future__ import annotations

import pytest
import torch

from ebir_fast.ops import add_noise
from ebir_fast.ops.noise import NOISE_BACKENDS
from ebir_fast.ops.reference import normal_quantile
from tests.ops.helpers import fast_backend_params

BACKENDS = [p for p in fast_backend_params() if p.values[0] in NOISE_BACKENDS]


def _case(dtype=torch.float32):
    x = torch.rand(5, 3, 13, 17, generator=torch.Generator().manual_seed(0)).to(dtype)
    return dict(
        x=x,
        sizes=torch.tensor([[13, 17], [5, 9], [13, 17], [1, 1], [13, 2]]),
        kind=torch.tensor([1, 2, 2, 1, 0]),
        sigma=torch.tensor([0.1, 0.2, 0.1, 0.3, 0.5], dtype=torch.float64),
        gray=torch.tensor([False, True, False, True, False]),
        scale=torch.tensor([1.0, 2.0, 0.5, 1.0, 1.0], dtype=torch.float64),
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
def test_kernel_reproduces_the_reference(backend, dtype):
    c = _case(dtype)
    args = (c["x"], c["sizes"], c["kind"], c["sigma"], c["gray"], c["scale"])
    got = add_noise(*args, seed=7, backend=backend)
    want = add_noise(*args, seed=7, backend="reference")
    assert got.dtype == dtype
    if dtype == torch.float16:  # the kernel rounds once, the reference after every operation
        torch.testing.assert_close(got, want, rtol=0, atol=2e-3)
    else:
        assert torch.equal(got, want)


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_semantics(backend):
    c = _case()
    args = (c["x"], c["sizes"], c["kind"], c["sigma"], c["gray"], c["scale"])
    y = add_noise(*args, seed=1, backend=backend)
    assert torch.equal(y, add_noise(*args, seed=1, backend=backend))  # replay
    assert not torch.equal(y, add_noise(*args, seed=2, backend=backend))
    assert y.min() >= 0
    assert y.max() <= 1
    assert y[1, :, 5:].abs().sum() == 0  # zero outside the extent
    assert y[4, :, :, 2:].abs().sum() == 0
    assert torch.equal(y[4, :, :, :2], c["x"][4, :, :, :2])  # kind 0: unchanged
    n = y[3, :, 0, 0] - c["x"][3, :, 0, 0]
    assert torch.allclose(n, n[0].expand(3)) or bool(
        ((y[3, :, 0, 0] == 0) | (y[3, :, 0, 0] == 1)).any()
    )


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_same_draw_with_any_thread_count(backend):
    c = _case()
    args = (c["x"], c["sizes"], c["kind"], c["sigma"], c["gray"], c["scale"])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = add_noise(*args, seed=4, backend=backend)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, add_noise(*args, seed=4, backend=backend))


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_gradient_passes_where_the_clamp_does(backend):
    c = _case(torch.float64)
    x = (c["x"] * 0.5 + 0.25).requires_grad_()
    y = add_noise(
        x, c["sizes"], c["kind"], c["sigma"], c["gray"], c["scale"], seed=3, backend=backend
    )
    (grad,) = torch.autograd.grad(y.sum(), x)
    inside = (y > 0) & (y < 1)
    assert torch.equal(grad[inside], torch.ones_like(grad[inside]))
    assert grad[1, :, 5:].abs().sum() == 0


def test_normal_quantile_matches_scipy():
    special = pytest.importorskip("scipy.special")
    p = torch.cat(
        [
            torch.rand(10_000, dtype=torch.float64),
            10.0 ** -torch.arange(1, 300, 7.0, dtype=torch.float64),
        ]
    )
    p = torch.cat([p, 1 - 10.0 ** -torch.arange(1, 16, 0.5, dtype=torch.float64)])
    want = torch.from_numpy(special.ndtri(p.numpy()))
    torch.testing.assert_close(normal_quantile(p), want, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"kind": torch.tensor([1, 2, 3, 0, 0])}, "kind: expected 0"),
        ({"kind": torch.tensor([1, 2])}, r"kind: expected a \[5\] tensor"),
        (
            {"sigma": torch.tensor([0.1, -1.0, 0.0, 0.0, 0.0], dtype=torch.float64)},
            "sigma: expected finite",
        ),
        ({"scale": torch.full((5,), float("nan"), dtype=torch.float64)}, "scale: expected finite"),
        ({"x": torch.rand(5, 2, 13, 17)}, "gray: gray noise needs 3"),
    ],
)
def test_errors_name_the_argument(change, match):
    c = {**_case(), **change}
    with pytest.raises(ValueError, match=match):
        add_noise(c["x"], c["sizes"], c["kind"], c["sigma"], c["gray"], c["scale"], seed=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_cuda_emulation_reproduces_the_reference(dtype):
    from ebir_fast._ext import extension, extension_error
    from ebir_fast.ops import _cpu
    from ebir_fast.ops.noise import _native_args
    from ebir_fast.ops.reference import noise_levels, noise_vals

    if extension_error("_C"):
        pytest.skip(extension_error("_C"))
    c = _case(dtype)
    levels = noise_levels(c["x"], c["gray"])
    vals = noise_vals(levels, c["sizes"], c["gray"])
    vals = torch.where(c["kind"] == 2, vals, torch.ones_like(vals))
    kind, gray = c["kind"].to(torch.int32), c["gray"].to(torch.uint8)
    args, _keep = _native_args(c["x"], c["sizes"], kind, gray, c["sigma"], c["scale"], vals, 7)
    out = torch.full_like(c["x"], float("nan"))
    extension("_C").add_noise_emulated(args, _cpu.view(c["x"]), _cpu.view(out), 0)
    want = add_noise(c["x"], c["sizes"], c["kind"], c["sigma"], c["gray"], c["scale"], seed=7,
                     backend="reference")  # fmt: skip
    assert torch.equal(out, want)


def test_cuda_module_has_the_kernels():
    from tests.ops.helpers import cuda_module_or_skip

    module = cuda_module_or_skip()
    assert hasattr(module, "add_noise")
    assert hasattr(module, "noise_level_histogram")
