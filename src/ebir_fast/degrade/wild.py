"""DA-CLIP's wild-IR degradation: three phases, each a per-sample random order of its steps.

Phase 1: {blur p 0.8, resize U(0.5, 1.4) p 0.8, noise p 0.4, JPEG q 60-95 p 0.4}.
Phase 2: {blur p 0.4 (sigma 0.2-1.5, sizes 5-9), noise p 0.2}.
Phase 3: {blur p 0.8 (sinc p 0.8, sigma 0.2-1.0), resize back to the input size, JPEG q 80-100
p 0.4}. Kernels include defocus, box and motion blur; a non-sinc blur is followed, with p 0.1, by
a Wiener deconvolution with the same kernel (``K = 0.006``), which adds the ringing of real
sharpening. The output has the input's size and lies on the 8-bit grid.

Every sample draws its own order (a permutation per phase); the batch runs step position by step
position, each step on the sub-batch whose permutation puts it there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ebir_fast.degrade import stages
from ebir_fast.degrade.base import Degrader
from ebir_fast.degrade.kernels import (
    KERNEL_SIZE,
    KernelConfig,
    check_prob,
    check_range,
    coin,
    pulse_kernels,
    sample_kernels,
    uniform,
)
from ebir_fast.degrade.ragged import RESIZE_MODES, full_sizes, valid_mask
from ebir_fast.degrade.stages import resize

WILD_FAMILIES = {
    "iso": 0.35,
    "aniso": 0.2,
    "generalized_iso": 0.1,
    "generalized_aniso": 0.03,
    "plateau_iso": 0.1,
    "plateau_aniso": 0.03,
    "defocus": 0.1,
    "box": 0.03,
    "motion": 0.03,
}


def _wild_kernel(**overrides) -> KernelConfig:
    return KernelConfig(**{"family_probs": dict(WILD_FAMILIES), **overrides})


@dataclass
class WildConfig:
    """DA-CLIP wild-IR settings (docs/degradation.md section 5).

    The noise settings are Real-ESRGAN's stage-1 ones (the spec fixes only the probabilities).

    Attributes:
        kernel1, kernel2, kernel3: blur kernels of the three phases.
        blur_probs: probability of the blur step in each phase.
        resize_prob, resize_range: phase-1 resize probability and U(lo, hi) factor.
        noise_probs: probability of the noise step in phases 1 and 2.
        jpeg_probs, jpeg_range1, jpeg_range3: JPEG step probability and quality (phases 1, 3).
        ringing_prob: Wiener-deconvolution ringing after a non-sinc blur.
        wiener_k: the Wiener regulariser K; wiener_pad: symmetric padding before the FFT.
        gaussian_noise_prob, noise_range, poisson_scale_range, gray_noise_prob: as StageConfig.
        resize_modes: interpolation modes drawn uniformly.
    """

    kernel1: KernelConfig = field(default_factory=_wild_kernel)
    kernel2: KernelConfig = field(
        default_factory=lambda: _wild_kernel(sizes=(5, 7, 9), sigma_range=(0.2, 1.5))
    )
    kernel3: KernelConfig = field(
        default_factory=lambda: _wild_kernel(sinc_prob=0.8, sigma_range=(0.2, 1.0))
    )
    blur_probs: tuple[float, float, float] = (0.8, 0.4, 0.8)
    resize_prob: float = 0.8
    resize_range: tuple[float, float] = (0.5, 1.4)
    noise_probs: tuple[float, float] = (0.4, 0.2)
    jpeg_probs: tuple[float, float] = (0.4, 0.4)
    jpeg_range1: tuple[float, float] = (60.0, 95.0)
    jpeg_range3: tuple[float, float] = (80.0, 100.0)
    ringing_prob: float = 0.1
    wiener_k: float = 0.006
    wiener_pad: int = 20
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    resize_modes: tuple[str, ...] = RESIZE_MODES

    def __post_init__(self) -> None:
        for name in ("blur_probs", "noise_probs", "jpeg_probs"):
            for p in getattr(self, name):
                check_prob(name, p)
        for name in ("resize_prob", "ringing_prob", "gaussian_noise_prob", "gray_noise_prob"):
            check_prob(name, getattr(self, name))
        check_range("resize_range", self.resize_range, low=1e-3)
        check_range("jpeg_range1", self.jpeg_range1, low=1.0, high=100.0)
        check_range("jpeg_range3", self.jpeg_range3, low=1.0, high=100.0)
        check_range("noise_range", self.noise_range)
        check_range("poisson_scale_range", self.poisson_scale_range)
        if self.wiener_k <= 0 or self.wiener_pad < 0:
            raise ValueError(
                f"wiener_k, wiener_pad: expected > 0 and >= 0, got "
                f"{self.wiener_k}, {self.wiener_pad}"
            )


def wild() -> WildConfig:
    """DA-CLIP's wild-IR pipeline with its published probabilities."""
    return WildConfig()


@dataclass
class BlurParams:
    active: torch.Tensor  # [B] bool
    kernel: torch.Tensor  # [B, 21, 21] float64
    ringing: torch.Tensor  # [B] bool: Wiener deconvolution after the blur


@dataclass
class WildParams:
    """Every draw of the wild pipeline for one batch."""

    image_size: tuple[int, int]
    order1: torch.Tensor  # [B, 4] permutation of (blur, resize, noise, jpeg)
    order2: torch.Tensor  # [B, 2] permutation of (blur, noise)
    order3: torch.Tensor  # [B, 3] permutation of (blur, resize back, jpeg)
    blur1: BlurParams
    blur2: BlurParams
    blur3: BlurParams
    resize_size: torch.Tensor  # [B, 2] phase-1 size (the input size where not resized)
    resize_mode: torch.Tensor  # [B]
    back_mode: torch.Tensor  # [B]
    noise1: stages.NoiseParams
    noise1_active: torch.Tensor  # [B] bool
    noise2: stages.NoiseParams
    noise2_active: torch.Tensor  # [B] bool
    jpeg1_active: torch.Tensor  # [B] bool
    jpeg1_quality: torch.Tensor  # [B]
    jpeg3_active: torch.Tensor  # [B] bool
    jpeg3_quality: torch.Tensor  # [B]

    @property
    def batch_size(self) -> int:
        return self.order1.shape[0]


def _permutations(batch: int, n: int, generator) -> torch.Tensor:
    return torch.argsort(torch.rand(batch, n, generator=generator), dim=1)


def _sample_blur(batch: int, cfg: KernelConfig, p: float, ringing_p: float, generator):
    kernel, is_sinc = sample_kernels(batch, cfg, generator)
    active = coin(batch, p, generator)
    ringing = coin(batch, ringing_p, generator) & ~is_sinc & active
    return BlurParams(
        active, torch.where(active.view(-1, 1, 1), kernel, pulse_kernels(batch)), ringing
    )


def _symmetric_index(n: int, pad: int) -> torch.Tensor:
    """numpy "symmetric" padding (edge repeated), repeating for pads longer than the axis."""
    p = torch.arange(-pad, n + pad)
    q = torch.remainder(p, 2 * n)
    return torch.where(q < n, q, 2 * n - 1 - q)


def wiener_ringing(
    x: torch.Tensor,  # [B, C, H, W], one size (a group of equal extents)
    kernels: torch.Tensor,  # [B, 21, 21]
    k: float,
    pad: int,
) -> torch.Tensor:  # [B, C, H, W]
    """``X = conj(H) Y / (|H|^2 + K)`` per channel, after ``pad`` pixels of symmetric padding."""
    h, w = x.shape[-2:]
    iy, ix = _symmetric_index(h, pad).to(x.device), _symmetric_index(w, pad).to(x.device)
    y = x[..., iy, :][..., ix]
    ph, pw = y.shape[-2:]
    # The kernel's optical transfer function: its centre moved to (0, 0), folded circularly onto
    # the padded image grid. Kernels equal their 180-degree rotation, so correlation (what
    # filter2d applied) and convolution agree.
    otf_in = _wrap_psf(kernels.to(device=x.device, dtype=torch.float64), ph, pw)
    otf = torch.fft.fft2(otf_in).unsqueeze(1)
    spec = torch.fft.fft2(y.to(torch.float64))
    out = torch.fft.ifft2(otf.conj() * spec / (otf.abs() ** 2 + k)).real
    return out[..., pad : pad + h, pad : pad + w].to(x.dtype)


def _wrap_psf(psf: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """``[B, ph, pw]``: the PSF, centre at (0, 0), folded circularly onto a (ph, pw) grid."""
    c = KERNEL_SIZE // 2
    out = psf.new_zeros(psf.shape[0], ph, pw)
    rows = torch.remainder(torch.arange(KERNEL_SIZE, device=psf.device) - c, ph)
    cols = torch.remainder(torch.arange(KERNEL_SIZE, device=psf.device) - c, pw)
    index = (rows.view(-1, 1) * pw + cols.view(1, -1)).flatten()
    return out.view(psf.shape[0], -1).index_add(1, index, psf.flatten(1)).view(-1, ph, pw)


class WildDegrader(Degrader):
    """Batched DA-CLIP wild-IR degradation; see the module docstring."""

    def __init__(self, config: WildConfig):
        if not isinstance(config, WildConfig):
            raise TypeError(f"config: expected a WildConfig, got {type(config).__name__}")
        self.config = config

    def output_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return image_size

    def sample(self, batch_size, image_size, generator=None) -> WildParams:
        batch_size, (h, w) = self._check_sample_args(batch_size, image_size, generator)
        cfg, g, n = self.config, generator, batch_size

        def noise(p):
            return stages.sample_noise(
                n,
                cfg.gaussian_noise_prob,
                cfg.noise_range,
                cfg.poisson_scale_range,
                cfg.gray_noise_prob,
                g,
            ), coin(n, p, g)

        resized = coin(n, cfg.resize_prob, g)
        scale = torch.where(
            resized, uniform(n, *cfg.resize_range, g), torch.ones(n, dtype=torch.float64)
        )
        size = stages.scaled_sizes(h, w, scale)
        noise1, noise1_active = noise(cfg.noise_probs[0])
        noise2, noise2_active = noise(cfg.noise_probs[1])
        return WildParams(
            image_size=(h, w),
            order1=_permutations(n, 4, g),
            order2=_permutations(n, 2, g),
            order3=_permutations(n, 3, g),
            blur1=_sample_blur(n, cfg.kernel1, cfg.blur_probs[0], cfg.ringing_prob, g),
            blur2=_sample_blur(n, cfg.kernel2, cfg.blur_probs[1], cfg.ringing_prob, g),
            blur3=_sample_blur(n, cfg.kernel3, cfg.blur_probs[2], cfg.ringing_prob, g),
            resize_size=size,
            resize_mode=stages.sample_modes(n, cfg.resize_modes, g),
            back_mode=stages.sample_modes(n, cfg.resize_modes, g),
            noise1=noise1,
            noise1_active=noise1_active,
            noise2=noise2,
            noise2_active=noise2_active,
            jpeg1_active=coin(n, cfg.jpeg_probs[0], g),
            jpeg1_quality=uniform(n, *cfg.jpeg_range1, g),
            jpeg3_active=coin(n, cfg.jpeg_probs[1], g),
            jpeg3_quality=uniform(n, *cfg.jpeg_range3, g),
        )

    # Each step maps (x, sizes, idx) of a sub-batch to its new (x, sizes); idx are CPU indices
    # into the full batch, used to pick the sub-batch's draws.

    def _blur(self, b: BlurParams):
        def step(x, sizes, idx):
            active = b.active[idx]
            if not active.any():
                return x, sizes
            y = stages.blur(x, sizes, b.kernel[idx])
            ring = b.ringing[idx]
            if ring.any():
                y = self._ringing(y, sizes, b.kernel[idx], ring)
            return y, sizes

        return step

    def _ringing(self, x, sizes, kernels, ring):
        out = x
        keys = sizes.tolist()
        for key in {tuple(k) for k, r in zip(keys, ring.tolist(), strict=True) if r}:
            members = [i for i, k in enumerate(keys) if tuple(k) == key and ring[i]]
            index = torch.tensor(members, device=x.device)
            h, w = key
            sub = x.index_select(0, index)[..., :h, :w]
            sub = wiener_ringing(
                sub, kernels[members], self.config.wiener_k, self.config.wiener_pad
            ).clamp(0, 1)
            sub = F.pad(sub, (0, x.shape[-1] - w, 0, x.shape[-2] - h))
            out = out.index_copy(0, index, sub)
        return out

    def _resize_to(self, target: torch.Tensor, modes: torch.Tensor, active: torch.Tensor | None):
        def step(x, sizes, idx):
            new = (
                target[idx]
                if active is None
                else torch.where(active[idx].view(-1, 1), target[idx], sizes)
            )
            return resize(x, sizes, new, modes[idx]), new

        return step

    def _noise(self, p: stages.NoiseParams, active: torch.Tensor):
        def step(x, sizes, idx):
            sub = stages.NoiseParams(
                p.gaussian[idx],
                p.sigma[idx],
                p.gray[idx],
                p.poisson_scale[idx],
                p.seed + int(idx[0]),
            )
            return stages.apply_noise(x, sizes, sub, active[idx]), sizes

        return step

    def _jpeg(self, quality: torch.Tensor, active: torch.Tensor):
        def step(x, sizes, idx):
            on = active[idx]
            if not on.any():
                return x, sizes
            y = stages.jpeg(x, sizes, quality[idx])
            return torch.where(on.to(x.device).view(-1, 1, 1, 1), y, x), sizes

        return step

    @staticmethod
    def _run_phase(x, sizes, order: torch.Tensor, steps) -> tuple[torch.Tensor, torch.Tensor]:
        for position in range(order.shape[1]):
            results = []
            for s, step in enumerate(steps):
                idx = torch.nonzero(order[:, position] == s).flatten()
                if idx.numel():
                    sub, sub_sizes = step(x.index_select(0, idx.to(x.device)), sizes[idx], idx)
                    results.append((idx, sub, sub_sizes))
            h = max(r[1].shape[-2] for r in results)
            w = max(r[1].shape[-1] for r in results)
            x = x.new_zeros(x.shape[0], x.shape[1], h, w)
            sizes = sizes.clone()
            for idx, sub, sub_sizes in results:
                sub = F.pad(sub, (0, w - sub.shape[-1], 0, h - sub.shape[-2]))
                x = x.index_copy(0, idx.to(x.device), sub)
                sizes[idx] = sub_sizes
            # Steps that only some samples take keep zeros outside every extent.
            x = x * valid_mask(sizes, h, w, x.device)
        return x, sizes

    def _apply(self, x: torch.Tensor, p: WildParams) -> torch.Tensor:
        sizes = full_sizes(x)
        h, w = p.image_size
        original = torch.tensor([[h, w]]).expand(x.shape[0], 2)
        x, sizes = self._run_phase(
            x,
            sizes,
            p.order1,
            [
                self._blur(p.blur1),
                self._resize_to(p.resize_size, p.resize_mode, None),
                self._noise(p.noise1, p.noise1_active),
                self._jpeg(p.jpeg1_quality, p.jpeg1_active),
            ],
        )
        x, sizes = self._run_phase(
            x,
            sizes,
            p.order2,
            [
                self._blur(p.blur2),
                self._noise(p.noise2, p.noise2_active),
            ],
        )
        x, sizes = self._run_phase(
            x,
            sizes,
            p.order3,
            [
                self._blur(p.blur3),
                self._resize_to(original, p.back_mode, None),
                self._jpeg(p.jpeg3_quality, p.jpeg3_active),
            ],
        )
        return stages.quantise(x[..., :h, :w])
