"""Colour correction of a restored image against its input (OSEDiff's / StableSR's colour fix).

One-step diffusion restorers can shift colours; both fixes keep the restored image's structure and
take the colour from the input:

- ``adain``: per image and channel, the output is renormalised to the input's mean and standard
  deviation.
- ``wavelet``: a 5-level à-trous decomposition (3x3 binomial blur dilated 1, 2, 4, 8, 16, edges
  replicated): the output's high-frequency detail plus the input's low-frequency residual.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

COLOR_FIXES = ("adain", "wavelet")


def adain_color_fix(
    content: torch.Tensor,  # [B, C, H, W]
    source: torch.Tensor,  # [B, C, h, w] (any size)
    eps: float = 1e-5,
) -> torch.Tensor:  # [B, C, H, W]
    """``content`` renormalised to ``source``'s per-channel mean and standard deviation."""
    c = content.float()
    s = source.float().to(c.device)
    c_mean, c_std = c.mean((2, 3), keepdim=True), c.std((2, 3), keepdim=True, correction=0)
    s_mean, s_std = s.mean((2, 3), keepdim=True), s.std((2, 3), keepdim=True, correction=0)
    return ((c - c_mean) / (c_std + eps) * s_std + s_mean).to(content.dtype)


def _wavelet_low(x: torch.Tensor, levels: int) -> torch.Tensor:
    """The low-frequency residual after ``levels`` dilated binomial blurs."""
    k1 = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    kernel = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, 3, 3)
    low = x
    for i in range(levels):
        d = 2**i
        # Replicate padding needs the pad to be smaller than the side only for "reflect".
        low = F.conv2d(
            F.pad(low, (d, d, d, d), mode="replicate"), kernel, dilation=d, groups=x.shape[1]
        )
    return low


def wavelet_color_fix(
    content: torch.Tensor,  # [B, C, H, W]
    source: torch.Tensor,  # [B, C, H, W]
    levels: int = 5,
) -> torch.Tensor:  # [B, C, H, W]
    """``content``'s high frequencies plus ``source``'s low frequencies."""
    if source.shape[-2:] != content.shape[-2:]:
        raise ValueError(
            f"source: the wavelet fix needs the content's size {list(content.shape[-2:])}, got "
            f"{list(source.shape[-2:])}"
        )
    c = content.float()
    s = source.float().to(c.device)
    return (c - _wavelet_low(c, levels) + _wavelet_low(s, levels)).to(content.dtype)


def color_fix(content: torch.Tensor, source: torch.Tensor, method: str | None) -> torch.Tensor:
    """Apply ``method`` (``"adain"``, ``"wavelet"`` or None) and clamp to [0, 1]."""
    if method is None:
        return content
    if method == "adain":
        out = adain_color_fix(content, source)
    elif method == "wavelet":
        out = wavelet_color_fix(content, source)
    else:
        raise ValueError(f"color_fix: expected one of {COLOR_FIXES} or None, got {method!r}")
    return out.clamp(0, 1)
