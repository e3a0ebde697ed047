"""Real-ESRGAN's second-order degradation (presets ``lq`` and ``elq``), batched and replayable.

Stage 1: blur -> resize -> noise -> JPEG. Stage 2: blur (p = blur_prob) -> resize relative to the
original size / scale -> noise -> final step, a per-sample coin: (a) resize to size / scale ->
sinc -> JPEG, or (b) JPEG -> resize -> sinc. Then 8-bit rounding and, with ``resize_back``, a
resize back to the input size and a second rounding. Unlike BasicSR every choice is drawn per
sample (BasicSR shares the resize, mode, noise type and order draws across the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ebir_fast.degrade import stages
from ebir_fast.degrade.base import Degrader
from ebir_fast.degrade.kernels import coin, pulse_kernels, sample_kernels, sinc_kernels, uniform
from ebir_fast.degrade.presets import SecondOrderConfig, StageConfig
from ebir_fast.degrade.ragged import full_sizes
from ebir_fast.degrade.stages import resize


@dataclass
class StageParams:
    """Every draw of one stage; ``[B]``-leading CPU tensors."""

    kernel: torch.Tensor  # [B, 21, 21] float64 (the pulse where the stage does not blur)
    size: torch.Tensor  # [B, 2] int64: size after the resize
    mode: torch.Tensor  # [B] int64 resize mode
    noise: stages.NoiseParams
    quality: torch.Tensor  # [B] float64 JPEG quality


@dataclass
class SecondOrderParams:
    """Every draw of the second-order pipeline for one batch (replay with ``apply``)."""

    image_size: tuple[int, int]
    stage1: StageParams
    stage2: StageParams
    resize_first: torch.Tensor  # [B] bool: final step (a) resize -> sinc -> JPEG, else (b)
    final_size: torch.Tensor  # [B, 2] int64: size / scale
    final_mode: torch.Tensor  # [B] int64
    final_kernel: torch.Tensor  # [B, 21, 21] float64: sinc or pulse
    back_mode: torch.Tensor  # [B] int64: mode of the resize back (if resize_back)

    @property
    def batch_size(self) -> int:
        return self.final_mode.numel()


def _sample_stage(
    batch: int,
    cfg: StageConfig,
    sizes: torch.Tensor,  # [B, 2] float64, the reference size the resize scales
    modes: tuple[str, ...],
    generator: torch.Generator | None,
) -> StageParams:
    kernel, _ = sample_kernels(batch, cfg.kernel, generator)
    blurs = coin(batch, cfg.blur_prob, generator)
    kernel = torch.where(blurs.view(-1, 1, 1), kernel, pulse_kernels(batch))
    scale = stages.sample_resize(batch, cfg.resize_prob, cfg.resize_range, generator)
    size = (
        torch.stack(
            [torch.floor(sizes[:, 0] * scale + 1e-9), torch.floor(sizes[:, 1] * scale + 1e-9)],
            dim=1,
        )
        .clamp_min(1)
        .long()
    )
    return StageParams(
        kernel=kernel,
        size=size,
        mode=stages.sample_modes(batch, modes, generator),
        noise=stages.sample_noise(
            batch,
            cfg.gaussian_noise_prob,
            cfg.noise_range,
            cfg.poisson_scale_range,
            cfg.gray_noise_prob,
            generator,
        ),
        quality=uniform(batch, *cfg.jpeg_range, generator),
    )


class SecondOrderDegrader(Degrader):
    """Batched Real-ESRGAN second-order degradation; see the module docstring.

    Example:
        >>> from ebir_fast.degrade import create_degrader
        >>> degrader = create_degrader("lq")
        >>> hq = torch.rand(2, 3, 64, 64)
        >>> lq = degrader(hq, generator=torch.Generator().manual_seed(0))
        >>> lq.shape
        torch.Size([2, 3, 64, 64])
    """

    config: SecondOrderConfig

    def __init__(self, config: SecondOrderConfig):
        if not isinstance(config, SecondOrderConfig):
            raise TypeError(f"config: expected a SecondOrderConfig, got {type(config).__name__}")
        self.config = config

    def output_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        if self.config.resize_back:
            return image_size
        s = self.config.scale_range[0]
        return max(1, int(image_size[0] / s + 1e-9)), max(1, int(image_size[1] / s + 1e-9))

    def sample(
        self,
        batch_size: int,
        image_size: tuple[int, int],
        generator: torch.Generator | None = None,
    ) -> SecondOrderParams:
        batch_size, (h, w) = self._check_sample_args(batch_size, image_size, generator)
        cfg = self.config
        original = torch.tensor([[h, w]], dtype=torch.float64).expand(batch_size, 2)
        stage1 = _sample_stage(batch_size, cfg.stage1, original, cfg.resize_modes, generator)
        scale = uniform(batch_size, *cfg.scale_range, generator).view(-1, 1)
        target = original / scale  # [B, 2] size / scale, before flooring
        stage2 = _sample_stage(batch_size, cfg.stage2, target, cfg.resize_modes, generator)
        final_size = torch.floor(target + 1e-9).clamp_min(1).long()
        sinc_sizes = torch.as_tensor(cfg.stage2.kernel.sizes)[
            torch.randint(len(cfg.stage2.kernel.sizes), (batch_size,), generator=generator)
        ]
        # The final sinc's cutoff is U(pi/3, pi) whatever its size (Real-ESRGAN's rule).
        cutoff = uniform(batch_size, torch.pi / 3, torch.pi, generator)
        use_sinc = coin(batch_size, cfg.final_sinc_prob, generator)
        final_kernel = torch.where(
            use_sinc.view(-1, 1, 1), sinc_kernels(sinc_sizes, cutoff), pulse_kernels(batch_size)
        )
        return SecondOrderParams(
            image_size=(h, w),
            stage1=stage1,
            stage2=stage2,
            resize_first=coin(batch_size, 0.5, generator),
            final_size=final_size,
            final_mode=stages.sample_modes(batch_size, cfg.resize_modes, generator),
            final_kernel=final_kernel,
            back_mode=stages.sample_modes(batch_size, cfg.resize_modes, generator),
        )

    def _apply(self, x: torch.Tensor, p: SecondOrderParams) -> torch.Tensor:
        sizes = full_sizes(x)
        # Stage 1.
        x = stages.blur(x, sizes, p.stage1.kernel)
        x, sizes = resize(x, sizes, p.stage1.size, p.stage1.mode), p.stage1.size
        x = stages.apply_noise(x, sizes, p.stage1.noise)
        x = stages.jpeg(x, sizes, p.stage1.quality)
        # Stage 2.
        x = stages.blur(x, sizes, p.stage2.kernel)
        x, sizes = resize(x, sizes, p.stage2.size, p.stage2.mode), p.stage2.size
        x = stages.apply_noise(x, sizes, p.stage2.noise)
        # Final step: the two orders run as two sub-batches, then merge.
        out_h, out_w = int(p.final_size[:, 0].max()), int(p.final_size[:, 1].max())
        out = x.new_zeros(x.shape[0], x.shape[1], out_h, out_w)
        for first in (True, False):
            idx = torch.nonzero(p.resize_first == first).flatten()
            if idx.numel() == 0:
                continue
            sub, sub_sizes = x.index_select(0, idx.to(x.device)), sizes[idx]
            final = p.final_size[idx]
            if first:
                sub = resize(sub, sub_sizes, final, p.final_mode[idx])
                sub = stages.blur(sub, final, p.final_kernel[idx])
                sub = stages.jpeg(sub, final, p.stage2.quality[idx])
            else:
                sub = stages.jpeg(sub, sub_sizes, p.stage2.quality[idx])
                sub = resize(sub, sub_sizes, final, p.final_mode[idx])
                sub = stages.blur(sub, final, p.final_kernel[idx])
            if torch.is_grad_enabled() and sub.requires_grad:
                sub = F.pad(sub, (0, out_w - sub.shape[-1], 0, out_h - sub.shape[-2]))
                out = out.index_copy(0, idx.to(x.device), sub)
            else:  # no graph: write the sub-batch into place, without padding or copying `out`
                out[idx.to(x.device), :, : sub.shape[-2], : sub.shape[-1]] = sub
        x = stages.quantise(out)
        if self.config.resize_back:
            h, w = p.image_size
            back = torch.tensor([[h, w]]).expand(x.shape[0], 2)
            x = stages.quantise(resize(x, p.final_size, back, p.back_mode))
        return x
