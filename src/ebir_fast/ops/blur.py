"""Gaussian blur and the fused Gaussian blur-MSE loss: torch custom ops, autograd, public API.

``blur_mse(x, y) = mean((G * x - G * y)^2)``. Blur is linear, so the fused forward blurs the
difference once, ``e = G * (x - y)``, and squares and sums it in the same pass; ``e`` (float32, or
float64 for float64 inputs) is the only image-sized tensor kept for the backward, which is one
adjoint pass: ``grad_x = 2 g / N * G^T e = -grad_y``. ``G^T`` is the adjoint of the reflect-padded
blur, which differs from ``G`` within R pixels of the border.

The ops are registered with torch.library (fake kernels and autograd included), so
``torch.compile(fullgraph=True)`` traces through them.
"""

from __future__ import annotations

import torch
from torch import nn

from ebir_fast.ops._dispatch import launcher, resolve_backend
from ebir_fast.ops._gaussian import (
    accumulation_dtype,
    check_image,
    check_pair,
    check_reduction,
    check_sigma,
    gaussian_taps,
    resolve_kernel_size,
)
from ebir_fast.ops.reference import blur_mse_reference, gaussian_blur_reference


def _taps(sigma: float, kernel_size: int, like: torch.Tensor) -> torch.Tensor:
    return gaussian_taps(sigma, kernel_size, accumulation_dtype(like.dtype), like.device)


# ---- gaussian_blur and its adjoint (each is the other's backward) --------------------------------


@torch.library.custom_op("ebir_fast::gaussian_blur", mutates_args=())
def _gaussian_blur_op(
    x: torch.Tensor, sigma: float, kernel_size: int, backend: str
) -> torch.Tensor:
    out = torch.empty_like(x)
    launcher(backend).blur_fwd(x, None, _taps(sigma, kernel_size, x), out, None)
    return out


@torch.library.custom_op("ebir_fast::gaussian_blur_adjoint", mutates_args=())
def _gaussian_blur_adjoint_op(
    grad: torch.Tensor, sigma: float, kernel_size: int, backend: str
) -> torch.Tensor:
    out = torch.empty_like(grad)
    launcher(backend).blur_bwd(grad, _taps(sigma, kernel_size, grad), None, out, None)
    return out


@_gaussian_blur_op.register_fake
def _(x, sigma, kernel_size, backend):
    return torch.empty_like(x)


@_gaussian_blur_adjoint_op.register_fake
def _(grad, sigma, kernel_size, backend):
    return torch.empty_like(grad)


def _save_blur_args(ctx, inputs, output):
    _, ctx.sigma, ctx.kernel_size, ctx.backend = inputs


def _gaussian_blur_backward(ctx, grad):
    return (
        _gaussian_blur_adjoint_op(grad, ctx.sigma, ctx.kernel_size, ctx.backend),
        None,
        None,
        None,
    )


def _gaussian_blur_adjoint_backward(ctx, grad):
    return _gaussian_blur_op(grad, ctx.sigma, ctx.kernel_size, ctx.backend), None, None, None


_gaussian_blur_op.register_autograd(_gaussian_blur_backward, setup_context=_save_blur_args)
_gaussian_blur_adjoint_op.register_autograd(
    _gaussian_blur_adjoint_backward, setup_context=_save_blur_args
)


# ---- blur_mse: fused forward (per-sample sum of squares + e) and fused backward ---------------


@torch.library.custom_op("ebir_fast::blur_mse_fwd", mutates_args=())
def _blur_mse_fwd_op(
    x: torch.Tensor, y: torch.Tensor, sigma: float, kernel_size: int, backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    acc = accumulation_dtype(x.dtype)
    e = torch.empty(x.shape, dtype=acc, device=x.device)  # [B, C, H, W], kept for the backward
    sumsq = torch.empty(x.shape[0], dtype=acc, device=x.device)  # [B]
    launcher(backend).blur_fwd(x, y, _taps(sigma, kernel_size, x), e, sumsq)
    return sumsq, e


@_blur_mse_fwd_op.register_fake
def _(x, y, sigma, kernel_size, backend):
    acc = accumulation_dtype(x.dtype)
    return (
        x.new_empty(x.shape[0], dtype=acc),
        x.new_empty(x.shape, dtype=acc),
    )


@torch.library.custom_op("ebir_fast::blur_mse_bwd", mutates_args=())
def _blur_mse_bwd_op(
    e: torch.Tensor,
    scale: torch.Tensor,
    sigma: float,
    kernel_size: int,
    backend: str,
    dtype: torch.dtype,
    with_neg: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale[b] * G^T e, and its negation when ``with_neg``, else an empty tensor)."""
    grad = torch.empty(e.shape, dtype=dtype, device=e.device)
    neg = torch.empty(e.shape if with_neg else (0,), dtype=dtype, device=e.device)
    launcher(backend).blur_bwd(
        e, _taps(sigma, kernel_size, e), scale.contiguous(), grad, neg if with_neg else None
    )
    return grad, neg


@_blur_mse_bwd_op.register_fake
def _(e, scale, sigma, kernel_size, backend, dtype, with_neg):
    return e.new_empty(e.shape, dtype=dtype), e.new_empty(
        e.shape if with_neg else (0,), dtype=dtype
    )


def _blur_mse_setup(ctx, inputs, output):
    x, _, ctx.sigma, ctx.kernel_size, ctx.backend = inputs
    ctx.dtype = x.dtype
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    # e has no gradient: without this autograd would allocate and zero an image-sized one.
    ctx.set_materialize_grads(False)


def _blur_mse_backward(ctx, grad_sumsq, grad_e):
    (e,) = ctx.saved_tensors
    need_x, need_y = ctx.needs_input_grad[:2]
    if grad_sumsq is None or not (need_x or need_y):
        return None, None, None, None, None
    # d sumsq_b / d e = 2 e; the fused backward negates in the same pass for y's gradient.
    scale = 2.0 * grad_sumsq if need_x else -2.0 * grad_sumsq
    args = (ctx.sigma, ctx.kernel_size, ctx.backend, ctx.dtype)
    grad, neg = _blur_mse_bwd_op(e, scale.to(e.dtype), *args, need_x and need_y)
    if not need_x:
        return None, grad, None, None, None
    return grad, (neg if need_y else None), None, None, None


_blur_mse_fwd_op.register_autograd(_blur_mse_backward, setup_context=_blur_mse_setup)


# ---- public API ---------------------------------------------------------------------------------


def gaussian_blur(
    x: torch.Tensor,  # [B, C, H, W]
    sigma: float,
    kernel_size: int | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [B, C, H, W], dtype of x
    """Separable Gaussian blur with a reflect border (kornia's ``gaussian_blur2d`` semantics).

    Args:
        x: images ``[B, C, H, W]``, float32/float16/bfloat16/float64 (computed in float32, or
            float64 for float64 inputs, and rounded once).
        sigma: standard deviation in pixels, > 0.
        kernel_size: odd, at most 255; default ``2 * ceil(3 * sigma) + 1``.
        backend: "auto", "cuda", "triton", "cpu" or "reference" (see ``available_backends``).

    Images smaller than the kernel radius are accepted: the reflection repeats (scipy's
    "mirror"), which equals kornia's border wherever kornia's is defined.

    Example:
        >>> x = torch.rand(2, 3, 37, 129)
        >>> gaussian_blur(x, 2.0).shape
        torch.Size([2, 3, 37, 129])
    """
    check_image("x", x)
    sigma = check_sigma(sigma)
    kernel_size = resolve_kernel_size(sigma, kernel_size)
    name = resolve_backend(backend, x.device.type)
    if name == "reference":
        return gaussian_blur_reference(x, sigma, kernel_size)
    return _gaussian_blur_op(x, sigma, kernel_size, name)


def blur_mse(
    x: torch.Tensor,  # [B, C, H, W]
    y: torch.Tensor,  # [B, C, H, W]
    sigma: float,
    kernel_size: int | None = None,
    reduction: str = "mean",
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [] ("mean", "sum") or [B] ("none")
    """``mean((G_sigma * x - G_sigma * y)^2)``, fused: one blur of ``x - y``, one adjoint pass back.

    Args:
        x, y: images ``[B, C, H, W]`` of one shape, dtype and device.
        sigma, kernel_size, backend: as for :func:`gaussian_blur`.
        reduction: "mean" over everything, "sum", or "none" for the per-sample mean ``[B]``.

    Returns:
        The loss in float32 (float64 for float64 inputs); gradients come in the inputs' dtype.

    Example:
        >>> x, y = torch.rand(2, 3, 64, 64, requires_grad=True), torch.rand(2, 3, 64, 64)
        >>> blur_mse(x, y, sigma=2.0).backward()
        >>> x.grad.shape
        torch.Size([2, 3, 64, 64])
    """
    check_image("x", x)
    check_pair(x, y)
    sigma = check_sigma(sigma)
    kernel_size = resolve_kernel_size(sigma, kernel_size)
    reduction = check_reduction(reduction)
    name = resolve_backend(backend, x.device.type)
    if name == "reference":
        return blur_mse_reference(x, y, sigma, kernel_size, reduction)
    sumsq, _ = _blur_mse_fwd_op(x, y, sigma, kernel_size, name)  # [B]
    per_sample = x[0].numel()
    if reduction == "sum":
        return sumsq.sum()
    if reduction == "none":
        return sumsq / per_sample
    return sumsq.sum() / (per_sample * x.shape[0])


class GaussianBlur(nn.Module):
    """Module form of :func:`gaussian_blur`."""

    def __init__(self, sigma: float, kernel_size: int | None = None, backend: str = "auto"):
        super().__init__()
        self.sigma = check_sigma(sigma)
        self.kernel_size = resolve_kernel_size(self.sigma, kernel_size)
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x, self.sigma, self.kernel_size, backend=self.backend)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, kernel_size={self.kernel_size}, backend={self.backend!r}"


class BlurMSELoss(nn.Module):
    """Module form of :func:`blur_mse`."""

    def __init__(
        self,
        sigma: float,
        kernel_size: int | None = None,
        reduction: str = "mean",
        backend: str = "auto",
    ):
        super().__init__()
        self.sigma = check_sigma(sigma)
        self.kernel_size = resolve_kernel_size(self.sigma, kernel_size)
        self.reduction = check_reduction(reduction)
        self.backend = backend

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return blur_mse(x, y, self.sigma, self.kernel_size, self.reduction, backend=self.backend)

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, kernel_size={self.kernel_size}, "
            f"reduction={self.reduction!r}, backend={self.backend!r}"
        )
