"""The CUDA filter2d kernel without a GPU: its arithmetic through the CPU emulation, and the
compiled module's entry points (a missing CUDA module fails under EBIR_EXPECT_CUDA_BUILD=1)."""

from __future__ import annotations

import pytest
import torch

from ebir_fast._ext import extension, extension_error
from ebir_fast.ops import _cpu
from ebir_fast.ops.reference import filter2d_reference
from tests.ops.helpers import assert_close, cuda_module_or_skip
from tests.ops.test_filter2d import CASES, _kernels, _layout, _sizes

pytestmark = pytest.mark.skipif(extension_error("_C") is not None, reason="no CPU core")


def emulated(x, kernels, sizes):
    out = torch.full_like(x, float("nan"))
    extension("_C").filter2d_fwd_emulated(
        _cpu._filter2d_shape(x, kernels),
        kernels.data_ptr(),
        sizes.data_ptr(),
        _cpu.view(x),
        _cpu.view(out),
    )
    return out


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str
)
@pytest.mark.parametrize(("shape", "k", "support"), CASES)
def test_emulation_matches_reference(dtype, shape, k, support):
    b, _, h, w = shape
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3)).to(dtype)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    kernels, sizes = _kernels(b, k, support, acc).contiguous(), _sizes(b, h, w)
    assert_close(emulated(x, kernels, sizes), filter2d_reference(x, kernels, sizes), dtype)


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_emulation_any_layout(layout):
    x = torch.rand(2, 3, 19, 23)
    kernels, sizes = _kernels(2, 9, 7, torch.float32).contiguous(), _sizes(2, 19, 23)
    assert_close(
        emulated(_layout(x, layout), kernels, sizes),
        filter2d_reference(x, kernels, sizes),
        torch.float32,
    )


def test_cuda_module_has_the_kernel():
    module = cuda_module_or_skip()
    assert hasattr(module, "filter2d_fwd")
    assert hasattr(module, "filter2d_bwd")
    assert module.filter2d_workspace_bytes(8) == 32


def emulated_bwd(x, kernels, sizes, grad):
    grad_x = torch.full_like(grad, float("nan"))
    grad_k = torch.full_like(kernels, float("nan"))
    extension("_C").filter2d_bwd_emulated(
        _cpu._filter2d_shape(grad, kernels),
        kernels.data_ptr(),
        sizes.data_ptr(),
        _cpu.view(x),
        _cpu.view(grad),
        _cpu.view(grad_x),
        grad_k.data_ptr(),
    )
    return grad_x, grad_k


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(("shape", "k", "support"), CASES)
def test_emulated_backward_matches_reference(dtype, shape, k, support):
    b, _, h, w = shape
    x = torch.rand(shape, generator=torch.Generator().manual_seed(4), dtype=dtype)
    kernels = _kernels(b, k, support, dtype).contiguous()
    sizes = _sizes(b, h, w)
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
    xs, ks = x.clone().requires_grad_(), kernels.clone().requires_grad_()
    want = torch.autograd.grad(filter2d_reference(xs, ks, sizes), (xs, ks), grad)
    for got, expected in zip(emulated_bwd(x, kernels, sizes, grad), want, strict=True):
        assert_close(got, expected, dtype)
