"""Tiled application of a spatial map with blended overlaps (VAE encode/decode, latent UNet).

``tiled_map(fn, x, tile, overlap, scale)`` runs ``fn`` on overlapping ``tile x tile`` windows of
``x`` and blends the outputs with smooth weights, so peak activation memory is set by the tile, not
the image. ``fn`` maps ``[N, C, h, w]`` to ``[N, C', h * scale, w * scale]`` (scale 1/8 for the VAE
encoder, 8 for the decoder, 1 for the UNet). Windows are placed on a regular grid whose last window
is flush with the border (OSEDiff's placement); weights are a separable raised cosine that never
reaches zero, so every output pixel has a positive total weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tiling:
    """Tile sizes (OSEDiff's defaults), in the input space of each map.

    Attributes:
        encoder: VAE-encoder tile in pixels (overlap a quarter of it, a multiple of 8).
        decoder: VAE-decoder tile in latent pixels (overlap a quarter of it; diffusers' ratio:
            the VAE's receptive field is wide, and a thin overlap leaves visible seams).
        latent: UNet tile in latent pixels.
        latent_overlap: UNet tile overlap in latent pixels.
    """

    encoder: int = 1024
    decoder: int = 224
    latent: int = 96
    latent_overlap: int = 32

    @property
    def encoder_overlap(self) -> int:
        return self.encoder // 32 * 8

    @property
    def decoder_overlap(self) -> int:
        return max(self.decoder // 4, 1)

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, int) or self.encoder < 16 or self.encoder % 8:
            raise ValueError(f"tile.encoder: expected a multiple of 8 >= 16, got {self.encoder!r}")
        for name in ("decoder", "latent"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 4:
                raise ValueError(f"tile.{name}: expected an int >= 4, got {value!r}")
        if not 0 <= self.latent_overlap < self.latent:
            raise ValueError(
                f"tile.latent_overlap: expected 0 <= overlap < latent ({self.latent}), got "
                f"{self.latent_overlap}"
            )


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Window starts covering ``[0, size)``: stride ``tile - overlap``, the last flush right."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((size - tile) / stride) + 1
    starts = [min(i * stride, size - tile) for i in range(count)]
    return sorted(set(starts))


def blend_weights(size: int, device, dtype=torch.float32) -> torch.Tensor:  # [size]
    """Raised-cosine weights, largest at the centre, > 0 at the edges."""
    pos = (torch.arange(size, device=device, dtype=torch.float64) + 0.5) / size
    return (0.5 - 0.5 * torch.cos(2 * math.pi * pos)).clamp_min(1e-3).to(dtype)


def tiled_map(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,  # [B, C, H, W]
    tile: int,
    overlap: int,
    scale: float = 1.0,
) -> torch.Tensor:  # [B, C', H * scale, W * scale]
    """``fn(x)`` computed on overlapping tiles and blended; ``fn(x)`` itself if ``x`` fits.

    The blend accumulates in float32 and returns ``fn``'s dtype.
    """
    _, _, h, w = x.shape
    if h <= tile and w <= tile:
        return fn(x)
    th, tw = min(tile, h), min(tile, w)
    out = weight = None
    dtype = x.dtype
    for y in tile_starts(h, tile, overlap):
        for x0 in tile_starts(w, tile, overlap):
            res = fn(x[:, :, y : y + th, x0 : x0 + tw])
            oh, ow = res.shape[-2:]
            if out is None:
                dtype = res.dtype
                out_hw = (round(h * scale), round(w * scale))
                out = res.new_zeros((x.shape[0], res.shape[1], *out_hw), dtype=torch.float32)
                weight = res.new_zeros((1, 1, *out_hw), dtype=torch.float32)
            wgt = blend_weights(oh, x.device)[:, None] * blend_weights(ow, x.device)[None, :]
            oy, ox = round(y * scale), round(x0 * scale)
            out[:, :, oy : oy + oh, ox : ox + ow] += res.float() * wgt
            weight[:, :, oy : oy + oh, ox : ox + ow] += wgt
    return (out / weight).to(dtype)
