"""The second-order degradation one image at a time in plain PyTorch: the benchmark's baseline.

This is how OSEDiff's training loop (through BasicSR's functions) runs the Real-ESRGAN pipeline:
a Python loop over the batch, per image a reflect pad and a full 21x21 ``conv2d``, an
``F.interpolate``, ``torch.randn`` / ``torch.unique`` + ``torch.poisson`` noise and a DiffJPEG-style
JPEG in tensor ops. It consumes the draws of :class:`ebir_fast.degrade.SecondOrderDegrader`
(``degrader.sample(...)``), so both sides do the same work on the same parameters; only the noise
fields differ (each side has its own random stream). With the noise switched off the two agree to
float rounding (tests/test_baseline_degrade.py), which also makes this file an independent check
of the batched pipeline's semantics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ebir_fast.degrade.noise import LUMA
from ebir_fast.degrade.ragged import RESIZE_MODES
from ebir_fast.degrade.second_order import SecondOrderParams
from ebir_fast.degrade.stages import NoiseParams
from ebir_fast.ops.reference import JPEG_CHROMA_TABLE, JPEG_LUMA_TABLE, mirror_pad


def _label(name: str):
    return torch.profiler.record_function(f"degrade.{name}")


def blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:  # [3, h, w], [21, 21]
    """BasicSR's ``filter2D``: reflect pad by k // 2, depthwise conv2d with the full kernel."""
    with _label("blur"):
        k = kernel.shape[-1]
        x = mirror_pad(mirror_pad(img.unsqueeze(0), k // 2, -2), k // 2, -1)
        weight = kernel.to(img.dtype).expand(3, 1, k, k)
        return F.conv2d(x, weight, groups=3)[0]


def resize(img: torch.Tensor, size: tuple[int, int], mode: int) -> torch.Tensor:
    with _label("resize"):
        if tuple(img.shape[-2:]) == size:
            return img
        name = RESIZE_MODES[mode]
        if name == "area":
            return F.adaptive_avg_pool2d(img.unsqueeze(0), size)[0]
        return F.interpolate(img.unsqueeze(0), size=size, mode=name, align_corners=False)[0]


def noise(img: torch.Tensor, p: NoiseParams, i: int, seed: int) -> torch.Tensor:
    """Real-ESRGAN's Gaussian or Poisson noise for image ``i`` of the batch, then clamp."""
    with _label("noise"):
        gen = torch.Generator().manual_seed(seed)
        gray = bool(p.gray[i])
        if bool(p.gaussian[i]):
            shape = (1, *img.shape[1:]) if gray else img.shape
            n = torch.randn(shape, generator=gen).expand(img.shape) * (float(p.sigma[i]) / 255.0)
        else:
            src = img
            if gray:
                src = (img * torch.tensor(LUMA).view(3, 1, 1)).sum(0, keepdim=True)
            x8 = torch.round(src.clamp(0, 1) * 255.0) / 255.0
            vals = 2.0 ** torch.ceil(torch.log2(torch.tensor(float(len(torch.unique(x8))))))
            n = torch.poisson(x8 * vals, generator=gen) / vals - x8
            n = n.expand(img.shape) * float(p.poisson_scale[i])
        return (img + n).clamp(0.0, 1.0)


def _dct_tensor() -> torch.Tensor:  # [8, 8, 8, 8]
    """DiffJPEG's DCT as one 4-D tensor: T[x, y, u, v] = cos((2x+1)u pi/16) cos((2y+1)v pi/16)."""
    k = torch.arange(8, dtype=torch.float64)
    c = torch.cos((2 * k.view(-1, 1) + 1) * k.view(1, -1) * math.pi / 16)  # [x, u]
    return torch.einsum("xu,yv->xyuv", c, c).float()


_DCT = _dct_tensor()
_ALPHA = torch.tensor([1 / math.sqrt(2)] + [1.0] * 7)
_SCALE = (torch.outer(_ALPHA, _ALPHA) * 0.25).float()  # orthonormal scaling per (u, v)
_LUMA = torch.tensor(JPEG_LUMA_TABLE, dtype=torch.float32)
_CHROMA = torch.tensor(JPEG_CHROMA_TABLE, dtype=torch.float32)


def _blocks(plane: torch.Tensor) -> torch.Tensor:  # [h, w] -> [n, 8, 8]
    h, w = plane.shape
    return plane.view(h // 8, 8, w // 8, 8).permute(0, 2, 1, 3).reshape(-1, 8, 8)


def _unblocks(blocks: torch.Tensor, h: int, w: int) -> torch.Tensor:  # [n, 8, 8] -> [h, w]
    return blocks.view(h // 8, w // 8, 8, 8).permute(0, 2, 1, 3).reshape(h, w)


def _code_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """DCT of (plane - 128) per 8x8 block, quantise with ``table``, round, back."""
    h, w = plane.shape
    coeff = torch.tensordot(_blocks(plane - 128.0), _DCT, dims=2) * _SCALE
    coeff = torch.round(coeff / table) * table
    out = torch.tensordot(coeff * _SCALE, _DCT.permute(2, 3, 0, 1), dims=2)
    return _unblocks(out, h, w) + 128.0


def jpeg(img: torch.Tensor, quality: float) -> torch.Tensor:
    """One image through a DiffJPEG-style JPEG round trip, written here in plain PyTorch.

    libjpeg's tables (scaled by quality, clamped to [1, 255]), edge-replicated to a multiple of
    16, YCbCr, 4:2:0 chroma by 2x2 averaging, 8x8 DCT as DiffJPEG computes it (a 4-D cosine
    tensor), rounding, the inverse, chroma by replication, RGB. Independent of our op code.
    """
    with _label("jpeg"):
        h, w = img.shape[-2:]
        ph, pw = -h % 16, -w % 16
        x = F.pad(img.clamp(0, 1).unsqueeze(0), (0, pw, 0, ph), mode="replicate")[0] * 255.0
        r, g, b = x
        y = 0.299 * r + 0.587 * g + 0.114 * b
        cb = -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128.0
        cr = 0.5 * r - 0.418687589 * g - 0.081312411 * b + 128.0
        scale = 50.0 / quality if quality < 50 else (200.0 - 2.0 * quality) / 100.0
        luma_t = (_LUMA * scale).clamp(1, 255)
        chroma_t = (_CHROMA * scale).clamp(1, 255)
        y = _code_plane(y, luma_t)
        sub = F.avg_pool2d(torch.stack([cb, cr]).unsqueeze(0), 2)[0]
        cb, cr = (
            _code_plane(c, chroma_t).repeat_interleave(2, 0).repeat_interleave(2, 1) - 128.0
            for c in sub
        )
        rgb = torch.stack([y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb])
        return (rgb.clamp(0, 255) / 255.0)[:, :h, :w]


def quantise(img: torch.Tensor) -> torch.Tensor:
    with _label("quantise"):
        return torch.round(img.clamp(0.0, 1.0) * 255.0) / 255.0


def degrade_one(
    img: torch.Tensor, p: SecondOrderParams, i: int, resize_back: bool, seed: int
) -> torch.Tensor:  # [3, H, W] -> [3, h, w]
    """The second-order pipeline for image ``i`` with the batch's draws."""

    def size(t: torch.Tensor) -> tuple[int, int]:
        return int(t[i, 0]), int(t[i, 1])

    x = blur(img, p.stage1.kernel[i])
    x = resize(x, size(p.stage1.size), int(p.stage1.mode[i]))
    x = noise(x, p.stage1.noise, i, seed)
    x = jpeg(x, float(p.stage1.quality[i]))
    x = blur(x, p.stage2.kernel[i])
    x = resize(x, size(p.stage2.size), int(p.stage2.mode[i]))
    x = noise(x, p.stage2.noise, i, seed + 1)
    final, mode = size(p.final_size), int(p.final_mode[i])
    if bool(p.resize_first[i]):
        x = blur(resize(x, final, mode), p.final_kernel[i])
        x = jpeg(x, float(p.stage2.quality[i]))
    else:
        x = jpeg(x, float(p.stage2.quality[i]))
        x = blur(resize(x, final, mode), p.final_kernel[i])
    x = quantise(x)
    if resize_back:
        x = quantise(resize(x, p.image_size, int(p.back_mode[i])))
    return x


def degrade_batch(
    images: torch.Tensor, p: SecondOrderParams, resize_back: bool = True, seed: int = 0
) -> list[torch.Tensor]:  # B x [3, h, w]
    """The per-image loop a data loader runs: one call per image, no batching."""
    return [degrade_one(img, p, i, resize_back, seed + 2 * i) for i, img in enumerate(images)]
