"""Argument checks shared by the ops that work on ragged batches (filter2d, the JPEG round trip)."""

from __future__ import annotations

import numbers

import torch

from ebir_fast.ops._gaussian import check_image


def check_sizes(sizes: object, x: torch.Tensor) -> torch.Tensor:  # [B, 2] int64, on x's device
    """``sizes`` must be ``[B, 2]`` integers with ``1 <= h <= H`` and ``1 <= w <= W``; None means
    every sample is full-size."""
    b, _, h, w = x.shape
    if sizes is None:
        return torch.tensor([h, w], device=x.device).repeat(b, 1)
    if not isinstance(sizes, torch.Tensor):
        raise TypeError(
            f"sizes: expected a [B, 2] int64 tensor or None, got {type(sizes).__name__}"
        )
    if sizes.shape != (b, 2):
        raise ValueError(
            f"sizes: expected shape [{b}, 2] (h, w per sample), got {tuple(sizes.shape)}"
        )
    if sizes.dtype.is_floating_point or sizes.dtype.is_complex or sizes.dtype == torch.bool:
        raise TypeError(f"sizes: expected an integer tensor, got {sizes.dtype}")
    host = sizes.detach().cpu().long()
    if bool((host < 1).any()) or bool((host[:, 0] > h).any()) or bool((host[:, 1] > w).any()):
        raise ValueError(
            f"sizes: expected 1 <= h <= {h} and 1 <= w <= {w} per sample, got {host.tolist()}"
        )
    return sizes.to(device=x.device, dtype=torch.int64)


def check_kernels(kernels: object, x: torch.Tensor, max_size: int) -> torch.Tensor:
    """``kernels`` must be a floating ``[B, K, K]`` tensor on x's device, K odd and <= max_size."""
    if not isinstance(kernels, torch.Tensor):
        raise TypeError(f"kernels: expected a torch.Tensor [B, K, K], got {type(kernels).__name__}")
    b = x.shape[0]
    if kernels.dim() != 3 or kernels.shape[0] != b or kernels.shape[1] != kernels.shape[2]:
        raise ValueError(f"kernels: expected shape [{b}, K, K], got {tuple(kernels.shape)}")
    k = kernels.shape[-1]
    if k % 2 == 0 or k > max_size:
        raise ValueError(f"kernels: expected an odd size K <= {max_size}, got K = {k}")
    if not kernels.dtype.is_floating_point:
        raise TypeError(f"kernels: expected a floating dtype, got {kernels.dtype}")
    if kernels.device != x.device:
        raise ValueError(f"kernels: expected the device of x ({x.device}), got {kernels.device}")
    return kernels


def check_quality(quality: object, x: torch.Tensor) -> torch.Tensor:  # [B] float32 on x's device
    """``quality``: a number or a ``[B]`` tensor of JPEG qualities in (0, 100]."""
    b = x.shape[0]
    if isinstance(quality, numbers.Real) and not isinstance(quality, bool):
        q = torch.full((b,), float(quality), dtype=torch.float32)
    elif isinstance(quality, torch.Tensor):
        if quality.shape not in ((b,), ()):
            raise ValueError(
                f"quality: expected a number or shape [{b}], got {tuple(quality.shape)}"
            )
        q = quality.detach().to(torch.float32).expand(b)
    else:
        raise TypeError(f"quality: expected a number or a [B] tensor, got {type(quality).__name__}")
    host = q.cpu()
    if not bool(torch.isfinite(host).all()) or bool((host <= 0).any()) or bool((host > 100).any()):
        raise ValueError(f"quality: expected values in (0, 100], got {host.tolist()}")
    return q.to(x.device).contiguous()


def check_rgb(name: str, x: object) -> torch.Tensor:
    check_image(name, x)
    assert isinstance(x, torch.Tensor)
    if x.shape[1] != 3:
        raise ValueError(f"{name}: expected 3 (RGB) channels, got shape {tuple(x.shape)}")
    return x
