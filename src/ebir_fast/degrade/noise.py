"""Additive Gaussian and Poisson (shot) noise, per sample, for whole (ragged) batches.

Randomness is drawn on a CPU generator seeded from the parameters and then moved to the images'
device, so a draw replays identically on any device and any number of times.
"""

from __future__ import annotations

import torch

from ebir_fast.ops.random import level_histogram, poisson_levels

LUMA = (0.299, 0.587, 0.114)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def gaussian_field(
    seed: int,
    shape: tuple[int, int, int, int],
    gray: torch.Tensor,  # gray: [B] bool
) -> torch.Tensor:  # [B, C, H, W] float32 on the CPU
    """Standard normal noise; samples with ``gray`` get one field shared by their channels.

    (BasicSR draws one gray/colour choice per batch; we draw it per sample.)
    """
    field = torch.randn(shape, generator=_generator(seed))
    return torch.where(gray.view(-1, 1, 1, 1), field[:, :1].expand_as(field), field)


def unique_levels(
    x8: torch.Tensor,  # [B, C, H, W] integer levels 0..255 (any integer or float dtype)
    sizes: torch.Tensor,  # [B, 2]
) -> torch.Tensor:  # [B] int64
    """Number of distinct 8-bit values of each sample inside its extent, with no per-sample loop.

    A per-sample 256-bin histogram (:func:`ebir_fast.ops.random.level_histogram`, one pass over
    the batch) replaces BasicSR's ``torch.unique`` per image.
    """
    hist = level_histogram(x8, sizes)
    return (hist > 0).sum(dim=1)


def poisson_noise(
    x: torch.Tensor,  # [B, 3, H, W] in [0, 1]
    sizes: torch.Tensor,  # [B, 2]
    gray: torch.Tensor,  # [B] bool
    seed: int,
) -> torch.Tensor:  # [B, 3, H, W], unscaled noise (multiply by the sample's scale)
    """Real-ESRGAN's shot noise, computed from the detached image (no gradient flows through it).

    ``x8 = round(x * 255) / 255``; ``vals = 2^ceil(log2(#unique levels))``;
    ``noise = Poisson(x8 * vals) / vals - x8``; gray samples use the luma image for all channels.
    """
    x = x.detach()
    luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    gray_img = (x * luma).sum(dim=1, keepdim=True).expand_as(x)
    src = torch.where(gray.to(x.device).view(-1, 1, 1, 1), gray_img, x).clamp(0, 1)
    levels = torch.round(src * 255.0)
    vals = 2.0 ** torch.ceil(torch.log2(unique_levels(levels, sizes).clamp_min(1).double()))
    x8 = levels / 255.0
    # Rates are level * vals / 255: at most 256 per sample, so the sampler inverts tabulated CDFs
    # with a counter-based stream (the same counts on any device), not torch.poisson on the CPU.
    counts = poisson_levels(levels, vals / 255.0, seed)
    noise = counts.to(x.dtype) / vals.to(x.device, x.dtype).view(-1, 1, 1, 1) - x8
    # Gray samples: one noise field for all channels (the luma image is the same in each).
    return torch.where(gray.to(x.device).view(-1, 1, 1, 1), noise[:, :1].expand_as(noise), noise)
