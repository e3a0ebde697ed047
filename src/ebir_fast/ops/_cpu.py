"""Launchers for the C++ CPU kernels (ebir_fast._C): torch tensors in, raw pointers out."""

from __future__ import annotations

import math

import torch

from ebir_fast._ext import DTYPE_CODES, extension, extension_error

_NONE = (0, 0, (0, 0, 0, 0))

#: Outputs from this size up come from the CPU block cache (see :func:`empty_like`).
POOL_MIN_BYTES = 4 << 20


def empty_like(x: torch.Tensor, *size: int) -> torch.Tensor:
    """``torch.empty_like(x)`` (``x.new_empty(size)`` when ``size`` is given), from the CPU block
    cache when it is a large CPU tensor (csrc/include/ebir/block_pool.h).

    glibc maps a block above its mmap threshold (at most 32 MiB) afresh on every allocation and
    unmaps it on free, and a batch of images is that large: every output then faulted in and
    zeroed all of its pages again, ~40% of a degradation pipeline's time. Cached blocks are mapped
    once, on huge pages where the kernel offers them, and reused when the tensor owning one dies.
    Same shape, dtype and strides as torch's (contiguous or channels-last inputs; others fall
    back to torch). :func:`ebir_fast.memory.set_cpu_cache_limit` bounds what the cache keeps.
    """
    shape = tuple(size) if size else tuple(x.shape)
    nbytes = math.prod(shape) * x.element_size()
    layout_ok = bool(size) or x.is_contiguous() or _channels_last(x)
    if (
        x.device.type != "cpu"
        or nbytes < POOL_MIN_BYTES
        or not layout_ok
        or extension_error("_C") is not None
    ):
        return x.new_empty(shape) if size else torch.empty_like(x)
    flat = torch.frombuffer(extension("_C").pool_block(nbytes), dtype=torch.uint8).view(x.dtype)
    if size or x.is_contiguous():
        return flat.view(shape)
    b, c, h, w = shape
    return flat.view(b, h, w, c).permute(0, 3, 1, 2)


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


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
