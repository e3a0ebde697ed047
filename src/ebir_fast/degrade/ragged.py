"""Ragged batches: samples of different sizes in one zero-padded tensor.

After a per-sample random resize the samples of a batch differ in size. They stay in one tensor
``[B, C, H, W]`` (H, W the largest extent) with ``sizes [B, 2]`` giving each sample's valid
``(h, w)``; the filter, noise, JPEG and resize kernels take ``sizes`` and work on every sample at
once.
"""

from __future__ import annotations

import torch

from ebir_fast.ops.reference import RESIZE_MODES
from ebir_fast.ops.resize import resize_ragged

__all__ = ["RESIZE_MODES", "full_sizes", "is_full", "resize", "valid_mask"]


def full_sizes(x: torch.Tensor) -> torch.Tensor:  # [B, 2] int64 on the CPU
    """Every sample of ``x`` [B, C, H, W] at full size."""
    return torch.tensor([x.shape[-2], x.shape[-1]]).repeat(x.shape[0], 1)


def valid_mask(sizes: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """``[B, 1, H, W]`` bool: True inside each sample's extent."""
    s = sizes.to(device)
    rows = torch.arange(height, device=device).view(1, -1, 1) < s[:, 0].view(-1, 1, 1)
    cols = torch.arange(width, device=device).view(1, 1, -1) < s[:, 1].view(-1, 1, 1)
    return (rows & cols).unsqueeze(1)


def is_full(sizes: torch.Tensor, x: torch.Tensor) -> bool:
    return bool((sizes[:, 0] == x.shape[-2]).all() and (sizes[:, 1] == x.shape[-1]).all())


def resize(
    x: torch.Tensor,  # [B, C, H, W], valid extents `sizes`
    sizes: torch.Tensor,  # [B, 2] int64, CPU
    out_sizes: torch.Tensor,  # [B, 2] int64, CPU, each >= 1
    modes: torch.Tensor,  # [B] int64 index into RESIZE_MODES
) -> torch.Tensor:  # [B, C, max out h, max out w], zero outside `out_sizes`
    """Resize each sample's valid region to its own size, with its own mode
    (:func:`ebir_fast.ops.resize_ragged`: one pass over the batch; differentiable)."""
    return resize_ragged(x, sizes, out_sizes, modes)
