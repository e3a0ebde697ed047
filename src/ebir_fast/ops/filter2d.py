"""Per-sample 2D filtering of a ragged batch: each sample its own kernel, its own valid extent.

``out[b, c, y, x] = sum_ij k[b, i, j] * x[b, c, m(y + i - R, h_b), m(x + j - R, w_b)]`` inside the
sample's extent ``(h_b, w_b)`` and 0 outside, where ``m`` mirrors at the extent (scipy's "mirror",
repeated for extents smaller than the radius, so every extent >= 1 is defined). This is the blur of
the degradation pipelines (Real-ESRGAN reflect-pads then cross-correlates; its reflect pad fails
when a side is <= K // 2, ours does not).
"""

from __future__ import annotations

import torch

from ebir_fast.ops._dispatch import resolve_backend
from ebir_fast.ops._gaussian import check_image
from ebir_fast.ops._ragged import check_kernels, check_sizes
from ebir_fast.ops.reference import filter2d_reference

#: Largest kernel the fast backends take (the degradation kernels are at most 21 x 21).
MAX_FILTER_SIZE = 21

#: Backends with a filter2d kernel ("reference" always runs).
FILTER2D_BACKENDS = ("reference",)


def filter2d(
    x: torch.Tensor,  # [B, C, H, W]
    kernels: torch.Tensor,  # [B, K, K]
    sizes: torch.Tensor | None = None,  # [B, 2] int64 (h, w)
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [B, C, H, W], dtype of x
    """Cross-correlate each sample with its kernel, mirror border at its extent, zero outside it.

    Args:
        x: images ``[B, C, H, W]`` (computed in float32, float64 for float64 inputs).
        kernels: ``[B, K, K]``, K odd, at most :data:`MAX_FILTER_SIZE`.
        sizes: valid ``(h, w)`` per sample, ``[B, 2]``; None: every sample is full-size.
        backend: "auto", "cuda", "triton", "cpu" or "reference".

    Differentiable in ``x`` and ``kernels``.

    Example:
        >>> x = torch.rand(2, 3, 32, 48)
        >>> k = torch.full((2, 5, 5), 1 / 25)
        >>> filter2d(x, k, torch.tensor([[32, 48], [20, 30]])).shape
        torch.Size([2, 3, 32, 48])
    """
    check_image("x", x)
    kernels = check_kernels(kernels, x, MAX_FILTER_SIZE)
    sizes = check_sizes(sizes, x)
    name = resolve_backend(backend, x.device.type, FILTER2D_BACKENDS)
    if name == "reference":
        return filter2d_reference(x, kernels, sizes)
    raise AssertionError(f"unreachable: no filter2d kernel for {name}")
