"""Resize of a ragged batch: each sample from its own extent to its own size, with its own mode.

After a per-sample random resize the samples of a batch differ in size; they live in one
zero-padded tensor with their valid extents beside it. The CPU kernel resizes the whole batch in
one pass (no per-sample calls, no intermediate copies) with ``F.interpolate``'s semantics; a call
that needs a gradient runs the reference, whose backward is torch's.
"""

from __future__ import annotations

import torch

from ebir_fast.ops import _cpu
from ebir_fast.ops._dispatch import resolve_backend
from ebir_fast.ops._gaussian import check_image
from ebir_fast.ops._ragged import check_sizes
from ebir_fast.ops.reference import RESIZE_MODES, resize_ragged_reference

#: Backends with a resize kernel ("reference" always runs).
RESIZE_BACKENDS = ("cpu", "reference")


def resize_ragged(
    x: torch.Tensor,  # [B, C, H, W]
    sizes: torch.Tensor | None,  # [B, 2] valid (h, w) of the input
    out_sizes: torch.Tensor,  # [B, 2] (h, w) of each output, >= 1
    modes: torch.Tensor,  # [B] int64: 0 area, 1 bilinear, 2 bicubic (RESIZE_MODES)
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [B, C, max out h, max out w], zero outside `out_sizes`
    """Resize every sample's extent to its output size with its mode (align_corners=False, no
    antialiasing, "area" = adaptive average pooling: BasicSR's degradation semantics).

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> y = resize_ragged(x, None, torch.tensor([[16, 16], [40, 24]]), torch.tensor([0, 2]))
        >>> y.shape
        torch.Size([2, 3, 40, 24])
    """
    check_image("x", x)
    sizes = check_sizes(sizes, x).cpu()
    b = x.shape[0]
    if not isinstance(out_sizes, torch.Tensor) or out_sizes.shape != (b, 2):
        got = tuple(out_sizes.shape) if isinstance(out_sizes, torch.Tensor) else out_sizes
        raise ValueError(f"out_sizes: expected a [{b}, 2] tensor, got {got}")
    out_sizes = out_sizes.detach().cpu().long()
    if bool((out_sizes < 1).any()):
        raise ValueError(f"out_sizes: expected sizes >= 1, got {out_sizes.tolist()}")
    if not isinstance(modes, torch.Tensor) or modes.shape != (b,):
        got = tuple(modes.shape) if isinstance(modes, torch.Tensor) else modes
        raise ValueError(f"modes: expected a [{b}] tensor, got {got}")
    modes = modes.detach().cpu().long()
    if bool(((modes < 0) | (modes >= len(RESIZE_MODES))).any()):
        raise ValueError(f"modes: expected indices into {RESIZE_MODES}, got {modes.tolist()}")
    name = resolve_backend(backend, x.device.type, RESIZE_BACKENDS)
    if name == "reference" or (torch.is_grad_enabled() and x.requires_grad):
        return resize_ragged_reference(x, sizes, out_sizes, modes)
    from ebir_fast._ext import extension
    from ebir_fast.ops._cpu import view

    out_h, out_w = int(out_sizes[:, 0].max()), int(out_sizes[:, 1].max())
    out = _cpu.empty_like(x, x.shape[0], x.shape[1], out_h, out_w)
    sizes, out_sizes, modes = sizes.contiguous(), out_sizes.contiguous(), modes.contiguous()
    extension("_C").resize(
        (*x.shape, out_h, out_w),
        sizes.data_ptr(),
        out_sizes.data_ptr(),
        modes.data_ptr(),
        view(x),
        view(out),
        torch.get_num_threads(),
    )
    return out
