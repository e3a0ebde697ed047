"""Counter-based random draws that replay identically on every device and thread count.

Element ``e`` of stream ``seed`` is a pure function of ``(seed, offset + e)``
(csrc/include/ebir/counter_rng.h), so a draw needs no generator state and a sub-range of a draw is
the same numbers as the whole draw's slice.
"""

from __future__ import annotations

import torch

from ebir_fast.ops._dispatch import resolve_backend
from ebir_fast.ops.reference import (
    level_histogram_reference,
    poisson_cdf_tables,
    poisson_levels_reference,
)

#: Backends with a Poisson kernel ("reference" always runs).
POISSON_BACKENDS = ("cpu", "reference")


def poisson_levels(
    levels: torch.Tensor,  # [B, ...] integer values 0..255
    rate_scale: torch.Tensor,  # [B] rate per level step: rate = level * rate_scale[b]
    seed: int,
    *,
    offset: int = 0,
    backend: str = "auto",
) -> torch.Tensor:  # [B, ...] float32 counts
    """Exact Poisson samples of rate ``levels * rate_scale[b]``, by inversion of tabulated CDFs.

    This is the shape of Real-ESRGAN's shot noise (an 8-bit image times ``vals / 255``, ``vals``
    a power of two per sample), where the rates take at most 256 values per sample, so one CDF table
    per distinct scale replaces a general Poisson sampler. Deterministic in ``(seed, offset)``.

    Example:
        >>> levels = torch.randint(0, 256, (2, 3, 8, 8)).float()
        >>> poisson_levels(levels, torch.tensor([1.0, 0.5]), seed=7).shape
        torch.Size([2, 3, 8, 8])
    """
    if not isinstance(levels, torch.Tensor) or levels.dim() < 1 or levels.numel() == 0:
        raise ValueError("levels: expected a non-empty [B, ...] tensor of integers 0..255")
    b = levels.shape[0]
    if not isinstance(rate_scale, torch.Tensor) or rate_scale.shape != (b,):
        got = tuple(rate_scale.shape) if isinstance(rate_scale, torch.Tensor) else rate_scale
        raise ValueError(f"rate_scale: expected a [{b}] tensor, got {got}")
    scale = rate_scale.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(scale).all()) or bool((scale < 0).any()):
        raise ValueError(f"rate_scale: expected finite values >= 0, got {scale.tolist()}")
    lv = levels.detach()
    if bool(((lv < 0) | (lv > 255) | (lv != torch.round(lv))).any()):
        raise ValueError("levels: expected integer values in 0..255")
    distinct, table_of_sample = torch.unique(scale, return_inverse=True)
    cdf = poisson_cdf_tables(distinct)
    name = resolve_backend(backend, levels.device.type, POISSON_BACKENDS)
    if name == "reference":
        return poisson_levels_reference(
            lv, table_of_sample.to(levels.device), cdf.to(levels.device), seed, offset
        )
    from ebir_fast._ext import extension

    flat = lv.to(torch.float32).contiguous()
    counts = torch.empty_like(flat)
    extension("_C").poisson_levels(
        flat.numel(),
        b,
        flat.data_ptr(),
        table_of_sample.contiguous().data_ptr(),
        cdf.data_ptr(),
        cdf.shape[-1],
        int(seed) & ((1 << 64) - 1),
        int(offset),
        counts.data_ptr(),
        torch.get_num_threads(),
    )
    return counts


def level_histogram(
    levels: torch.Tensor,  # [B, C, H, W] integer values 0..255
    sizes: torch.Tensor,  # [B, 2] valid (h, w) per sample
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [B, 256] int64
    """How often each 8-bit level occurs in each sample's extent (for Poisson's ``vals``)."""
    b, c, h, w = levels.shape
    name = resolve_backend(backend, levels.device.type, POISSON_BACKENDS)
    if name == "reference":
        return level_histogram_reference(levels, sizes)
    from ebir_fast._ext import extension

    flat = levels.detach().to(torch.float32).contiguous()
    hist = torch.empty(b, 256, dtype=torch.int64)
    extension("_C").level_histogram(
        flat.data_ptr(),
        sizes.to("cpu", torch.int64).contiguous().data_ptr(),
        b,
        c,
        h,
        w,
        hist.data_ptr(),
        torch.get_num_threads(),
    )
    return hist
