"""The building blocks every pipeline shares: draws for one blur / resize / noise / JPEG step, and
their application to a (ragged) batch. Draws are CPU tensors; application runs on the images'
device and is differentiable except for the Poisson noise sample itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import torch

from ebir_fast import ops
from ebir_fast.degrade.kernels import choice, coin, uniform
from ebir_fast.degrade.ragged import RESIZE_MODES
from ebir_fast.degrade.ragged import resize as _resize


def traced(name: str):
    """Label a stage for torch.profiler (``degrade.<name>``): benchmarks break time down by it."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with torch.profiler.record_function(f"degrade.{name}"):
                return fn(*args, **kwargs)

        return inner

    return wrap


@dataclass
class NoiseParams:
    """Per-sample noise draws of one stage (all ``[B]`` CPU tensors except ``seed``)."""

    gaussian: torch.Tensor  # [B] bool: Gaussian, else Poisson
    sigma: torch.Tensor  # [B] Gaussian sigma, 0..255 units
    gray: torch.Tensor  # [B] bool
    poisson_scale: torch.Tensor  # [B]
    seed: int  # seeds the noise fields (drawn from the caller's generator)


def sample_noise(
    batch: int,
    gaussian_prob: float,
    sigma_range: tuple[float, float],
    poisson_scale_range: tuple[float, float],
    gray_prob: float,
    generator: torch.Generator | None,
) -> NoiseParams:
    return NoiseParams(
        gaussian=coin(batch, gaussian_prob, generator),
        sigma=uniform(batch, *sigma_range, generator),
        gray=coin(batch, gray_prob, generator),
        poisson_scale=uniform(batch, *poisson_scale_range, generator),
        seed=int(torch.randint(0, 2**62, (), generator=generator)),
    )


@traced("noise")
def apply_noise(
    x: torch.Tensor,  # [B, 3, H, W] in [0, 1], zero outside `sizes`
    sizes: torch.Tensor,  # [B, 2]
    p: NoiseParams,
    active: torch.Tensor | None = None,  # [B] bool: samples that get noise (default all)
) -> torch.Tensor:  # [B, 3, H, W] clamped to [0, 1], zero outside `sizes`
    """``clamp(x + noise, 0, 1)`` by :func:`ebir_fast.ops.add_noise`: the draw is a function of
    ``p.seed`` and the pixel, so it replays anywhere; gradients pass the (fixed) noise."""
    b = x.shape[0]
    active = torch.ones(b, dtype=torch.bool) if active is None else active.cpu()
    kind = torch.where(active, torch.where(p.gaussian, 1, 2), 0).to(torch.int32)
    return ops.add_noise(
        x, sizes, kind, p.sigma.double() / 255.0, p.gray, p.poisson_scale.double(), p.seed
    )


def sample_resize(
    batch: int,
    probs: tuple[float, float, float],
    scale_range: tuple[float, float],
    generator: torch.Generator | None,
) -> torch.Tensor:  # [B] float64 scale factors
    """Real-ESRGAN's rule: up U(1, r1), down U(r0, 1) or keep (1), chosen per sample."""
    kind = choice(batch, probs, generator)
    up = uniform(batch, 1.0, scale_range[1], generator)
    down = uniform(batch, scale_range[0], 1.0, generator)
    return torch.where(kind == 0, up, torch.where(kind == 1, down, torch.ones_like(up)))


def scaled_sizes(height: float, width: float, scale: torch.Tensor) -> torch.Tensor:
    """``[B, 2]`` int64: ``floor(size * scale)``, at least 1 pixel."""
    h = torch.floor(height * scale + 1e-9).clamp_min(1)
    w = torch.floor(width * scale + 1e-9).clamp_min(1)
    return torch.stack([h, w], dim=1).long()


def sample_modes(batch: int, modes: tuple[str, ...], generator) -> torch.Tensor:
    """``[B]`` indices into RESIZE_MODES, uniform over the configured ``modes``."""
    allowed = torch.tensor([RESIZE_MODES.index(m) for m in modes])
    return allowed[torch.randint(len(modes), (batch,), generator=generator)]


@traced("resize")
def resize(
    x: torch.Tensor,  # [B, C, H, W]
    sizes: torch.Tensor,  # [B, 2]
    out_sizes: torch.Tensor,  # [B, 2]
    modes: torch.Tensor,  # [B]
) -> torch.Tensor:
    """:func:`ebir_fast.degrade.ragged.resize`, labelled for the profiler."""
    return _resize(x, sizes, out_sizes, modes)


@traced("blur")
def blur(x: torch.Tensor, sizes: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-correlation with ``kernels [B, 21, 21]`` (mirror border at each extent)."""
    return ops.filter2d(x, kernels.to(x.device, torch.float32), sizes.to(x.device))


@traced("jpeg")
def jpeg(x: torch.Tensor, sizes: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Per-sample JPEG round trip of ``clamp(x, 0, 1)`` (the op clamps; straight-through
    rounding)."""
    return ops.jpeg_roundtrip(x, quality.to(x.device, torch.float32), sizes.to(x.device))


@traced("quantise")
def quantise(x: torch.Tensor) -> torch.Tensor:
    """``round(clamp(x) * 255) / 255`` with a straight-through gradient (identity inside [0, 1])."""
    return ops.quantize_8bit(x)


def params_to_dict(params) -> dict:
    """A dataclass of draws as a plain dict (nested dataclasses included), e.g. for logging."""
    out = {}
    for f in fields(params):
        v = getattr(params, f.name)
        out[f.name] = params_to_dict(v) if hasattr(v, "__dataclass_fields__") else v
    return out
