"""Launchers for the CUDA kernels (ebir_fast._C_cuda), on the current stream of the tensors' device.

The kernels need a workspace (the intermediate of the two separable passes and the partial sums);
it comes from torch's caching allocator so it is reused across calls.
"""

from __future__ import annotations

import torch

from ebir_fast._ext import DTYPE_CODES, extension
from ebir_fast.ops._cpu import shape, view


def _workspace(t: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    nbytes = extension("_C_cuda").workspace_bytes(shape(t, taps), DTYPE_CODES[taps.dtype])
    return torch.empty(nbytes, dtype=torch.uint8, device=t.device)


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def blur_fwd(
    x: torch.Tensor,  # [B, C, H, W]
    y: torch.Tensor | None,  # [B, C, H, W]
    taps: torch.Tensor,  # [2R + 1], accumulation dtype, on x's device
    out: torch.Tensor,  # [B, C, H, W], written
    sumsq: torch.Tensor | None,  # [B], accumulation dtype, written
) -> None:
    """out = blur(x - y); sumsq[b] = sum(out[b]^2), computed before out is rounded."""
    workspace = _workspace(x, taps)
    with torch.cuda.device(x.device):
        extension("_C_cuda").blur_fwd(
            shape(x, taps),
            view(x),
            view(y),
            taps.data_ptr(),
            view(out),
            0 if sumsq is None else sumsq.data_ptr(),
            workspace.data_ptr(),
            _stream(x),
        )


def blur_bwd(
    grad: torch.Tensor,  # [B, C, H, W]
    taps: torch.Tensor,  # [2R + 1], accumulation dtype, on grad's device
    scale: torch.Tensor | None,  # [B], accumulation dtype
    out_x: torch.Tensor,  # [B, C, H, W], written
    out_y: torch.Tensor | None,  # [B, C, H, W], written
) -> None:
    """out_x = scale[b] * blur^T(grad); out_y = -out_x."""
    workspace = _workspace(grad, taps)
    with torch.cuda.device(grad.device):
        extension("_C_cuda").blur_bwd(
            shape(grad, taps),
            view(grad),
            taps.data_ptr(),
            0 if scale is None else scale.data_ptr(),
            view(out_x),
            view(out_y),
            workspace.data_ptr(),
            _stream(grad),
        )


def filter2d_fwd(
    x: torch.Tensor,  # [B, C, H, W]
    kernels: torch.Tensor,  # [B, K, K], accumulation dtype, contiguous, on x's device
    sizes: torch.Tensor,  # [B, 2] int64, contiguous, on x's device
    out: torch.Tensor,  # [B, C, H, W], written
) -> None:
    """out = per-sample correlation of x, mirror border at each extent, zero outside it."""
    from ebir_fast.ops._cpu import _filter2d_shape

    module = extension("_C_cuda")
    b = x.shape[0]
    workspace = torch.empty(module.filter2d_workspace_bytes(b), dtype=torch.uint8, device=x.device)
    with torch.cuda.device(x.device):
        module.filter2d_fwd(
            _filter2d_shape(x, kernels),
            kernels.data_ptr(),
            sizes.data_ptr(),
            view(x),
            view(out),
            workspace.data_ptr(),
            _stream(x),
        )


def filter2d_bwd(
    grad: torch.Tensor,  # [B, C, H, W]
    x: torch.Tensor | None,  # [B, C, H, W], needed for grad_k
    kernels: torch.Tensor,  # [B, K, K], accumulation dtype, contiguous, on grad's device
    sizes: torch.Tensor,  # [B, 2] int64, contiguous, on grad's device
    grad_x: torch.Tensor | None,  # [B, C, H, W], written
    grad_k: torch.Tensor | None,  # [B, K, K], accumulation dtype, contiguous, written
) -> None:
    """grad_x (the adjoint of filter2d_fwd applied to grad) and grad_k, each when given."""
    from ebir_fast.ops._cpu import _filter2d_shape

    module = extension("_C_cuda")
    workspace = torch.empty(
        module.filter2d_workspace_bytes(grad.shape[0]), dtype=torch.uint8, device=grad.device
    )
    with torch.cuda.device(grad.device):
        module.filter2d_bwd(
            _filter2d_shape(grad, kernels),
            kernels.data_ptr(),
            sizes.data_ptr(),
            view(x),
            view(grad),
            view(grad_x),
            0 if grad_k is None else grad_k.data_ptr(),
            workspace.data_ptr(),
            _stream(grad),
        )


def jpeg_fwd(
    x: torch.Tensor,  # [B, 3, H, W]
    tables: torch.Tensor,  # [B, 2, 8, 8], accumulation dtype, contiguous, on x's device
    sizes: torch.Tensor,  # [B, 2] int64, contiguous, on x's device
    out: torch.Tensor,  # [B, 3, H, W], written inside the extents
    pass_mask: torch.Tensor | None,  # [B, 3, H, W] uint8, contiguous, written inside the extents
) -> None:
    """The JPEG round trip of every sample's extent, and where the decoder's clamp passes."""
    from ebir_fast.ops.reference import dct_matrix

    b, _, h, w = x.shape
    dct = dct_matrix(tables.dtype, x.device).contiguous()
    with torch.cuda.device(x.device):
        extension("_C_cuda").jpeg_fwd(
            (b, h, w, DTYPE_CODES[tables.dtype]),
            tables.data_ptr(),
            sizes.data_ptr(),
            view(x),
            view(out),
            0 if pass_mask is None else pass_mask.data_ptr(),
            dct.data_ptr(),
            _stream(x),
        )


def add_noise(
    args: tuple,  # NoiseArgs pointers (ebir_fast.ops.noise._native_args), device memory
    x: torch.Tensor,  # [B, C, H, W]
    out: torch.Tensor,  # [B, C, H, W], written
    pass_mask: torch.Tensor | None,  # [B, C, H, W] uint8, contiguous, written
) -> None:
    """out = clamp(x + noise, 0, 1) inside the extents, 0 outside (csrc/include/ebir/noise.h)."""
    mask = 0 if pass_mask is None else pass_mask.data_ptr()
    with torch.cuda.device(x.device):
        extension("_C_cuda").add_noise(args, view(x), view(out), mask, _stream(x))


def noise_level_histogram(
    args: tuple,  # NoiseArgs pointers, device memory
    x: torch.Tensor,  # [B, C, H, W]
    hist: torch.Tensor,  # [B, 256] int64 on x's device, written
) -> None:
    """Per-sample histogram of the Poisson samples' 8-bit levels (luma for gray samples)."""
    with torch.cuda.device(x.device):
        extension("_C_cuda").noise_level_histogram(args, view(x), hist.data_ptr(), _stream(x))
