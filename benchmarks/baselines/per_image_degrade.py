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

import torch
import torch.nn.functional as F

from ebir_fast.degrade.noise import LUMA
from ebir_fast.degrade.ragged import RESIZE_MODES
from ebir_fast.degrade.second_order import SecondOrderParams
from ebir_fast.degrade.stages import NoiseParams
from ebir_fast.ops.reference import jpeg_roundtrip_reference, mirror_pad


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


def jpeg(img: torch.Tensor, quality: float) -> torch.Tensor:
    """DiffJPEG's round trip of one image (the same tables and padding as ours)."""
    with _label("jpeg"):
        h, w = img.shape[-2:]
        q = torch.tensor([quality])
        return jpeg_roundtrip_reference(img.clamp(0, 1).unsqueeze(0), q, torch.tensor([[h, w]]))[0]


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
