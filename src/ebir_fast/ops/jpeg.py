"""The JPEG round trip (compress, decompress) of a ragged batch with a per-sample float quality.

Semantics are DiffJPEG's (BasicSR, which Real-ESRGAN and OSEDiff train with) with its defects
fixed: tables are clamped to [1, 255] like libjpeg (q = 100 is safe, q < 20 is not harsher than
a real encoder), they are constants, and the quality argument is never written to. Each sample is
edge-replicated from its extent to a multiple of 16 as an encoder pads. Rounding of the quantised
coefficients is straight-through: the forward is a JPEG, the backward the linear map around it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ebir_fast.ops import _cpu
from ebir_fast.ops._dispatch import launcher, resolve_backend
from ebir_fast.ops._gaussian import accumulation_dtype
from ebir_fast.ops._ragged import check_quality, check_rgb, check_sizes
from ebir_fast.ops.reference import (
    RGB_TO_YCBCR,
    YCBCR_TO_RGB,
    jpeg_roundtrip_reference,
    jpeg_tables,
)

#: Backends with a JPEG kernel ("reference" always runs).
JPEG_BACKENDS = ("cuda", "cpu", "reference")


@torch.library.custom_op("ebir_fast::jpeg_fwd", mutates_args=())
def _jpeg_fwd_op(
    x: torch.Tensor, tables: torch.Tensor, sizes: torch.Tensor, backend: str, with_mask: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the round trip, zero outside the extents; the clamp's pass mask or an empty tensor)."""
    # The CPU kernel writes every element; the CUDA kernel only the extents.
    out = _cpu.empty_like(x) if backend == "cpu" else torch.zeros_like(x)
    mask = x.new_zeros(x.shape if with_mask else (0,), dtype=torch.uint8)
    launcher(backend).jpeg_fwd(x, tables, sizes, out, mask if with_mask else None)
    return out, mask


@_jpeg_fwd_op.register_fake
def _(x, tables, sizes, backend, with_mask):
    return torch.empty_like(x), x.new_empty(x.shape if with_mask else (0,), dtype=torch.uint8)


def _jpeg_setup(ctx, inputs, output):
    x, _, sizes, _, _ = inputs
    ctx.save_for_backward(output[1], sizes, x)
    ctx.dtype = x.dtype
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


def _jpeg_backward(ctx, grad, _grad_mask):
    mask, sizes, x = ctx.saved_tensors
    if grad is None:
        return None, None, None, None, None
    # The input clamp to [0, 1] passes the gradient where 0 <= x <= 1, as torch.clamp does.
    inside = (x >= 0) & (x <= 1)
    return (_jpeg_vjp(grad, mask, sizes) * inside).to(ctx.dtype), None, None, None, None


_jpeg_fwd_op.register_autograd(_jpeg_backward, setup_context=_jpeg_setup)


def _jpeg_vjp(
    grad: torch.Tensor,  # [B, 3, H, W]
    mask: torch.Tensor,  # [B, 3, H, W] uint8: where the decoder's clamp passed
    sizes: torch.Tensor,  # [B, 2]
) -> torch.Tensor:  # [B, 3, H, W]
    """The gradient of the round trip with straight-through rounding: a linear map.

    Quantise-round-dequantise is the identity under straight-through rounding and the DCT is
    orthonormal, so luma passes unchanged; chroma sees the adjoint of 2x2 averaging followed by
    replication (the 2x2 mean, replicated). Around that: the clamp's mask, the colour transforms'
    transposes, and the edge replication's adjoint (padding pixels give their gradient to the edge
    pixel they copy).
    """
    b, _, h, w = grad.shape
    acc = accumulation_dtype(grad.dtype)
    h16, w16 = -(-h // 16) * 16, -(-w // 16) * 16
    g = F.pad(grad.to(acc) * mask.to(acc), (0, w16 - w, 0, h16 - h))
    to_rgb = torch.tensor(YCBCR_TO_RGB, dtype=acc, device=grad.device)
    to_ycc = torch.tensor(RGB_TO_YCBCR, dtype=acc, device=grad.device)
    ycc = torch.einsum("co,bchw->bohw", to_rgb, g)
    chroma = F.avg_pool2d(ycc[:, 1:], 2).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    rgb = torch.einsum("oc,bohw->bchw", to_ycc, torch.cat([ycc[:, :1], chroma], dim=1))
    # The 255 of the encoder's input scale and the 1/255 of the decoder's output cancel.
    rows = torch.minimum(torch.arange(h16, device=grad.device).view(1, -1), sizes[:, :1] - 1)
    cols = torch.minimum(torch.arange(w16, device=grad.device).view(1, -1), sizes[:, 1:] - 1)
    folded = rgb.new_zeros(b, 3, h, w16).scatter_add_(
        2, rows.view(b, 1, h16, 1).expand(b, 3, h16, w16), rgb
    )
    return folded.new_zeros(b, 3, h, w).scatter_add_(
        3, cols.view(b, 1, 1, w16).expand(b, 3, h, w16), folded
    )


def jpeg_roundtrip(
    x: torch.Tensor,  # [B, 3, H, W] RGB in [0, 1]
    quality: float | torch.Tensor,  # [B] or a number, in (0, 100]
    sizes: torch.Tensor | None = None,  # [B, 2] int64 (h, w)
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [B, 3, H, W], dtype of x, in [0, 1]
    """Compress and decompress every sample as a 4:2:0 JPEG of (float) quality ``quality``.

    Args:
        x: RGB images ``[B, 3, H, W]``; values outside [0, 1] are clamped first (an encoder
            sees 8-bit range), which also passes no gradient there.
        quality: libjpeg quality per sample, a float in (0, 100].
        sizes: valid ``(h, w)`` per sample, ``[B, 2]``; None: every sample is full-size.
        backend: "auto", "cuda", "cpu" or "reference".

    Example:
        >>> x = torch.rand(2, 3, 40, 24)
        >>> jpeg_roundtrip(x, torch.tensor([30.0, 95.0])).shape
        torch.Size([2, 3, 40, 24])
    """
    check_rgb("x", x)
    q = check_quality(quality, x)
    sizes = check_sizes(sizes, x)
    name = resolve_backend(backend, x.device.type, JPEG_BACKENDS)
    if name == "reference":
        return jpeg_roundtrip_reference(x, q, sizes)
    luma, chroma = jpeg_tables(q, accumulation_dtype(x.dtype))
    tables = torch.stack([luma, chroma], dim=1).contiguous()  # [B, 2, 8, 8]
    with_mask = torch.is_grad_enabled() and x.requires_grad
    out, _ = _jpeg_fwd_op(x, tables, sizes.contiguous(), name, with_mask)
    return out
