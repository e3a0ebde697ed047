"""Triton kernels for the separable Gaussian blur with a mirror border, its adjoint, and the fused
blur-MSE forward: the "triton" backend of ebir_fast.ops.gaussian_blur and ebir_fast.ops.blur_mse.

Same semantics and arithmetic order as the C++ kernels (csrc/include/ebir/blur.h):

* Forward ``out = B (x - y)`` with ``B = H o V``: the vertical pass runs first. Two kernels, one per
  pass, meet in an intermediate ``[B * C, H, W]`` tensor in the accumulation dtype, so the
  horizontal pass sees exactly the values the CPU kernel keeps in its padded row. The difference
  ``x - y`` is taken in the first pass's loads; ``out`` is rounded once, on store.
* ``sumsq[b] = sum(out[b]^2)`` from the unrounded values: each program of the horizontal pass writes
  the sum of squares of its tile to a partials tensor, which torch reduces in float64 in a fixed
  order. No atomics, so the loss is bitwise reproducible.
* Backward ``out_x = scale[b] * V^T H^T g``, ``out_y = -out_x``: the horizontal adjoint first (into
  the intermediate), then the vertical adjoint, which applies the scale and the negation on store.
* Every pass uses the symmetric-tap form ``w[R] c + sum_{t<R} w[t] (a_t + b_t)`` (``a_t``, ``b_t``
  the samples at offsets ``t - R`` and ``R - t``), looping over the taps at run time (R <= 127).
* The adjoint of the mirror padding folds every padded position ``p in [-R, n + R)`` onto
  ``reflect(p, n)``. Output index ``i`` gathers its preimages in ascending order, as common.h's
  ``preimages`` enumerates them: for k ascending, ``i + kP`` then (for ``0 < i < n - 1``)
  ``P - i + kP``, with ``P = 2 (n - 1)``. The k range comes from the host; each (k, family) step is
  skipped for the whole tile when no lane of it lands in the padded range, so interior tiles pay
  for a single correlation.

Arithmetic is in the accumulation dtype, which is the dtype of ``taps`` (float64 for float64
inputs, float32 otherwise); inputs of any float dtype are converted after the load. Every program
handles a ``[BLOCK_H, BLOCK_W]`` tile of one plane; the grid is 1D (plane-major), so it has no
65535 limit. Offsets are computed in int64, so tensors above 2^31 elements work.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ebir_fast.ops._dispatch import triton_interpreted

# ---- device helpers ---------------------------------------------------------------------------
# Index arithmetic is int64 throughout: offsets of large tensors need it anyway, and the interpreter
# checks every int32 operation for overflow, which costs more than the operation itself.


@triton.jit
def _mirror(p, n, period, WRAP: tl.constexpr):
    """reflect(p, n) of padded positions ``p`` (int64); ``period = max(2 (n - 1), 1)``.

    On [-period, period] the mirror is a fold about 0 then about n - 1: two abs, no division.
    That range holds every p in [-R, n + R) when R < n; otherwise (WRAP) p is first brought into
    [0, period) with a positive modulo (Triton's ``%`` truncates toward zero, hence two steps).
    n == 1 has period 1, which maps everything to 0.
    """
    if WRAP:
        p = ((p % period) + period) % period
    return (n - 1) - tl.abs((n - 1) - tl.abs(p))


@triton.jit
def _tile(C, tiles_w, tiles_per_plane, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """This program's b, c, plane (= b * C + c), rows [BLOCK_H] and columns [BLOCK_W], in int64.

    The grid is 1D and plane-major, so it has no 65535 limit and neighbouring programs share rows.
    """
    pid = tl.program_id(0).to(tl.int64)
    plane = pid // tiles_per_plane
    tile = pid % tiles_per_plane
    rows = (tile // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    cols = (tile % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    return plane // C, plane % C, plane, rows, cols


@triton.jit
def _load_diff(x_cols, y_cols, r, sxh, syh, mask, ACC: tl.constexpr, HAS_Y: tl.constexpr):
    """``x - y`` (or ``x``) at rows ``r`` [BLOCK_H] in ACC, each operand converted before the
    subtraction. ``x_cols``, ``y_cols`` [1, BLOCK_W] point at row 0 of the tile's columns."""
    v = tl.load(x_cols + (r * sxh)[:, None], mask=mask, other=0.0).to(ACC)
    if HAS_Y:
        v -= tl.load(y_cols + (r * syh)[:, None], mask=mask, other=0.0).to(ACC)
    return v


# ---- forward ----------------------------------------------------------------------------------


@triton.jit
def _blur_v_fwd_kernel(
    x_ptr,  # [B, C, H, W], strides sx*
    y_ptr,  # [B, C, H, W], strides sy*; read only when HAS_Y
    taps_ptr,  # [2R + 1], accumulation dtype
    mid_ptr,  # [B * C, H, W], contiguous, accumulation dtype: V (x - y), written
    C, H, W, R, period_h,
    sxb, sxc, sxh, sxw,
    syb, syc, syh, syw,
    tiles_w, tiles_per_plane,
    HAS_Y: tl.constexpr, WRAP_H: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """Vertical pass: mid = V (x - y), rows mirrored about the first and last row."""
    ACC: tl.constexpr = taps_ptr.dtype.element_ty
    b, c, plane, rows, cols = _tile(C, tiles_w, tiles_per_plane, BLOCK_H, BLOCK_W)
    # Every load is masked by the tile's extent: the mirror of a row past the image is meaningless.
    mask = (rows < H)[:, None] & (cols < W)[None, :]
    x_cols = x_ptr + b * sxb + c * sxc + (cols * sxw)[None, :]  # [1, BLOCK_W]
    y_cols = y_ptr + b * syb + c * syc + (cols * syw)[None, :]  # [1, BLOCK_W]
    centre = _load_diff(x_cols, y_cols, _mirror(rows, H, period_h, WRAP_H), sxh, syh, mask,
                        ACC, HAS_Y)  # fmt: skip
    acc = tl.load(taps_ptr + R) * centre
    for t in range(0, R):
        ra = _mirror(rows + (t - R), H, period_h, WRAP_H)
        rb = _mirror(rows + (R - t), H, period_h, WRAP_H)
        a = _load_diff(x_cols, y_cols, ra, sxh, syh, mask, ACC, HAS_Y)
        s = _load_diff(x_cols, y_cols, rb, sxh, syh, mask, ACC, HAS_Y)
        acc += tl.load(taps_ptr + t) * (a + s)
    tl.store(mid_ptr + plane * H * W + (rows * W)[:, None] + cols[None, :], acc, mask=mask)


@triton.jit
def _blur_h_fwd_kernel(
    mid_ptr,  # [B * C, H, W], contiguous, accumulation dtype
    taps_ptr,  # [2R + 1], accumulation dtype
    out_ptr,  # [B, C, H, W], strides so*, written
    partials_ptr,  # [B * C, tiles_per_plane], accumulation dtype; written when HAS_SUMSQ
    C, H, W, R, period_w,
    sob, soc, soh, sow,
    tiles_w, tiles_per_plane,
    HAS_SUMSQ: tl.constexpr, WRAP_W: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """Horizontal pass: out = H mid (columns mirrored), and the tile's sum of out^2."""
    b, c, plane, rows, cols = _tile(C, tiles_w, tiles_per_plane, BLOCK_H, BLOCK_W)
    mask = (rows < H)[:, None] & (cols < W)[None, :]
    row_ptr = mid_ptr + plane * H * W + (rows * W)[:, None]  # [BLOCK_H, 1]
    centre = tl.load(row_ptr + _mirror(cols, W, period_w, WRAP_W)[None, :], mask=mask)
    acc = tl.load(taps_ptr + R) * centre
    for t in range(0, R):
        ca = _mirror(cols + (t - R), W, period_w, WRAP_W)
        cb = _mirror(cols + (R - t), W, period_w, WRAP_W)
        a = tl.load(row_ptr + ca[None, :], mask=mask)
        s = tl.load(row_ptr + cb[None, :], mask=mask)
        acc += tl.load(taps_ptr + t) * (a + s)
    offs = b * sob + c * soc + (rows * soh)[:, None] + (cols * sow)[None, :]
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)
    if HAS_SUMSQ:
        # Masked lanes loaded nothing; zero them anyway so the sum does not depend on that.
        sq = tl.where(mask, acc * acc, 0.0)
        tl.store(partials_ptr + tl.program_id(0), tl.sum(tl.sum(sq, axis=1), axis=0))


# ---- backward (adjoint) -----------------------------------------------------------------------
# Both adjoint passes gather: output index i sums z[p] over its preimages p, where z is the
# correlation of the zero-extended input evaluated at padded position p. The loop over (k, family)
# is the same for every lane of the tile; lanes whose candidate p falls outside [-R, n + R) add 0.


@triton.jit
def _h_corr_zero(row_ptr, row_ok, p, W, R, sgw, taps_ptr):
    """z[p] = sum_t w[t] g0[p + t - R] at padded columns ``p`` [BLOCK_W]: [BLOCK_H, BLOCK_W].

    ``row_ptr`` [BLOCK_H, 1] points at each row of g (stride ``sgw`` along W), ``row_ok``
    [BLOCK_H, 1] masks rows past the image; g0 is g extended with zeros beyond [0, W).
    """
    ACC: tl.constexpr = taps_ptr.dtype.element_ty
    m = row_ok & ((p >= 0) & (p < W))[None, :]
    acc = tl.load(taps_ptr + R) * tl.load(row_ptr + (p * sgw)[None, :], mask=m, other=0.0).to(ACC)
    for t in range(0, R):
        qa = p + (t - R)
        qb = p + (R - t)
        ma = row_ok & ((qa >= 0) & (qa < W))[None, :]
        mb = row_ok & ((qb >= 0) & (qb < W))[None, :]
        a = tl.load(row_ptr + (qa * sgw)[None, :], mask=ma, other=0.0).to(ACC)
        s = tl.load(row_ptr + (qb * sgw)[None, :], mask=mb, other=0.0).to(ACC)
        acc += tl.load(taps_ptr + t) * (a + s)
    return acc


@triton.jit
def _blur_h_adj_kernel(
    g_ptr,  # [B, C, H, W], strides sg*
    taps_ptr,  # [2R + 1], accumulation dtype
    mid_ptr,  # [B * C, H, W], contiguous, accumulation dtype: H^T g, written
    C, H, W, R, period_w, k_lo, k_hi,
    sgb, sgc, sgh, sgw,
    tiles_w, tiles_per_plane,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """Horizontal adjoint: mid[:, i] = sum of z[p] over the preimages p of column i, ascending."""
    ACC: tl.constexpr = taps_ptr.dtype.element_ty
    b, c, plane, rows, cols = _tile(C, tiles_w, tiles_per_plane, BLOCK_H, BLOCK_W)
    row_ok = (rows < H)[:, None]
    col_ok = cols < W
    row_ptr = g_ptr + b * sgb + c * sgc + (rows * sgh)[:, None]  # [BLOCK_H, 1]
    has_b = col_ok & (cols > 0) & (cols < W - 1)  # columns with a second preimage family
    acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=ACC)
    for k in range(k_lo, k_hi + 1):
        # Family a: i + kP. Skipped for the whole tile when no lane needs it (interior tiles pay
        # for one correlation, at k = 0).
        p = cols + k * period_w
        ok = col_ok & (p >= -R) & (p < W + R)
        if tl.max(ok.to(tl.int32), axis=0) > 0:
            z = _h_corr_zero(row_ptr, row_ok, p, W, R, sgw, taps_ptr)
            acc += tl.where(ok[None, :], z, 0.0)
        # Family b: P - i + kP, for 0 < i < W - 1.
        p = period_w - cols + k * period_w
        ok = has_b & (p >= -R) & (p < W + R)
        if tl.max(ok.to(tl.int32), axis=0) > 0:
            z = _h_corr_zero(row_ptr, row_ok, p, W, R, sgw, taps_ptr)
            acc += tl.where(ok[None, :], z, 0.0)
    offs = plane * H * W + (rows * W)[:, None] + cols[None, :]
    tl.store(mid_ptr + offs, acc, mask=row_ok & col_ok[None, :])


@triton.jit
def _v_corr_zero(col_ptr, col_ok, p, H, W, R, taps_ptr):
    """z[p] = sum_t w[t] m0[p + t - R] at padded rows ``p`` [BLOCK_H]: [BLOCK_H, BLOCK_W].

    ``col_ptr`` [1, BLOCK_W] points at row 0 of a contiguous [H, W] plane, ``col_ok``
    [1, BLOCK_W] masks columns past the image; m0 is the plane extended with zero rows.
    """
    m = col_ok & ((p >= 0) & (p < H))[:, None]
    acc = tl.load(taps_ptr + R) * tl.load(col_ptr + (p * W)[:, None], mask=m, other=0.0)
    for t in range(0, R):
        qa = p + (t - R)
        qb = p + (R - t)
        ma = col_ok & ((qa >= 0) & (qa < H))[:, None]
        mb = col_ok & ((qb >= 0) & (qb < H))[:, None]
        a = tl.load(col_ptr + (qa * W)[:, None], mask=ma, other=0.0)
        s = tl.load(col_ptr + (qb * W)[:, None], mask=mb, other=0.0)
        acc += tl.load(taps_ptr + t) * (a + s)
    return acc


@triton.jit
def _blur_v_adj_kernel(
    mid_ptr,  # [B * C, H, W], contiguous, accumulation dtype: H^T g
    taps_ptr,  # [2R + 1], accumulation dtype
    scale_ptr,  # [B], accumulation dtype; read only when HAS_SCALE
    out_x_ptr,  # [B, C, H, W], strides sx*, written
    out_y_ptr,  # [B, C, H, W], strides sy*; written only when HAS_OUT_Y
    C, H, W, R, period_h, k_lo, k_hi,
    sxb, sxc, sxh, sxw,
    syb, syc, syh, syw,
    tiles_w, tiles_per_plane,
    HAS_SCALE: tl.constexpr, HAS_OUT_Y: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    """Vertical adjoint: out_x[i] = scale[b] * sum of z[p] over the preimages p of row i, and
    out_y = -out_x."""
    ACC: tl.constexpr = taps_ptr.dtype.element_ty
    b, c, plane, rows, cols = _tile(C, tiles_w, tiles_per_plane, BLOCK_H, BLOCK_W)
    row_ok = rows < H
    col_ok = (cols < W)[None, :]
    col_ptr = mid_ptr + plane * H * W + cols[None, :]  # [1, BLOCK_W]
    has_b = row_ok & (rows > 0) & (rows < H - 1)  # rows with a second preimage family
    acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=ACC)
    for k in range(k_lo, k_hi + 1):
        p = rows + k * period_h  # family a: i + kP
        ok = row_ok & (p >= -R) & (p < H + R)
        if tl.max(ok.to(tl.int32), axis=0) > 0:
            z = _v_corr_zero(col_ptr, col_ok, p, H, W, R, taps_ptr)
            acc += tl.where(ok[:, None], z, 0.0)
        p = period_h - rows + k * period_h  # family b: P - i + kP, for 0 < i < H - 1
        ok = has_b & (p >= -R) & (p < H + R)
        if tl.max(ok.to(tl.int32), axis=0) > 0:
            z = _v_corr_zero(col_ptr, col_ok, p, H, W, R, taps_ptr)
            acc += tl.where(ok[:, None], z, 0.0)
    if HAS_SCALE:
        acc = tl.load(scale_ptr + b) * acc
    mask = row_ok[:, None] & col_ok
    offs_x = b * sxb + c * sxc + (rows * sxh)[:, None] + (cols * sxw)[None, :]
    tl.store(out_x_ptr + offs_x, acc.to(out_x_ptr.dtype.element_ty), mask=mask)
    if HAS_OUT_Y:
        offs_y = b * syb + c * syc + (rows * syh)[:, None] + (cols * syw)[None, :]
        tl.store(out_y_ptr + offs_y, (-acc).to(out_y_ptr.dtype.element_ty), mask=mask)


# ---- launchers --------------------------------------------------------------------------------


def _period(n: int) -> int:
    """The period of the mirror border of a length-n axis (1 for n == 1, as in common.h)."""
    return max(2 * (n - 1), 1)


def _k_range(n: int, radius: int) -> tuple[int, int]:
    """Conservative k bounds of the preimages i + kP, P - i + kP in [-R, n + R) (common.h)."""
    period = _period(n)
    return -(radius // period) - 1, (n + radius) // period + 1


def _blocks(H: int, W: int) -> tuple[int, int]:
    """Tile shape [BLOCK_H, BLOCK_W]: a GPU-sized tile, or up to 16K elements in the interpreter.

    The interpreter's cost grows with the number of programs, not with the tile size, so it gets
    tiles as large as the image (capped) where a GPU wants many small ones.
    """
    bw = min(max(triton.next_power_of_2(W), 16), 256 if triton_interpreted() else 64)
    cap_h = max(16, 16384 // bw) if triton_interpreted() else 32
    bh = min(max(triton.next_power_of_2(H), 16), cap_h)
    return bh, bw


class _Grid:
    """The launch geometry shared by both passes of one op."""

    def __init__(self, shape: torch.Size):
        self.B, self.C, self.H, self.W = shape
        self.block_h, self.block_w = _blocks(self.H, self.W)
        self.tiles_w = triton.cdiv(self.W, self.block_w)
        self.tiles_per_plane = triton.cdiv(self.H, self.block_h) * self.tiles_w
        self.grid = (self.B * self.C * self.tiles_per_plane,)

    def tiles(self) -> tuple[int, int]:
        """(tiles_w, tiles_per_plane): how a program id splits into plane, tile row, tile column."""
        return self.tiles_w, self.tiles_per_plane

    def options(self) -> dict[str, int | bool]:
        """Tile constexprs and launch options. FP fusion (FMA) is requested explicitly: the C++
        and CUDA kernels contract too, and Triton's default is about to change."""
        return {
            "BLOCK_H": self.block_h,
            "BLOCK_W": self.block_w,
            "num_warps": 4,
            "enable_fp_fusion": True,
        }


def blur_fwd(
    x: torch.Tensor,  # [B, C, H, W]
    y: torch.Tensor | None,  # [B, C, H, W]
    taps: torch.Tensor,  # [2R + 1], accumulation dtype, contiguous
    out: torch.Tensor,  # [B, C, H, W], written
    sumsq: torch.Tensor | None,  # [B], accumulation dtype, written
) -> None:
    """out = blur(x - y); sumsq[b] = sum(out[b]^2), computed before out is rounded."""
    g = _Grid(x.shape)
    R = taps.numel() // 2
    mid = torch.empty((g.B * g.C, g.H, g.W), dtype=taps.dtype, device=x.device)  # V (x - y)
    partials = None  # [B * C, tiles_per_plane]
    if sumsq is not None:
        partials = torch.empty((g.B * g.C, g.tiles_per_plane), dtype=taps.dtype, device=x.device)
    y_arg = x if y is None else y  # never read when HAS_Y is False
    with torch.cuda.device_of(x):  # Triton launches on the current device; a no-op on CPU
        _blur_v_fwd_kernel[g.grid](
            x, y_arg, taps, mid,
            g.C, g.H, g.W, R, _period(g.H),
            *x.stride(), *y_arg.stride(),
            *g.tiles(),
            HAS_Y=y is not None, WRAP_H=R >= g.H, **g.options(),
        )  # fmt: skip
        _blur_h_fwd_kernel[g.grid](
            mid, taps, out, mid if partials is None else partials,
            g.C, g.H, g.W, R, _period(g.W),
            *out.stride(),
            *g.tiles(),
            HAS_SUMSQ=partials is not None, WRAP_W=R >= g.W, **g.options(),
        )  # fmt: skip
    if partials is not None:
        # Fixed-order float64 reduction of the per-tile sums (each a float32 tree reduction of at
        # most one tile, accurate to a few ulps): reproducible run to run, no atomics.
        sumsq.copy_(partials.view(g.B, -1).sum(dim=1, dtype=torch.float64))


def blur_bwd(
    grad: torch.Tensor,  # [B, C, H, W]
    taps: torch.Tensor,  # [2R + 1], accumulation dtype, contiguous
    scale: torch.Tensor | None,  # [B], accumulation dtype
    out_x: torch.Tensor,  # [B, C, H, W], written
    out_y: torch.Tensor | None,  # [B, C, H, W], written
) -> None:
    """out_x = scale[b] * blur^T(grad); out_y = -out_x."""
    g = _Grid(grad.shape)
    R = taps.numel() // 2
    mid = torch.empty((g.B * g.C, g.H, g.W), dtype=taps.dtype, device=grad.device)  # H^T grad
    scale_arg = taps if scale is None else scale  # never read when HAS_SCALE is False
    y_arg = out_x if out_y is None else out_y  # never written when HAS_OUT_Y is False
    with torch.cuda.device_of(grad):
        _blur_h_adj_kernel[g.grid](
            grad, taps, mid,
            g.C, g.H, g.W, R, _period(g.W), *_k_range(g.W, R),
            *grad.stride(),
            *g.tiles(),
            **g.options(),
        )  # fmt: skip
        _blur_v_adj_kernel[g.grid](
            mid, taps, scale_arg, out_x, y_arg,
            g.C, g.H, g.W, R, _period(g.H), *_k_range(g.H, R),
            *out_x.stride(), *y_arg.stride(),
            *g.tiles(),
            HAS_SCALE=scale is not None, HAS_OUT_Y=out_y is not None, **g.options(),
        )  # fmt: skip
