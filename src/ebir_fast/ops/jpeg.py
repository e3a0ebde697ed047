"""The JPEG round trip (compress, decompress) of a ragged batch with a per-sample float quality.

Semantics are DiffJPEG's (BasicSR, which Real-ESRGAN and OSEDiff train with) with its defects
fixed: tables are clamped to [1, 255] like libjpeg (q = 100 is safe, q < 20 is not harsher than
a real encoder), they are constants, and the quality argument is never written to. Each sample is
edge-replicated from its extent to a multiple of 16 as an encoder pads. Rounding of the quantised
coefficients is straight-through: the forward is a JPEG, the backward the linear map around it.
"""

from __future__ import annotations

import torch

from ebir_fast.ops._dispatch import resolve_backend
from ebir_fast.ops._ragged import check_quality, check_rgb, check_sizes
from ebir_fast.ops.reference import jpeg_roundtrip_reference

#: Backends with a JPEG kernel ("reference" always runs).
JPEG_BACKENDS = ("reference",)


def jpeg_roundtrip(
    x: torch.Tensor,  # [B, 3, H, W] RGB in [0, 1]
    quality: float | torch.Tensor,  # [B] or a number, in (0, 100]
    sizes: torch.Tensor | None = None,  # [B, 2] int64 (h, w)
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [B, 3, H, W], dtype of x, in [0, 1]
    """Compress and decompress every sample as a 4:2:0 JPEG of (float) quality ``quality``.

    Args:
        x: RGB images ``[B, 3, H, W]`` in [0, 1] (values outside are clamped by the decoder's
            0..255 clamp, not before the transform).
        quality: libjpeg quality per sample, a float in (0, 100].
        sizes: valid ``(h, w)`` per sample, ``[B, 2]``; None: every sample is full-size.
        backend: "auto", "cuda", "cpu" or "reference".

    Example:
        >>> x = torch.rand(2, 3, 40, 24)
        >>> jpeg_roundtrip(x, torch.tensor([30.0, 95.0])).shape
        torch.Size([2, 3, 40, 24])
    """
    check_rgb("x", x)
    q = check_quality(quality, x)
    sizes = check_sizes(sizes, x)
    name = resolve_backend(backend, x.device.type, JPEG_BACKENDS)
    if name == "reference":
        return jpeg_roundtrip_reference(x, q, sizes)
    raise AssertionError(f"unreachable: no JPEG kernel for {name}")
