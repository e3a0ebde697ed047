"""Shared by the ops tests: which fast backends can run here, and the per-dtype tolerances."""

from __future__ import annotations

import pytest
import torch

from ebir_fast.ops import available_backends

#: Fast backends compared against the reference. "cuda" never runs on these machines; its kernels
#: are checked through the CPU emulation in test_cuda_build.py.
FAST_BACKENDS = ("cpu", "triton")

#: Tolerances against the reference, relative to the largest magnitude of the expected tensor.
#: Both sides accumulate in float32 (float64 for float64), so the budget is the output rounding:
#: a few ulps of the dtype.
TOLERANCES = {
    torch.float32: 2e-6,
    torch.float64: 1e-13,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}


def fast_backend_params() -> list:
    """One pytest param per fast backend, skipped with the dispatcher's reason when unavailable."""
    status = available_backends("cpu")
    return [
        pytest.param(
            name,
            id=name,
            marks=pytest.mark.skipif(status[name] != "available", reason=status[name]),
        )
        for name in FAST_BACKENDS
    ]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """|actual - expected| <= tol(dtype) * max|expected| elementwise, NaNs in the same places."""
    assert actual.shape == expected.shape
    a, e = actual.detach().double(), expected.detach().double()
    scale = e.abs().max().clamp_min(1e-30)
    torch.testing.assert_close(
        a, e, rtol=0.0, atol=float(TOLERANCES[dtype] * scale), equal_nan=True
    )


def ragged_sizes(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:  # [B, 2] int64
    """Valid (h, w) per sample: the first full-size, the others random (1-pixel ones included)."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.stack(
        [torch.randint(1, h + 1, (b,), generator=g), torch.randint(1, w + 1, (b,), generator=g)], 1
    )
    sizes[0] = torch.tensor([h, w])
    return sizes


def cuda_module_or_skip():
    """ebir_fast._C_cuda, or a skip with the reason (a failure under EBIR_EXPECT_CUDA_BUILD=1)."""
    import os

    from ebir_fast._ext import extension, extension_error

    reason = extension_error("_C_cuda")
    if reason is not None:
        if os.environ.get("EBIR_EXPECT_CUDA_BUILD") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return extension("_C_cuda")
