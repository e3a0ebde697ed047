"""Pure-PyTorch references: slow, simple, differentiable by autograd.

They define the semantics every fast backend is tested against, and they are the fallback when no
compiled kernel can run. The border is "reflect" (kornia's and torch's); when the padding is wider
than the image, which torch refuses, the reflection repeats (scipy.ndimage's "mirror"), so every
size >= 1 is accepted.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ebir_fast.ops._gaussian import accumulation_dtype, gaussian_taps


def mirror_index(n: int, radius: int, device: torch.device | None = None) -> torch.Tensor:
    """Source index of each position of a mirror-padded length-``n`` axis: ``[n + 2 * radius]``."""
    p = torch.arange(-radius, n + radius, device=device)
    if n == 1:
        return torch.zeros_like(p)
    period = 2 * (n - 1)
    q = torch.remainder(p, period)
    return torch.where(q < n, q, period - q)


def mirror_pad(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Reflect-pad dimension ``dim`` (-1 or -2) by ``radius`` on both sides."""
    if radius == 0:
        return x
    n = x.shape[dim]
    if radius < n:
        pad = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
        return F.pad(x, pad, mode="reflect")
    return x.index_select(dim, mirror_index(n, radius, x.device))


def _blur_acc(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable blur in the dtype of ``taps``, vertical pass first: ``[B, C, H, W]`` -> same.

    Written the way a fast PyTorch blur is (kornia's): one-axis padding and a depthwise conv per
    pass, so that it is a fair baseline for the benchmarks too.
    """
    c = x.shape[1]
    k = taps.numel()
    radius = k // 2
    x = mirror_pad(x.to(taps.dtype), radius, -2)
    x = F.conv2d(x, taps.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    x = mirror_pad(x, radius, -1)
    return F.conv2d(x, taps.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def gaussian_blur_reference(
    x: torch.Tensor,  # [B, C, H, W]
    sigma: float,
    kernel_size: int,
) -> torch.Tensor:  # [B, C, H, W], dtype of x
    """Gaussian blur, computed in float32 (float64 for float64 inputs), returned in x's dtype."""
    taps = gaussian_taps(sigma, kernel_size, accumulation_dtype(x.dtype), x.device)
    return _blur_acc(x, taps).to(x.dtype)


def blur_mse_reference(
    x: torch.Tensor,  # [B, C, H, W]
    y: torch.Tensor,  # [B, C, H, W]
    sigma: float,
    kernel_size: int,
    reduction: str = "mean",
) -> torch.Tensor:  # [] or [B], float32 (float64 for float64 inputs)
    """``mean((G * x - G * y)^2)``: both images blurred, then the MSE, as a training loop would."""
    taps = gaussian_taps(sigma, kernel_size, accumulation_dtype(x.dtype), x.device)
    sq = (_blur_acc(x, taps) - _blur_acc(y, taps)).square()
    if reduction == "sum":
        return sq.sum()
    if reduction == "none":
        return sq.flatten(1).mean(dim=1)
    return sq.mean()


def gaussian_blur_adjoint_reference(
    grad: torch.Tensor,  # [B, C, H, W]
    sigma: float,
    kernel_size: int,
) -> torch.Tensor:  # [B, C, H, W]
    """``B^T grad`` by autograd through the reference blur (the mirror border's fold included)."""
    acc = accumulation_dtype(grad.dtype)
    taps = gaussian_taps(sigma, kernel_size, acc, grad.device)
    x = torch.zeros(grad.shape, dtype=acc, device=grad.device, requires_grad=True)
    with torch.enable_grad():
        (out,) = torch.autograd.grad(_blur_acc(x, taps), x, grad.to(acc))
    return out.to(grad.dtype)


# ---- per-sample 2D filtering and the JPEG round trip on ragged batches ---------------------------


def ragged_mirror_index(
    extent: torch.Tensor,  # [B] int64, each >= 1
    length: int,
    radius: int,
) -> torch.Tensor:  # [B, length + 2 * radius] int64
    """Per-sample :func:`mirror_index`: each row mirrors at its own ``extent`` (not ``length``).

    Positions past ``extent + radius`` get in-range but meaningless indices; callers mask them.
    """
    p = torch.arange(-radius, length + radius, device=extent.device).view(1, -1)
    n = extent.view(-1, 1)
    period = (2 * (n - 1)).clamp_min(1)
    q = torch.remainder(p, period)
    q = torch.where(q < n, q, period - q)
    return torch.where(n == 1, torch.zeros_like(q), q)


def extent_mask(
    sizes: torch.Tensor, height: int, width: int, device: torch.device
) -> torch.Tensor:  # [B, 1, H, W] bool
    """True inside each sample's valid extent ``sizes [B, 2] = (h, w)``."""
    s = sizes.to(device)
    rows = torch.arange(height, device=device).view(1, -1, 1) < s[:, 0].view(-1, 1, 1)
    cols = torch.arange(width, device=device).view(1, 1, -1) < s[:, 1].view(-1, 1, 1)
    return (rows & cols).unsqueeze(1)


def _gather_rows_cols(
    x: torch.Tensor,  # [B, C, H, W]
    rows: torch.Tensor,  # [B, H']
    cols: torch.Tensor,  # [B, W']
) -> torch.Tensor:  # [B, C, H', W']
    b = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1)
    return x.permute(0, 2, 3, 1)[b, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)


def filter2d_reference(
    x: torch.Tensor,  # [B, C, H, W]
    kernels: torch.Tensor,  # [B, K, K], K odd
    sizes: torch.Tensor,  # [B, 2] int64 valid (h, w) per sample
) -> torch.Tensor:  # [B, C, H, W], dtype of x, zero outside `sizes`
    """Per-sample cross-correlation with a mirror border at each sample's own extent.

    A grouped convolution over the mirror-padded batch; differentiable in ``x`` and ``kernels``.
    """
    b, c, h, w = x.shape
    k = kernels.shape[-1]
    r = k // 2
    acc = accumulation_dtype(x.dtype)
    sizes = sizes.to(x.device)
    rows = ragged_mirror_index(sizes[:, 0], h, r)
    cols = ragged_mirror_index(sizes[:, 1], w, r)
    padded = _gather_rows_cols(x.to(acc), rows, cols)
    weight = kernels.to(acc).repeat_interleave(c, dim=0).unsqueeze(1)  # [B * C, 1, K, K]
    out = F.conv2d(padded.reshape(1, b * c, h + 2 * r, w + 2 * r), weight, groups=b * c)
    out = out.view(b, c, h, w) * extent_mask(sizes, h, w, x.device)
    return out.to(x.dtype)


#: JPEG Annex K tables in natural order: row = vertical frequency, column = horizontal frequency.
JPEG_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
JPEG_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)
#: JFIF RGB -> YCbCr (full-range BT.601); the offsets (0, 128, 128) are added after.
RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)
YCBCR_TO_RGB = (
    (1.0, 0.0, 1.402),
    (1.0, -0.344136286, -0.714136286),
    (1.0, 1.772, 0.0),
)


def jpeg_quality_factor(quality: torch.Tensor) -> torch.Tensor:
    """libjpeg's table scale for a (float) quality in (0, 100]: ``50 / q`` below 50, else
    ``(200 - 2 q) / 100`` (so q = 100 gives 0, which the [1, 255] clamp of the table makes 1)."""
    return torch.where(quality < 50, 50.0 / quality, (200.0 - 2.0 * quality) / 100.0)


def jpeg_tables(
    quality: torch.Tensor,  # [B]
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:  # ([B, 8, 8] luma, [B, 8, 8] chroma)
    """Quantisation tables ``clamp(T * f(q), 1, 255)``, unrounded so that q is continuous.

    The clamp is libjpeg's: without it (BasicSR's DiffJPEG) q < ~20 quantises more coarsely than
    any real JPEG and q = 100 divides by zero.
    """
    f = jpeg_quality_factor(quality.to(torch.float64)).view(-1, 1, 1)
    luma = torch.tensor(JPEG_LUMA_TABLE, dtype=torch.float64, device=quality.device)
    chroma = torch.tensor(JPEG_CHROMA_TABLE, dtype=torch.float64, device=quality.device)
    return (
        (luma * f).clamp(1.0, 255.0).to(dtype),
        (chroma * f).clamp(1.0, 255.0).to(dtype),
    )


def dct_matrix(dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:  # [8, 8]
    """Orthonormal DCT-II: ``D[u, x] = c(u) cos((2x + 1) u pi / 16)``; the inverse is ``D^T``."""
    u = torch.arange(8, dtype=torch.float64).view(-1, 1)
    x = torch.arange(8, dtype=torch.float64).view(1, -1)
    scale = torch.where(u == 0, torch.tensor(0.125, dtype=torch.float64).sqrt(), 0.5)
    d = torch.cos((2 * x + 1) * u * torch.pi / 16) * scale
    return d.to(dtype=dtype, device=device)


def straight_through_round(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` (half to even) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def _block_transform(
    plane: torch.Tensor,  # [B, C, H, W], H and W multiples of 8, values 0..255
    table: torch.Tensor,  # [B, 8, 8]
) -> torch.Tensor:  # [B, C, H, W]
    """8x8 DCT of ``plane - 128``, quantise, round (straight-through), dequantise, inverse DCT."""
    b, c, h, w = plane.shape
    d = dct_matrix(plane.dtype, plane.device)
    blocks = (plane - 128.0).view(b, c, h // 8, 8, w // 8, 8)
    coeff = torch.einsum("uy,bcnymx,vx->bcnumv", d, blocks, d)
    q = table.view(b, 1, 1, 8, 1, 8)
    coeff = straight_through_round(coeff / q) * q
    out = torch.einsum("uy,bcnumv,vx->bcnymx", d, coeff, d)
    return out.reshape(b, c, h, w) + 128.0


def jpeg_roundtrip_reference(
    x: torch.Tensor,  # [B, 3, H, W] RGB in [0, 1]
    quality: torch.Tensor,  # [B] float in (0, 100]
    sizes: torch.Tensor,  # [B, 2] int64 valid (h, w) per sample
) -> torch.Tensor:  # [B, 3, H, W], dtype of x, zero outside `sizes`
    """JPEG compress-decompress, 4:2:0 chroma: DiffJPEG's semantics with libjpeg's clamped tables.

    Each sample is clamped to [0, 1], edge-replicated from its extent to a multiple of 16 (as
    encoders pad), scaled to 0..255, converted to YCbCr, its chroma 2x2-averaged, every 8x8 block
    transformed by :func:`_block_transform`, the chroma upsampled by replication, converted back
    and clamped to 0..255. Rounding is straight-through, so the gradient is the linear map around
    it.
    """
    h, w = x.shape[-2:]
    acc = accumulation_dtype(x.dtype)
    sizes = sizes.to(x.device)
    h16, w16 = -(-h // 16) * 16, -(-w // 16) * 16
    rows = torch.minimum(torch.arange(h16, device=x.device).view(1, -1), sizes[:, :1] - 1)
    cols = torch.minimum(torch.arange(w16, device=x.device).view(1, -1), sizes[:, 1:] - 1)
    rgb = _gather_rows_cols(x.to(acc).clamp(0.0, 1.0), rows, cols) * 255.0
    fwd = torch.tensor(RGB_TO_YCBCR, dtype=acc, device=x.device)
    inv = torch.tensor(YCBCR_TO_RGB, dtype=acc, device=x.device)
    ycc = torch.einsum("oc,bchw->bohw", fwd, rgb)
    luma_t, chroma_t = jpeg_tables(quality.to(x.device), acc)
    y = _block_transform(ycc[:, :1], luma_t)
    cbcr = F.avg_pool2d(ycc[:, 1:], 2) + 128.0
    cbcr = _block_transform(cbcr, chroma_t) - 128.0
    cbcr = cbcr.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    out = torch.einsum("oc,bchw->bohw", inv, torch.cat([y, cbcr], dim=1)).clamp(0.0, 255.0)
    out = out[:, :, :h, :w] / 255.0 * extent_mask(sizes, h, w, x.device)
    return out.to(x.dtype)


# ---- counter-based uniforms and Poisson sampling by inversion ----------------------------------

_MASK64 = (1 << 64) - 1


def _signed(v: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    v &= _MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shr(z, 30)) * _signed(0xBF58476D1CE4E5B9)
    z = (z ^ _shr(z, 27)) * _signed(0x94D049BB133111EB)
    return z ^ _shr(z, 31)


def stream_key(seed: int) -> int:
    """The key of stream ``seed`` (csrc/include/ebir/counter_rng.h), a uint64 as a Python int."""
    z = seed & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def counter_uniform_reference(
    seed: int, numel: int, offset: int = 0, device=None
) -> torch.Tensor:  # [numel] float64 in (0, 1)
    """Elements ``offset .. offset + numel - 1`` of the counter-based stream ``seed``: the bits of
    SplitMix64's finaliser on a keyed Weyl sequence, in int64 arithmetic that wraps like uint64."""
    return counter_uniform_at(seed, torch.arange(offset, offset + numel, device=device))


def counter_uniform_at(seed: int, index: torch.Tensor) -> torch.Tensor:  # float64, index's shape
    """Elements ``index`` (int64, >= 0) of the counter-based stream ``seed``."""
    z = _mix((index.long() + 1) * _signed(0x9E3779B97F4A7C15) + _signed(stream_key(seed)))
    return (_shr(z, 11).double() + 0.5) * 2.0**-53


def poisson_cdf_tables(
    rate_scale: torch.Tensor,  # [T] float64: rate of level l is l * rate_scale
) -> torch.Tensor:  # [T, 256, L] float64, non-decreasing rows ending in 1
    """Poisson CDFs for the rates ``level * scale`` of every 8-bit level.

    Rows run to ``k = rate + 12 sqrt(rate) + 12`` (the tail beyond holds < 1e-20 of the mass), and
    their last entry is set to 1 so that inversion always ends. Tables are cached per set of
    scales (the degradation's are a power of two over 255, so a handful recur); the returned
    tensor is shared and must not be modified.
    """
    return _cdf_tables(tuple(rate_scale.detach().cpu().double().tolist()))


@functools.lru_cache(maxsize=64)
def _cdf_tables(scales: tuple[float, ...]) -> torch.Tensor:  # [T, 256, L] float64
    rate_scale = torch.tensor(scales, dtype=torch.float64)
    rates = torch.arange(256, dtype=torch.float64).view(1, -1) * rate_scale.view(-1, 1)
    top = float(rates.max())
    length = int(top + 12.0 * top**0.5 + 12.0) + 1
    k = torch.arange(length, dtype=torch.float64)
    log_pmf = k * torch.log(rates.unsqueeze(-1)) - rates.unsqueeze(-1) - torch.lgamma(k + 1)
    log_pmf = torch.where(rates.unsqueeze(-1) == 0, torch.where(k == 0, 0.0, -torch.inf), log_pmf)
    # Rounding can carry the running sum a few ulps past 1; clamping keeps rows non-decreasing.
    cdf = torch.cumsum(torch.exp(log_pmf), dim=-1).clamp_max(1.0)
    cdf[..., -1] = 1.0
    return cdf.contiguous()


def poisson_levels_reference(
    levels: torch.Tensor,  # [B, ...] integer values 0..255 (any dtype)
    table_of_sample: torch.Tensor,  # [B] int64 index into `cdf`
    cdf: torch.Tensor,  # [T, 256, L] from poisson_cdf_tables
    seed: int,
    offset: int = 0,
) -> torch.Tensor:  # [B, ...] float32 counts
    """Inversion: element e (flat, sample-major) is the smallest k with ``cdf[k] > u_e``."""
    b = levels.shape[0]
    rows = table_of_sample.view(-1, 1) * 256 + levels.reshape(b, -1).long()
    u = counter_uniform_reference(seed, levels.numel(), offset, levels.device)
    return invert_cdf(rows.flatten(), u, cdf).view(levels.shape)


def invert_cdf(
    rows: torch.Tensor,  # [N] int64 row of cdf.reshape(-1, L) per element
    u: torch.Tensor,  # [N] float64 uniforms
    cdf: torch.Tensor,  # [T, 256, L]
) -> torch.Tensor:  # [N] float32: smallest k with cdf[row, k] > u
    """Inversion grouped by CDF row (sorted once), so memory stays linear in the element count."""
    table = cdf.reshape(-1, cdf.shape[-1])
    order = torch.argsort(rows, stable=True)
    distinct, counts_per_row = torch.unique_consecutive(rows[order], return_counts=True)
    out = torch.empty(rows.numel(), dtype=torch.int64, device=rows.device)
    start = 0
    for row, n in zip(distinct.tolist(), counts_per_row.tolist(), strict=True):
        idx = order[start : start + n]
        out[idx] = torch.searchsorted(table[row], u[idx], right=True)
        start += n
    return out.clamp_max(cdf.shape[-1] - 1).to(torch.float32)


def level_histogram_reference(
    levels: torch.Tensor,  # [B, C, H, W] integer values 0..255
    sizes: torch.Tensor,  # [B, 2]
) -> torch.Tensor:  # [B, 256] int64
    """Per-sample 256-bin histogram inside each extent: one ``bincount`` over ``sample * 256 +
    level``, pixels outside the extent counted into a spare bin that is dropped."""
    b, _, h, w = levels.shape
    mask = extent_mask(sizes, h, w, levels.device)
    ids = torch.arange(b, device=levels.device).view(-1, 1, 1, 1) * 256 + levels.long()
    ids = torch.where(mask, ids, b * 256)
    return torch.bincount(ids.flatten(), minlength=b * 256 + 1)[: b * 256].view(b, 256)


LUMA = (0.299, 0.587, 0.114)

# Wichura's AS 241 (PPND16) coefficients, lowest power first (csrc/include/ebir/normal_quantile.h).
_AS241 = {
    "a": (
        3.3871328727963666080e0,
        1.3314166789178437745e2,
        1.9715909503065514427e3,
        1.3731693765509461125e4,
        4.5921953931549871457e4,
        6.7265770927008700853e4,
        3.3430575583588128105e4,
        2.5090809287301226727e3,
    ),
    "b": (
        1.0,
        4.2313330701600911252e1,
        6.8718700749205790830e2,
        5.3941960214247511077e3,
        2.1213794301586595867e4,
        3.9307895800092710610e4,
        2.8729085735721942674e4,
        5.2264952788528545610e3,
    ),
    "c": (
        1.42343711074968357734e0,
        4.63033784615654529590e0,
        5.76949722146069140550e0,
        3.64784832476320460504e0,
        1.27045825245236838258e0,
        2.41780725177450611770e-1,
        2.27238449892691845833e-2,
        7.74545014278341407640e-4,
    ),
    "d": (
        1.0,
        2.05319162663775882187e0,
        1.67638483018380384940e0,
        6.89767334985100004550e-1,
        1.48103976427480074590e-1,
        1.51986665636164571966e-2,
        5.47593808499534494600e-4,
        1.05075007164441684324e-9,
    ),
    "e": (
        6.65790464350110377720e0,
        5.46378491116411436990e0,
        1.78482653991729133580e0,
        2.96560571828504891230e-1,
        2.65321895265761230930e-2,
        1.24266094738807843860e-3,
        2.71155556874348757815e-5,
        2.01033439929228813265e-7,
    ),
    "f": (
        1.0,
        5.99832206555887937690e-1,
        1.36929880922735805310e-1,
        1.48753612908506148525e-2,
        7.86869131145613259100e-4,
        1.84631831751005468180e-5,
        1.42151175831644588870e-7,
        2.04426310338993978564e-15,
    ),
}


def _horner(name: str, r: torch.Tensor) -> torch.Tensor:
    c = _AS241[name]
    v = torch.full_like(r, c[7])
    for k in range(6, -1, -1):
        v = v * r + c[k]
    return v


def normal_quantile(p: torch.Tensor) -> torch.Tensor:  # float64, p's shape
    """The standard normal quantile of ``p`` in (0, 1) (AS 241, ~1e-16), evaluated as the C++
    kernels do: the same polynomials in the same order."""
    p = p.double()
    q = p - 0.5
    r = 0.180625 - q * q
    central = q * _horner("a", r) / _horner("b", r)
    t = torch.sqrt(-torch.log(torch.where(q < 0, p, 1.0 - p)))
    near, far = t - 1.6, t - 5.0
    tail = torch.where(
        t <= 5.0, _horner("c", near) / _horner("d", near), _horner("e", far) / _horner("f", far)
    )
    return torch.where(q.abs() <= 0.425, central, torch.where(q < 0, -tail, tail))


def noise_levels(
    x: torch.Tensor,  # [B, C, H, W]
    gray: torch.Tensor,  # [B] bool
) -> torch.Tensor:  # [B, C, H, W] float, integer levels 0..255
    """The 8-bit level each pixel's shot noise is drawn from: of its luma for gray samples.

    Computed in float32 (float64 for float64 inputs), as the kernels do, so half inputs draw from
    the same levels."""
    x = x.to(accumulation_dtype(x.dtype))
    luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    src = x
    if bool(gray.any()):
        src = torch.where(gray.view(-1, 1, 1, 1), (x * luma).sum(dim=1, keepdim=True), x)
    return torch.round(src.clamp(0.0, 1.0) * 255.0)


def noise_vals(
    levels: torch.Tensor,  # [B, C, H, W] from noise_levels
    sizes: torch.Tensor,  # [B, 2]
    gray: torch.Tensor,  # [B] bool: count channel 0 only (the luma, once per pixel)
) -> torch.Tensor:  # [B] float64: 2^ceil(log2(#distinct levels))
    """Real-ESRGAN's ``vals``: the distinct levels of the sample, rounded up to a power of two."""
    gray_hist = level_histogram_reference(levels[:, :1], sizes)
    hist = torch.where(gray.view(-1, 1), gray_hist, level_histogram_reference(levels, sizes))
    distinct = (hist > 0).sum(dim=1).clamp_min(1).double()
    return 2.0 ** torch.ceil(torch.log2(distinct))


def add_noise_reference(
    x: torch.Tensor,  # [B, C, H, W]
    sizes: torch.Tensor,  # [B, 2]
    kind: torch.Tensor,  # [B] int: 0 none, 1 Gaussian, 2 Poisson
    sigma: torch.Tensor,  # [B] Gaussian sigma on the 0..1 scale
    gray: torch.Tensor,  # [B] bool
    scale: torch.Tensor,  # [B] Poisson scale
    vals: torch.Tensor,  # [B] Poisson vals (noise_vals)
    seed: int,
) -> torch.Tensor:  # [B, C, H, W]: clamp(x + noise, 0, 1), zero outside the extents
    """Gaussian or Poisson noise per sample from counter streams (csrc/include/ebir/noise.h).

    Element ``e = ((b C + c) H + y) W + x`` (c = 0 for all channels of a gray sample) takes its
    Gaussian as the normal quantile of uniform ``e`` of stream ``2 seed``, its Poisson count from
    uniform ``e`` of stream ``2 seed + 1``. Poisson
    noise does not depend on ``x``'s gradient: levels come from the detached image.
    """
    b, c, h, w = x.shape
    dev, dt = x.device, x.dtype
    e = torch.arange(b * c * h * w, device=dev).view(b, c, h, w)
    e = torch.where(gray.to(dev).view(-1, 1, 1, 1), e[:, :1].expand_as(e), e)
    mask64 = (1 << 64) - 1
    seed_g, seed_p = (2 * seed) & mask64, (2 * seed + 1) & mask64
    z = normal_quantile(counter_uniform_at(seed_g, e))
    n_gauss = z.to(torch.float32).to(dt) * sigma.to(dev, dt).view(-1, 1, 1, 1)
    levels = noise_levels(x.detach(), gray.to(dev))
    vals = vals.to(dev, torch.float64)
    distinct, table_of_sample = torch.unique(vals / 255.0, return_inverse=True)
    cdf = poisson_cdf_tables(distinct.cpu()).to(dev)
    rows = table_of_sample.view(-1, 1, 1, 1) * 256 + levels.long()
    counts = invert_cdf(rows.flatten(), counter_uniform_at(seed_p, e).flatten(), cdf)
    n_shot = counts.view(b, c, h, w).to(dt) / vals.to(dt).view(-1, 1, 1, 1) - levels.to(dt) / 255.0
    n_shot = n_shot * scale.to(dev, dt).view(-1, 1, 1, 1)
    k = kind.to(dev).view(-1, 1, 1, 1)
    noise = torch.where(
        k == 1, n_gauss, torch.where(k == 2, n_shot, torch.zeros((), dtype=dt, device=dev))
    )
    out = (x + noise).clamp(0.0, 1.0)
    return out * extent_mask(sizes, h, w, dev)


RESIZE_MODES = ("area", "bilinear", "bicubic")


def resize_ragged_reference(
    x: torch.Tensor,  # [B, C, H, W], valid extents `sizes`
    sizes: torch.Tensor,  # [B, 2] int64
    out_sizes: torch.Tensor,  # [B, 2] int64, each >= 1
    modes: torch.Tensor,  # [B] int64 index into RESIZE_MODES
) -> torch.Tensor:  # [B, C, max out h, max out w], zero outside `out_sizes`
    """Each sample's extent resized to its own size with its own mode, by ``F.interpolate``
    (align_corners=False, no antialias; "area" is adaptive average pooling) on groups of samples
    that share (size, output size, mode); differentiable."""
    sizes, out_sizes, modes = sizes.cpu(), out_sizes.cpu(), modes.cpu()
    keys = torch.cat([sizes, out_sizes, modes.view(-1, 1)], dim=1).tolist()
    groups: dict[tuple[int, ...], list[int]] = {}
    for b, key in enumerate(keys):
        groups.setdefault(tuple(key), []).append(b)
    out_h, out_w = int(out_sizes[:, 0].max()), int(out_sizes[:, 1].max())
    pieces: list[torch.Tensor | None] = [None] * x.shape[0]
    for (h, w, oh, ow, mode), members in groups.items():
        src = x.index_select(0, torch.tensor(members, device=x.device))[..., :h, :w]
        name = RESIZE_MODES[mode]
        if (oh, ow) == (h, w):
            dst = src
        elif name == "area":
            dst = F.adaptive_avg_pool2d(src, (oh, ow))
        else:
            dst = F.interpolate(src, size=(oh, ow), mode=name, align_corners=False)
        for i, b in enumerate(members):
            pieces[b] = F.pad(dst[i], (0, out_w - ow, 0, out_h - oh))
    return torch.stack(pieces)  # type: ignore[arg-type]


def quantize_8bit_reference(x: torch.Tensor) -> torch.Tensor:  # x's shape and dtype
    """``round(clamp(x, 0, 1) * 255) / 255`` with a straight-through gradient: identity inside
    [0, 1], zero outside (the clamp's). Computed in float32 (float64 for float64) and rounded once,
    so half inputs land on the grid as the kernels put them."""
    v = x.to(accumulation_dtype(x.dtype)).clamp(0.0, 1.0)
    return (v + (torch.round(v * 255.0) / 255.0 - v).detach()).to(x.dtype)
