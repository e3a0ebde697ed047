"""Noise statistics the pipelines and their tests share.

The noise itself is applied by :func:`ebir_fast.ops.add_noise` (Gaussian or Poisson per sample,
from counter-based streams, in one pass over each sample's extent); see ``stages.apply_noise``.
"""

from __future__ import annotations

import torch

from ebir_fast.ops.random import level_histogram
from ebir_fast.ops.reference import LUMA

__all__ = ["LUMA", "unique_levels"]


def unique_levels(
    x8: torch.Tensor,  # [B, C, H, W] integer levels 0..255 (any integer or float dtype)
    sizes: torch.Tensor,  # [B, 2]
) -> torch.Tensor:  # [B] int64
    """Number of distinct 8-bit values of each sample inside its extent, with no per-sample loop.

    A per-sample 256-bin histogram (:func:`ebir_fast.ops.random.level_histogram`, one pass over
    the batch) replaces BasicSR's ``torch.unique`` per image.
    """
    return (level_histogram(x8, sizes) > 0).sum(dim=1)
