"""SPIRE's parameterised degradation, which also returns the restoration prompt of each sample.

Each of Gaussian blur (sigma 0.2-3), down-sampling (factor 1-7, resized back), Gaussian noise
(sigma 0-0.12 on the 0..1 scale) and JPEG (q 30-92) is applied with p = 0.5, in that order, and
the prompt names what was done with its parameters, e.g.
"Deblur with sigma 2.1; Upsample to 3.5x; Denoise with sigma 0.05; Dejpeg with quality 41;".
A fraction ``realesrgan_prob`` of the samples get the Real-ESRGAN pipeline (``lq``) instead,
with the prompt "Remove all degradation"; a sample that drew no step gets "No degradation;".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ebir_fast.degrade import stages
from ebir_fast.degrade.base import Degrader
from ebir_fast.degrade.kernels import (
    anisotropic_kernels,
    check_prob,
    check_range,
    coin,
    pulse_kernels,
    uniform,
)
from ebir_fast.degrade.presets import SecondOrderConfig, lq
from ebir_fast.degrade.ragged import full_sizes
from ebir_fast.degrade.second_order import SecondOrderDegrader, SecondOrderParams
from ebir_fast.degrade.stages import resize

REMOVE_ALL = "Remove all degradation"
NO_DEGRADATION = "No degradation;"


@dataclass
class ParamConfig:
    """SPIRE's parameterised pipeline (docs/degradation.md section 5).

    Attributes:
        step_prob: probability of each of the four steps.
        blur_sigma_range: isotropic Gaussian sigma in pixels (kernel size 2 * ceil(3 sigma) + 1,
            at most 21).
        down_range: down-sampling factor; the image is resized back to its size afterwards.
        noise_range: Gaussian noise sigma on the 0..1 scale (colour noise).
        jpeg_range: JPEG quality.
        realesrgan_prob: share of samples degraded by ``realesrgan`` instead (ebir-fast's default;
            the spec fixes no ratio), with the prompt "Remove all degradation".
        realesrgan: the Real-ESRGAN config for those samples.
        resize_modes: interpolation modes of the down-sampling and the resize back.
    """

    step_prob: float = 0.5
    blur_sigma_range: tuple[float, float] = (0.2, 3.0)
    down_range: tuple[float, float] = (1.0, 7.0)
    noise_range: tuple[float, float] = (0.0, 0.12)
    jpeg_range: tuple[float, float] = (30.0, 92.0)
    realesrgan_prob: float = 0.2
    realesrgan: SecondOrderConfig = field(default_factory=lq)
    resize_modes: tuple[str, ...] = ("bilinear", "bicubic")

    def __post_init__(self) -> None:
        check_prob("step_prob", self.step_prob)
        check_prob("realesrgan_prob", self.realesrgan_prob)
        check_range("blur_sigma_range", self.blur_sigma_range, low=1e-3, high=10.0 / 3.0)
        check_range("down_range", self.down_range, low=1.0)
        check_range("noise_range", self.noise_range, high=1.0)
        check_range("jpeg_range", self.jpeg_range, low=1.0, high=100.0)
        if not self.realesrgan.resize_back:
            raise ValueError("realesrgan: expected a config with resize_back=True (same size)")


def param() -> ParamConfig:
    """SPIRE's parameterised pipeline with restoration prompts."""
    return ParamConfig()


@dataclass
class ParamParams:
    """Every draw of the parameterised pipeline, and the prompt of each sample."""

    image_size: tuple[int, int]
    realesrgan: torch.Tensor  # [B] bool
    blur: torch.Tensor  # [B] bool
    sigma: torch.Tensor  # [B]
    kernel: torch.Tensor  # [B, 21, 21] float64 (pulse where no blur)
    down: torch.Tensor  # [B] bool
    factor: torch.Tensor  # [B]
    down_size: torch.Tensor  # [B, 2]
    down_mode: torch.Tensor  # [B]
    back_mode: torch.Tensor  # [B]
    noise: torch.Tensor  # [B] bool
    noise_sigma: torch.Tensor  # [B], 0..1 scale
    noise_seed: int
    jpeg: torch.Tensor  # [B] bool
    quality: torch.Tensor  # [B]
    second_order: SecondOrderParams | None  # for the Real-ESRGAN samples, in batch order
    prompts: list[str]

    @property
    def batch_size(self) -> int:
        return self.blur.numel()


def _prompt(blur, sigma, down, factor, noise, noise_sigma, jpeg, quality) -> str:
    parts = []
    if blur:
        parts.append(f"Deblur with sigma {sigma:.1f};")
    if down:
        parts.append(f"Upsample to {factor:.1f}x;")
    if noise:
        parts.append(f"Denoise with sigma {noise_sigma:.2f};")
    if jpeg:
        parts.append(f"Dejpeg with quality {round(quality)};")
    return " ".join(parts) or NO_DEGRADATION


class ParamDegrader(Degrader):
    """Batched SPIRE degradation; ``params.prompts`` holds the restoration prompts.

    Example:
        >>> degrader = ParamDegrader(param())
        >>> params = degrader.sample(2, (64, 64), torch.Generator().manual_seed(0))
        >>> degraded = degrader.apply(torch.rand(2, 3, 64, 64), params)
        >>> len(params.prompts)
        2
    """

    def __init__(self, config: ParamConfig):
        if not isinstance(config, ParamConfig):
            raise TypeError(f"config: expected a ParamConfig, got {type(config).__name__}")
        self.config = config
        self._realesrgan = SecondOrderDegrader(config.realesrgan)

    def output_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return image_size

    def sample(self, batch_size, image_size, generator=None) -> ParamParams:
        n, (h, w) = self._check_sample_args(batch_size, image_size, generator)
        cfg, g = self.config, generator
        realesrgan = coin(n, cfg.realesrgan_prob, g)
        blur, down, noise, jpeg = (coin(n, cfg.step_prob, g) for _ in range(4))
        sigma = uniform(n, *cfg.blur_sigma_range, g)
        # Quantise what the prompt states to what it prints, so the prompt is exact.
        sigma = torch.round(sigma * 10) / 10
        size = (2 * torch.ceil(3 * sigma) + 1).clamp(max=21).long()
        kernel = anisotropic_kernels(
            size,
            sigma,
            sigma,
            torch.zeros(n, dtype=torch.float64),
            torch.ones(n, dtype=torch.float64),
            torch.zeros(n, dtype=torch.long),
        )
        kernel = torch.where(blur.view(-1, 1, 1), kernel, pulse_kernels(n))
        factor = torch.round(uniform(n, *cfg.down_range, g) * 10) / 10
        noise_sigma = torch.round(uniform(n, *cfg.noise_range, g) * 100) / 100
        quality = torch.round(uniform(n, *cfg.jpeg_range, g))
        down_size = stages.scaled_sizes(h, w, torch.where(down, 1.0 / factor, 1.0))
        down_mode = stages.sample_modes(n, cfg.resize_modes, g)
        back_mode = stages.sample_modes(n, cfg.resize_modes, g)
        noise_seed = int(torch.randint(0, 2**62, (), generator=g))
        n_re = int(realesrgan.sum())
        second = self._realesrgan.sample(n_re, (h, w), g) if n_re else None
        prompts = [
            REMOVE_ALL if re else _prompt(*vals)
            for re, *vals in zip(
                realesrgan.tolist(),
                blur.tolist(),
                sigma.tolist(),
                down.tolist(),
                factor.tolist(),
                noise.tolist(),
                noise_sigma.tolist(),
                jpeg.tolist(),
                quality.tolist(),
                strict=True,
            )
        ]
        return ParamParams(
            image_size=(h, w),
            realesrgan=realesrgan,
            blur=blur,
            sigma=sigma,
            kernel=kernel,
            down=down,
            factor=factor,
            down_size=down_size,
            down_mode=down_mode,
            back_mode=back_mode,
            noise=noise,
            noise_sigma=noise_sigma,
            noise_seed=noise_seed,
            jpeg=jpeg,
            quality=quality,
            second_order=second,
            prompts=prompts,
        )

    def _apply(self, x: torch.Tensor, p: ParamParams) -> torch.Tensor:
        h, w = p.image_size
        out = x
        idx = torch.nonzero(~p.realesrgan).flatten()
        if idx.numel():
            sub = x.index_select(0, idx.to(x.device))
            sizes = full_sizes(sub)
            sub = stages.blur(sub, sizes, p.kernel[idx])
            sub = resize(sub, sizes, p.down_size[idx], p.down_mode[idx])
            sizes = p.down_size[idx]
            noise = stages.NoiseParams(
                gaussian=torch.ones(idx.numel(), dtype=torch.bool),
                sigma=p.noise_sigma[idx] * 255.0,
                gray=torch.zeros(idx.numel(), dtype=torch.bool),
                poisson_scale=torch.zeros(idx.numel(), dtype=torch.float64),
                seed=p.noise_seed,
            )
            sub = stages.apply_noise(sub, sizes, noise, p.noise[idx])
            jpeg_on = p.jpeg[idx]
            if jpeg_on.any():
                compressed = stages.jpeg(sub, sizes, p.quality[idx])
                sub = torch.where(jpeg_on.to(x.device).view(-1, 1, 1, 1), compressed, sub)
            back = torch.tensor([[h, w]]).expand(idx.numel(), 2)
            sub = stages.quantise(resize(sub, sizes, back, p.back_mode[idx]))
            out = out.index_copy(0, idx.to(x.device), sub)
        re_idx = torch.nonzero(p.realesrgan).flatten()
        if re_idx.numel():
            sub = self._realesrgan._apply(x.index_select(0, re_idx.to(x.device)), p.second_order)
            out = out.index_copy(0, re_idx.to(x.device), sub)
        return out
