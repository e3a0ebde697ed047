"""Triton kernel of the per-sample 2D filter: the "triton" backend of ebir_fast.ops.filter2d.

Same semantics as the C++ and CUDA kernels (csrc/include/ebir/filter2d.h): each program computes a
``[BLOCK_H, BLOCK_W]`` tile of one plane, loops over the sample's ``(2r + 1)^2`` non-zero taps (its
effective radius ``r``, from a small per-sample tensor) in (row, column) order, mirrors the source
rows and columns at the sample's own extent, and writes zeros outside it. Arithmetic in the
kernels' dtype (float32, float64 for float64 inputs); inputs of any float dtype are converted on
load and the output rounded once on store. The backward runs through the reference's autograd.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ebir_fast.ops.triton.blur import _blocks, _mirror, _tile


@triton.jit
def _filter2d_fwd_kernel(
    x_ptr,  # [B, C, H, W], strides sx*
    k_ptr,  # [B, K, K], contiguous, accumulation dtype
    sizes_ptr,  # [B, 2] int64
    radius_ptr,  # [B] int64 effective radius
    out_ptr,  # [B, C, H, W], strides so*, written
    C, H, W, K,
    sxb, sxc, sxh, sxw,
    sob, soc, soh, sow,
    tiles_w, tiles_per_plane,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    ACC: tl.constexpr = k_ptr.dtype.element_ty
    b, c, _plane, rows, cols = _tile(C, tiles_w, tiles_per_plane, BLOCK_H, BLOCK_W)
    h = tl.load(sizes_ptr + 2 * b)
    w = tl.load(sizes_ptr + 2 * b + 1)
    r = tl.load(radius_ptr + b)
    period_h = tl.maximum(2 * (h - 1), 1)
    period_w = tl.maximum(2 * (w - 1), 1)
    inside = (rows < h)[:, None] & (cols < w)[None, :]
    x_base = x_ptr + b * sxb + c * sxc
    k_base = k_ptr + b * K * K + (K // 2 - r) * (K + 1)
    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    for i in range(0, 2 * r + 1):
        src_rows = _mirror(rows - r + i, h, period_h, True)
        for t in range(0, 2 * r + 1):
            src_cols = _mirror(cols - r + t, w, period_w, True)
            v = tl.load(x_base + (src_rows * sxh)[:, None] + (src_cols * sxw)[None, :],
                        mask=inside, other=0.0).to(ACC)  # fmt: skip
            acc += tl.load(k_base + i * K + t) * v
    acc = tl.where(inside, acc, 0.0)
    in_bounds = (rows < H)[:, None] & (cols < W)[None, :]
    o = out_ptr + b * sob + c * soc + (rows * soh)[:, None] + (cols * sow)[None, :]
    tl.store(o, acc.to(out_ptr.dtype.element_ty), mask=in_bounds)


def effective_radius(kernels: torch.Tensor) -> torch.Tensor:  # [B] int64
    """The smallest r with every non-zero tap of each ``[K, K]`` kernel within r of the centre."""
    k = kernels.shape[-1]
    d = (torch.arange(k, device=kernels.device) - k // 2).abs()
    dist = torch.maximum(d.view(-1, 1), d.view(1, -1))  # [K, K] Chebyshev distance to the centre
    return torch.where(kernels != 0, dist, 0).flatten(1).amax(dim=1)


def filter2d_fwd(
    x: torch.Tensor,  # [B, C, H, W]
    kernels: torch.Tensor,  # [B, K, K], accumulation dtype, contiguous
    sizes: torch.Tensor,  # [B, 2] int64, contiguous
    out: torch.Tensor,  # [B, C, H, W], written
) -> None:
    """out = per-sample correlation of x, mirror border at each extent, zero outside it."""
    b, c, h, w = x.shape
    block_h, block_w = _blocks(h, w)
    tiles_w = triton.cdiv(w, block_w)
    tiles_per_plane = triton.cdiv(h, block_h) * tiles_w
    radius = effective_radius(kernels).contiguous()
    with torch.cuda.device_of(x):  # Triton launches on the current device; a no-op on CPU
        _filter2d_fwd_kernel[(b * c * tiles_per_plane,)](
            x, kernels, sizes, radius, out,
            c, h, w, kernels.shape[-1],
            *x.stride(), *out.stride(),
            tiles_w, tiles_per_plane,
            BLOCK_H=block_h, BLOCK_W=block_w, num_warps=4,
        )  # fmt: skip
