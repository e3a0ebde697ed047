"""Launchers for the C++ CPU kernels (ebir_fast._C): torch tensors in, raw pointers out."""

from __future__ import annotations

import torch

from ebir_fast._ext import DTYPE_CODES, extension, extension_error

_NONE = (0, 0, (0, 0, 0, 0))

#: Outputs from this size up are put on huge pages (see :func:`empty_like`).
HUGE_PAGE_MIN_BYTES = 4 << 20


def empty_like(x: torch.Tensor, *size: int) -> torch.Tensor:
    """``torch.empty_like(x)`` (``x.new_empty(size)`` when ``size`` is given), advised onto 2 MiB
    pages when it is a large CPU block.

    glibc maps a block above its mmap threshold (at most 32 MiB) afresh on every allocation, and a
    batch of images is that large: writing it then costs one page fault per 4 KiB, which measured
    ~40% of a degradation pipeline's time. With ``MADV_HUGEPAGE`` the same block faults in 2 MiB
    pages (Linux's transparent huge pages in their default "madvise" mode), 512x fewer faults;
    elsewhere this is a no-op.
    """
    t = x.new_empty(size) if size else torch.empty_like(x)
    if t.device.type == "cpu" and t.nbytes >= HUGE_PAGE_MIN_BYTES and extension_error("_C") is None:
        extension("_C").advise_huge_pages(t.data_ptr(), t.nbytes)
    return t


def view(t: torch.Tensor | None) -> tuple[int, int, tuple[int, ...]]:
    """(data pointer, dtype code, strides in elements) of a 4D tensor, or the "absent" view."""
    if t is None:
        return _NONE
    return (t.data_ptr(), DTYPE_CODES[t.dtype], tuple(t.stride()))


def shape(t: torch.Tensor, taps: torch.Tensor) -> tuple[int, int, int, int, int]:
    b, c, h, w = t.shape
    return (b, c, h, w, taps.numel() // 2)


def blur_fwd(
    x: torch.Tensor,  # [B, C, H, W]
    y: torch.Tensor | None,  # [B, C, H, W]
    taps: torch.Tensor,  # [2R + 1], accumulation dtype, contiguous
    out: torch.Tensor,  # [B, C, H, W], written
    sumsq: torch.Tensor | None,  # [B], accumulation dtype, written
) -> None:
    """out = blur(x - y); sumsq[b] = sum(out[b]^2), computed before out is rounded."""
    extension("_C").blur_fwd(
        shape(x, taps),
        view(x),
        view(y),
        taps.data_ptr(),
        view(out),
        0 if sumsq is None else sumsq.data_ptr(),
        torch.get_num_threads(),
    )


def blur_bwd(
    grad: torch.Tensor,  # [B, C, H, W]
    taps: torch.Tensor,  # [2R + 1], accumulation dtype, contiguous
    scale: torch.Tensor | None,  # [B], accumulation dtype
    out_x: torch.Tensor,  # [B, C, H, W], written
    out_y: torch.Tensor | None,  # [B, C, H, W], written
) -> None:
    """out_x = scale[b] * blur^T(grad); out_y = -out_x."""
    extension("_C").blur_bwd(
        shape(grad, taps),
        view(grad),
        taps.data_ptr(),
        0 if scale is None else scale.data_ptr(),
        view(out_x),
        view(out_y),
        torch.get_num_threads(),
    )


def _filter2d_shape(x: torch.Tensor, kernels: torch.Tensor) -> tuple[int, ...]:
    b, c, h, w = x.shape
    return (b, c, h, w, kernels.shape[-1], DTYPE_CODES[kernels.dtype])


def filter2d_fwd(
    x: torch.Tensor,  # [B, C, H, W]
    kernels: torch.Tensor,  # [B, K, K], accumulation dtype, contiguous
    sizes: torch.Tensor,  # [B, 2] int64, contiguous
    out: torch.Tensor,  # [B, C, H, W], written
) -> None:
    """out = per-sample correlation of x, mirror border at each extent, zero outside it."""
    extension("_C").filter2d_fwd(
        _filter2d_shape(x, kernels),
        kernels.data_ptr(),
        sizes.data_ptr(),
        view(x),
        view(out),
        torch.get_num_threads(),
    )


def filter2d_bwd(
    grad: torch.Tensor,  # [B, C, H, W]
    x: torch.Tensor | None,  # [B, C, H, W], needed for grad_k
    kernels: torch.Tensor,  # [B, K, K], accumulation dtype, contiguous
    sizes: torch.Tensor,  # [B, 2] int64, contiguous
    grad_x: torch.Tensor | None,  # [B, C, H, W], written
    grad_k: torch.Tensor | None,  # [B, K, K], accumulation dtype, contiguous, written
) -> None:
    """grad_x (the adjoint of filter2d_fwd applied to grad) and grad_k, each when given."""
    extension("_C").filter2d_bwd(
        _filter2d_shape(grad, kernels),
        kernels.data_ptr(),
        sizes.data_ptr(),
        view(x),
        view(grad),
        view(grad_x),
        0 if grad_k is None else grad_k.data_ptr(),
        torch.get_num_threads(),
    )


def jpeg_fwd(
    x: torch.Tensor,  # [B, 3, H, W]
    tables: torch.Tensor,  # [B, 2, 8, 8], accumulation dtype, contiguous
    sizes: torch.Tensor,  # [B, 2] int64, contiguous
    out: torch.Tensor,  # [B, 3, H, W], written inside the extents
    pass_mask: torch.Tensor | None,  # [B, 3, H, W] uint8, contiguous, written inside the extents
) -> None:
    """The JPEG round trip of every sample's extent, and where the decoder's clamp passes."""
    b, _, h, w = x.shape
    extension("_C").jpeg_fwd(
        (b, h, w, DTYPE_CODES[tables.dtype]),
        tables.data_ptr(),
        sizes.data_ptr(),
        view(x),
        view(out),
        0 if pass_mask is None else pass_mask.data_ptr(),
        torch.get_num_threads(),
    )


def add_noise(
    args: tuple,  # NoiseArgs pointers (ebir_fast.ops.noise._native_args), CPU memory
    x: torch.Tensor,  # [B, C, H, W]
    out: torch.Tensor,  # [B, C, H, W], written
    pass_mask: torch.Tensor | None,  # [B, C, H, W] uint8, contiguous, written
) -> None:
    """out = clamp(x + noise, 0, 1) inside the extents, 0 outside (csrc/include/ebir/noise.h)."""
    mask = 0 if pass_mask is None else pass_mask.data_ptr()
    extension("_C").add_noise(args, view(x), view(out), mask, torch.get_num_threads())


def noise_level_histogram(
    args: tuple,  # NoiseArgs pointers, CPU memory
    x: torch.Tensor,  # [B, C, H, W]
    hist: torch.Tensor,  # [B, 256] int64, written
) -> None:
    """Per-sample histogram of the Poisson samples' 8-bit levels (luma for gray samples)."""
    extension("_C").noise_level_histogram(args, view(x), hist.data_ptr(), torch.get_num_threads())
