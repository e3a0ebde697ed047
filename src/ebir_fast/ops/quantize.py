"""8-bit rounding of an image batch, ``round(clamp(x, 0, 1) * 255) / 255``, in one pass.

The last step of every degradation pipeline: four elementwise torch passes become one. The
gradient is straight-through (identity inside [0, 1]); a call that needs it runs the reference.
"""

from __future__ import annotations

import torch

from ebir_fast.ops import _cpu
from ebir_fast.ops._dispatch import resolve_backend
from ebir_fast.ops._gaussian import check_image
from ebir_fast.ops.reference import quantize_8bit_reference

#: Backends with a kernel ("reference" always runs).
QUANTIZE_BACKENDS = ("cpu", "reference")


def quantize_8bit(x: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:  # [B, C, H, W]
    """Round ``x [B, C, H, W]`` to the 8-bit grid after clamping it to [0, 1] (half to even).

    Example:
        >>> quantize_8bit(torch.tensor([0.5, 1.2, -0.1, 0.3]).view(1, 1, 2, 2)).flatten()
        tensor([0.5020, 1.0000, 0.0000, 0.3020])
    """
    check_image("x", x)
    name = resolve_backend(backend, x.device.type, QUANTIZE_BACKENDS)
    if name == "reference" or (torch.is_grad_enabled() and x.requires_grad):
        return quantize_8bit_reference(x)
    from ebir_fast._ext import extension
    from ebir_fast.ops._cpu import view

    out = _cpu.empty_like(x)
    extension("_C").quantize_8bit(tuple(x.shape), view(x), view(out), torch.get_num_threads())
    return out
