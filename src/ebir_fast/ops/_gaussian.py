"""Gaussian taps, the default kernel size, and argument checks shared by every blur backend."""

from __future__ import annotations

import math
import numbers

import torch

#: Largest odd kernel size the kernels accept (radius 127). Larger blurs are better done on a
#: downsampled image; the limit keeps the CUDA tiles and the CPU ring buffers bounded.
MAX_KERNEL_SIZE = 255

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
REDUCTIONS = ("mean", "sum", "none")


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 inputs, float32 for everything else (half inputs accumulate in fp32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_sigma(sigma: object) -> float:
    """``sigma`` as a float, or ValueError/TypeError naming it."""
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise TypeError(f"sigma: expected a real number > 0, got {type(sigma).__name__}")
    value = float(sigma)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"sigma: expected a finite number > 0, got {value}")
    return value


def default_kernel_size(sigma: float) -> int:
    """``2 * ceil(3 * sigma) + 1``: the kernel covers +-3 sigma."""
    return 2 * math.ceil(3.0 * sigma) + 1


def resolve_kernel_size(sigma: float, kernel_size: object) -> int:
    """Validate ``kernel_size`` (odd, 1..MAX_KERNEL_SIZE) or derive it from ``sigma``."""
    if kernel_size is None:
        size = default_kernel_size(sigma)
        if size > MAX_KERNEL_SIZE:
            raise ValueError(
                f"sigma: {sigma} needs kernel_size {size} (2 * ceil(3 * sigma) + 1), above the "
                f"maximum {MAX_KERNEL_SIZE}; blur a downsampled image or pass a smaller kernel_size"
            )
        return size
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, numbers.Integral):
        raise TypeError(
            f"kernel_size: expected an odd int or None, got {type(kernel_size).__name__}"
        )
    size = int(kernel_size)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel_size: expected an odd int >= 1, got {size}")
    if size > MAX_KERNEL_SIZE:
        raise ValueError(f"kernel_size: expected at most {MAX_KERNEL_SIZE}, got {size}")
    return size


def gaussian_taps(
    sigma: float,
    kernel_size: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised 1D taps ``exp(-t^2 / (2 sigma^2))``, ``t = -R..R``: ``[kernel_size]``.

    Computed in float64 and rounded once, so every backend uses the same taps.
    """
    radius = kernel_size // 2
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(t * t) / (2.0 * sigma * sigma))
    taps = taps / taps.sum()
    return taps.to(dtype=dtype, device=device)


def check_image(name: str, x: object) -> torch.Tensor:
    """``x`` must be a non-empty floating ``[B, C, H, W]`` tensor of a supported dtype."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor [B, C, H, W], got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{name}: expected a 4D tensor [B, C, H, W], got {x.dim()}D with shape {tuple(x.shape)}"
        )
    if x.dtype not in SUPPORTED_DTYPES:
        names = ", ".join(str(d).removeprefix("torch.") for d in SUPPORTED_DTYPES)
        raise TypeError(
            f"{name}: expected dtype {names}, got {str(x.dtype).removeprefix('torch.')}"
        )
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(x.shape)}")
    return x


def check_pair(x: torch.Tensor, y: object) -> torch.Tensor:
    """``y`` must match ``x`` in shape, dtype and device."""
    check_image("y", y)
    assert isinstance(y, torch.Tensor)
    if y.shape != x.shape:
        raise ValueError(f"y: expected the shape of x {tuple(x.shape)}, got {tuple(y.shape)}")
    if y.dtype != x.dtype:
        raise TypeError(f"y: expected the dtype of x ({x.dtype}), got {y.dtype}")
    if y.device != x.device:
        raise ValueError(f"y: expected the device of x ({x.device}), got {y.device}")
    return y


def check_reduction(reduction: object) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return str(reduction)
