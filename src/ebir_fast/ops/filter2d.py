"""Per-sample 2D filtering of a ragged batch: each sample its own kernel, its own valid extent.

``out[b, c, y, x] = sum_ij k[b, i, j] * x[b, c, m(y + i - R, h_b), m(x + j - R, w_b)]`` inside the
sample's extent ``(h_b, w_b)`` and 0 outside, where ``m`` mirrors at the extent (scipy's "mirror",
repeated for extents smaller than the radius, so every extent >= 1 is defined). This is the blur of
the degradation pipelines (Real-ESRGAN reflect-pads then cross-correlates; its reflect pad fails
when a side is <= K // 2, ours does not).
"""

from __future__ import annotations

import torch

from ebir_fast.ops import _cpu
from ebir_fast.ops._dispatch import launcher, resolve_backend
from ebir_fast.ops._gaussian import accumulation_dtype, check_image
from ebir_fast.ops._ragged import check_kernels, check_sizes
from ebir_fast.ops.reference import filter2d_reference

#: Largest kernel the fast backends take (the degradation kernels are at most 21 x 21).
MAX_FILTER_SIZE = 21

#: Backends with a filter2d kernel ("reference" always runs).
FILTER2D_BACKENDS = ("cuda", "triton", "cpu", "reference")


@torch.library.custom_op("ebir_fast::filter2d_fwd", mutates_args=())
def _filter2d_fwd_op(
    x: torch.Tensor, kernels: torch.Tensor, sizes: torch.Tensor, backend: str
) -> torch.Tensor:
    out = _cpu.empty_like(x)
    launcher(backend, "filter2d").filter2d_fwd(x, kernels, sizes, out)
    return out


@_filter2d_fwd_op.register_fake
def _(x, kernels, sizes, backend):
    return torch.empty_like(x)


@torch.library.custom_op("ebir_fast::filter2d_bwd", mutates_args=())
def _filter2d_bwd_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    kernels: torch.Tensor,
    sizes: torch.Tensor,
    backend: str,
    need_x: bool,
    need_k: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_x or an empty tensor, grad_kernels or an empty tensor)."""
    grad_x = torch.empty_like(grad) if need_x else grad.new_empty(0)
    grad_k = torch.empty_like(kernels) if need_k else kernels.new_empty(0)
    launcher(backend, "filter2d").filter2d_bwd(
        grad,
        x if need_k else None,
        kernels,
        sizes,
        grad_x if need_x else None,
        grad_k if need_k else None,
    )
    return grad_x, grad_k


@_filter2d_bwd_op.register_fake
def _(grad, x, kernels, sizes, backend, need_x, need_k):
    return (
        torch.empty_like(grad) if need_x else grad.new_empty(0),
        torch.empty_like(kernels) if need_k else kernels.new_empty(0),
    )


def _filter2d_setup(ctx, inputs, output):
    x, kernels, sizes, ctx.backend = inputs
    need_k = ctx.needs_input_grad[1]
    # x is only needed for the kernels' gradient; the degradation's kernels are constants.
    ctx.save_for_backward(x if need_k else None, kernels, sizes)


def _filter2d_backward(ctx, grad):
    x, kernels, sizes = ctx.saved_tensors
    need_x, need_k = ctx.needs_input_grad[:2]
    if not (need_x or need_k):
        return None, None, None, None
    empty = grad.new_empty(0)
    grad_x, grad_k = _filter2d_bwd_op(
        grad.contiguous(), x if need_k else empty, kernels, sizes, ctx.backend, need_x, need_k
    )
    return (grad_x if need_x else None), (grad_k if need_k else None), None, None


_filter2d_fwd_op.register_autograd(_filter2d_backward, setup_context=_filter2d_setup)


def filter2d(
    x: torch.Tensor,  # [B, C, H, W]
    kernels: torch.Tensor,  # [B, K, K]
    sizes: torch.Tensor | None = None,  # [B, 2] int64 (h, w)
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [B, C, H, W], dtype of x
    """Cross-correlate each sample with its kernel, mirror border at its extent, zero outside it.

    Args:
        x: images ``[B, C, H, W]`` (computed in float32, float64 for float64 inputs).
        kernels: ``[B, K, K]``, K odd, at most :data:`MAX_FILTER_SIZE`.
        sizes: valid ``(h, w)`` per sample, ``[B, 2]``; None: every sample is full-size.
        backend: "auto", "cuda", "triton", "cpu" or "reference".

    Differentiable in ``x`` and ``kernels``.

    Example:
        >>> x = torch.rand(2, 3, 32, 48)
        >>> k = torch.full((2, 5, 5), 1 / 25)
        >>> filter2d(x, k, torch.tensor([[32, 48], [20, 30]])).shape
        torch.Size([2, 3, 32, 48])
    """
    check_image("x", x)
    kernels = check_kernels(kernels, x, MAX_FILTER_SIZE)
    sizes = check_sizes(sizes, x)
    name = resolve_backend(backend, x.device.type, FILTER2D_BACKENDS)
    if name == "reference":
        return filter2d_reference(x, kernels, sizes)
    kernels = kernels.to(accumulation_dtype(x.dtype)).contiguous()
    return _filter2d_fwd_op(x, kernels, sizes.contiguous(), name)
