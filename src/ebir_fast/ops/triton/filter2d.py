"""Triton kernel of the per-sample 2D filter: the "triton" backend of ebir_fast.ops.filter2d.

Same semantics as the C++ and CUDA kernels (csrc/include/ebir/filter2d.h): each program computes a
``[BLOCK_H, BLOCK_W]`` tile of one plane, loops over the sample's ``(2r + 1)^2`` non-zero taps (its
effective radius ``r``, from a small per-sample tensor) in (row, column) order, mirrors the source
rows and columns at the sample's own extent, and writes zeros outside it. Arithmetic in the
kernels' dtype (float32, float64 for float64 inputs); inputs of any float dtype are converted on
load and the output rounded once on store.

Backward, as the CUDA kernels (csrc/include/ebir/filter2d_elements.h):

* ``grad_x`` gathers: input element ``(y, x)`` sums ``z[p, q] = sum_it k[i, t] g0[p + r - i,
  q + r - t]`` (``g0`` the gradient, zero outside the extent) over every padded position ``(p, q)``
  that mirrors onto it: rows ``y + kP`` then (for ``0 < y < h - 1``) ``P - y + kP``, ``k``
  ascending, and the same for columns. A (row, column) candidate is skipped for the whole tile when
  no lane of it lands in the padded range, so interior tiles pay for one correlation.
* ``grad_kernels``: every program reduces ``grad * shifted x`` over its tile for every tap of the
  ``K x K`` kernel (taps outside the effective radius have gradients too) into a partials tensor,
  which torch sums in float64 in a fixed order: no atomics, reproducible.
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


@triton.jit
def _corr_zero(g_base, py, px, h, w, r, k_base, K, sgh, sgw, ACC: tl.constexpr):
    """``z[p, q] = sum_it k[i, t] g0[p + r - i, q + r - t]`` at padded rows ``py`` [BLOCK_H] and
    columns ``px`` [BLOCK_W]; ``g0`` is the gradient inside the extent, zero outside it."""
    acc = tl.zeros([py.shape[0], px.shape[0]], dtype=ACC)
    for i in range(0, 2 * r + 1):
        gy = py + r - i
        my = (gy >= 0) & (gy < h)
        for t in range(0, 2 * r + 1):
            gx = px + r - t
            m = my[:, None] & ((gx >= 0) & (gx < w))[None, :]
            v = tl.load(g_base + (gy * sgh)[:, None] + (gx * sgw)[None, :], mask=m,
                        other=0.0).to(ACC)  # fmt: skip
            acc += tl.load(k_base + i * K + t) * v
    return acc


@triton.jit
def _filter2d_adj_kernel(
    g_ptr,  # [B, C, H, W], strides sg*
    k_ptr,  # [B, K, K], contiguous, accumulation dtype
    sizes_ptr,  # [B, 2] int64
    radius_ptr,  # [B] int64 effective radius
    bounds_ptr,  # [B, 4] int64: k ranges of the row/column preimages (ky_lo, ky_hi, kx_lo, kx_hi)
    out_ptr,  # [B, C, H, W], strides so*, written: grad_x
    C, H, W, K,
    sgb, sgc, sgh, sgw,
    sob, soc, soh, sow,
    tiles_w, tiles_per_plane,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """grad_x[y, x] = sum of z[p, q] over the preimages (p, q) of (y, x), ascending."""
    ACC: tl.constexpr = k_ptr.dtype.element_ty
    b, c, _plane, rows, cols = _tile(C, tiles_w, tiles_per_plane, BLOCK_H, BLOCK_W)
    h = tl.load(sizes_ptr + 2 * b)
    w = tl.load(sizes_ptr + 2 * b + 1)
    r = tl.load(radius_ptr + b)
    ky_lo = tl.load(bounds_ptr + 4 * b)
    ky_hi = tl.load(bounds_ptr + 4 * b + 1)
    kx_lo = tl.load(bounds_ptr + 4 * b + 2)
    kx_hi = tl.load(bounds_ptr + 4 * b + 3)
    period_h = tl.maximum(2 * (h - 1), 1)
    period_w = tl.maximum(2 * (w - 1), 1)
    row_ok = rows < h
    col_ok = cols < w
    row_b = row_ok & (rows > 0) & (rows < h - 1)  # rows with a second preimage family
    col_b = col_ok & (cols > 0) & (cols < w - 1)
    g_base = g_ptr + b * sgb + c * sgc
    k_base = k_ptr + b * K * K + (K // 2 - r) * (K + 1)
    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    for ky in range(ky_lo, ky_hi + 1):
        for fy in range(0, 2):  # family a: y + kP; family b: P - y + kP
            py = tl.where(fy == 0, rows, period_h - rows) + ky * period_h
            oky = tl.where(fy == 0, row_ok, row_b) & (py >= -r) & (py < h + r)
            if tl.max(oky.to(tl.int32), axis=0) > 0:
                for kx in range(kx_lo, kx_hi + 1):
                    for fx in range(0, 2):
                        px = tl.where(fx == 0, cols, period_w - cols) + kx * period_w
                        okx = tl.where(fx == 0, col_ok, col_b) & (px >= -r) & (px < w + r)
                        if tl.max(okx.to(tl.int32), axis=0) > 0:
                            z = _corr_zero(g_base, py, px, h, w, r, k_base, K, sgh, sgw, ACC)
                            acc += tl.where(oky[:, None] & okx[None, :], z, 0.0)
    in_bounds = (rows < H)[:, None] & (cols < W)[None, :]
    o = out_ptr + b * sob + c * soc + (rows * soh)[:, None] + (cols * sow)[None, :]
    tl.store(o, acc.to(out_ptr.dtype.element_ty), mask=in_bounds)


@triton.jit
def _filter2d_kgrad_kernel(
    x_ptr,  # [B, C, H, W], strides sx*
    g_ptr,  # [B, C, H, W], strides sg*
    sizes_ptr,  # [B, 2] int64
    partials_ptr,  # [B * C * tiles_per_plane, K * K], accumulation dtype, written
    C, K,
    sxb, sxc, sxh, sxw,
    sgb, sgc, sgh, sgw,
    tiles_w, tiles_per_plane,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """partials[tile, i K + j] = sum over the tile of g[y, x] x[m(y + i - R), m(x + j - R)]."""
    ACC: tl.constexpr = partials_ptr.dtype.element_ty
    b, c, _plane, rows, cols = _tile(C, tiles_w, tiles_per_plane, BLOCK_H, BLOCK_W)
    h = tl.load(sizes_ptr + 2 * b)
    w = tl.load(sizes_ptr + 2 * b + 1)
    period_h = tl.maximum(2 * (h - 1), 1)
    period_w = tl.maximum(2 * (w - 1), 1)
    inside = (rows < h)[:, None] & (cols < w)[None, :]
    g_offs = (rows * sgh)[:, None] + (cols * sgw)[None, :]
    g = tl.load(g_ptr + b * sgb + c * sgc + g_offs, mask=inside, other=0.0).to(ACC)
    x_base = x_ptr + b * sxb + c * sxc
    out = partials_ptr + tl.program_id(0).to(tl.int64) * K * K
    R = K // 2
    for i in range(0, K):
        src_rows = _mirror(rows - R + i, h, period_h, True)
        for j in range(0, K):
            src_cols = _mirror(cols - R + j, w, period_w, True)
            v = tl.load(x_base + (src_rows * sxh)[:, None] + (src_cols * sxw)[None, :],
                        mask=inside, other=0.0).to(ACC)  # fmt: skip
            tl.store(out + i * K + j, tl.sum(tl.sum(g * v, axis=1), axis=0))


def _preimage_bounds(sizes: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:  # [B, 4] int64
    """Per sample, common.h's conservative k range of the row and of the column preimages."""
    period = torch.clamp(2 * (sizes - 1), min=1)  # [B, 2]
    r = radius[:, None]
    lo = -torch.div(r, period, rounding_mode="floor") - 1
    hi = torch.div(sizes + r, period, rounding_mode="floor") + 1
    return torch.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], dim=1).contiguous()


def filter2d_bwd(
    grad: torch.Tensor,  # [B, C, H, W]
    x: torch.Tensor | None,  # [B, C, H, W], needed for grad_k
    kernels: torch.Tensor,  # [B, K, K], accumulation dtype, contiguous
    sizes: torch.Tensor,  # [B, 2] int64, contiguous
    grad_x: torch.Tensor | None,  # [B, C, H, W], written
    grad_k: torch.Tensor | None,  # [B, K, K], accumulation dtype, contiguous, written
) -> None:
    """grad_x (the adjoint of filter2d_fwd applied to grad) and grad_k, each when given."""
    b, c, h, w = grad.shape
    block_h, block_w = _blocks(h, w)
    tiles_w = triton.cdiv(w, block_w)
    tiles_per_plane = triton.cdiv(h, block_h) * tiles_w
    grid = (b * c * tiles_per_plane,)
    k = kernels.shape[-1]
    opts = {"BLOCK_H": block_h, "BLOCK_W": block_w, "num_warps": 4, "enable_fp_fusion": True}
    with torch.cuda.device_of(grad):
        if grad_x is not None:
            radius = effective_radius(kernels).contiguous()
            bounds = _preimage_bounds(sizes, radius)
            _filter2d_adj_kernel[grid](
                grad, kernels, sizes, radius, bounds, grad_x,
                c, h, w, k,
                *grad.stride(), *grad_x.stride(),
                tiles_w, tiles_per_plane,
                **opts,
            )  # fmt: skip
        if grad_k is not None:
            if x is None:
                raise ValueError("x: needed for the kernels' gradient, got None")
            partials = torch.empty((grid[0], k * k), dtype=kernels.dtype, device=grad.device)
            _filter2d_kgrad_kernel[grid](
                x, grad, sizes, partials,
                c, k,
                *x.stride(), *grad.stride(),
                tiles_w, tiles_per_plane,
                **opts,
            )  # fmt: skip
            # Fixed-order float64 sum of the per-tile partials: reproducible, no atomics.
            total = partials.view(b, -1, k * k).sum(dim=1, dtype=torch.float64)
            grad_k.copy_(total.view(b, k, k))
