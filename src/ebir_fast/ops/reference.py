"""Pure-PyTorch references: slow, simple, differentiable by autograd.

They define the semantics every fast backend is tested against, and they are the fallback when no
compiled kernel can run. The border is "reflect" (kornia's and torch's); when the padding is wider
than the image, which torch refuses, the reflection repeats (scipy.ndimage's "mirror"), so every
size >= 1 is accepted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ebir_fast.ops._gaussian import accumulation_dtype, gaussian_taps


def mirror_index(n: int, radius: int, device: torch.device | None = None) -> torch.Tensor:
    """Source index of each position of a mirror-padded length-``n`` axis: ``[n + 2 * radius]``."""
    p = torch.arange(-radius, n + radius, device=device)
    if n == 1:
        return torch.zeros_like(p)
    period = 2 * (n - 1)
    q = torch.remainder(p, period)
    return torch.where(q < n, q, period - q)


def mirror_pad(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Reflect-pad dimension ``dim`` (-1 or -2) by ``radius`` on both sides."""
    if radius == 0:
        return x
    n = x.shape[dim]
    if radius < n:
        pad = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
        return F.pad(x, pad, mode="reflect")
    return x.index_select(dim, mirror_index(n, radius, x.device))


def _blur_acc(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable blur in the dtype of ``taps``, vertical pass first: ``[B, C, H, W]`` -> same.

    Written the way a fast PyTorch blur is (kornia's): one-axis padding and a depthwise conv per
    pass, so that it is a fair baseline for the benchmarks too.
    """
    c = x.shape[1]
    k = taps.numel()
    radius = k // 2
    x = mirror_pad(x.to(taps.dtype), radius, -2)
    x = F.conv2d(x, taps.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    x = mirror_pad(x, radius, -1)
    return F.conv2d(x, taps.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def gaussian_blur_reference(
    x: torch.Tensor,  # [B, C, H, W]
    sigma: float,
    kernel_size: int,
) -> torch.Tensor:  # [B, C, H, W], dtype of x
    """Gaussian blur, computed in float32 (float64 for float64 inputs), returned in x's dtype."""
    taps = gaussian_taps(sigma, kernel_size, accumulation_dtype(x.dtype), x.device)
    return _blur_acc(x, taps).to(x.dtype)


def blur_mse_reference(
    x: torch.Tensor,  # [B, C, H, W]
    y: torch.Tensor,  # [B, C, H, W]
    sigma: float,
    kernel_size: int,
    reduction: str = "mean",
) -> torch.Tensor:  # [] or [B], float32 (float64 for float64 inputs)
    """``mean((G * x - G * y)^2)``: both images blurred, then the MSE, as a training loop would."""
    taps = gaussian_taps(sigma, kernel_size, accumulation_dtype(x.dtype), x.device)
    sq = (_blur_acc(x, taps) - _blur_acc(y, taps)).square()
    if reduction == "sum":
        return sq.sum()
    if reduction == "none":
        return sq.flatten(1).mean(dim=1)
    return sq.mean()


def gaussian_blur_adjoint_reference(
    grad: torch.Tensor,  # [B, C, H, W]
    sigma: float,
    kernel_size: int,
) -> torch.Tensor:  # [B, C, H, W]
    """``B^T grad`` by autograd through the reference blur (the mirror border's fold included)."""
    acc = accumulation_dtype(grad.dtype)
    taps = gaussian_taps(sigma, kernel_size, acc, grad.device)
    x = torch.zeros(grad.shape, dtype=acc, device=grad.device, requires_grad=True)
    with torch.enable_grad():
        (out,) = torch.autograd.grad(_blur_acc(x, taps), x, grad.to(acc))
    return out.to(grad.dtype)
