"""Real-ESRGAN's additive noise for a ragged batch in one pass: Gaussian or Poisson per sample.

Randomness comes from counter-based streams (``ebir_fast.ops.random``), so a draw is a function of
``(seed, element)`` only: it replays bit for bit on any device and thread count and needs no noise
field moved from the CPU. Semantics: :func:`ebir_fast.ops.reference.add_noise_reference`. Poisson
noise is drawn from the detached image; the gradient of ``clamp(x + noise, 0, 1)`` passes where
the clamp does.
"""

from __future__ import annotations

import torch

from ebir_fast.ops import _cpu
from ebir_fast.ops._dispatch import launcher, resolve_backend
from ebir_fast.ops._gaussian import check_image
from ebir_fast.ops._ragged import check_sizes
from ebir_fast.ops.reference import (
    add_noise_reference,
    noise_levels,
    noise_vals,
    poisson_cdf_tables,
)

#: Backends with a noise kernel ("reference" always runs).
NOISE_BACKENDS = ("cuda", "cpu", "reference")

_MASK64 = (1 << 64) - 1


def _per_sample(name: str, value: object, b: int, dtype: torch.dtype) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.shape != (b,):
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name}: expected a [{b}] tensor, got {got}")
    return value.detach().to("cpu", dtype).contiguous()


def _native_args(x, sizes, kind, gray, sigma, scale, vals, seed):
    """(tuple of NoiseArgs pointers, tensors that must outlive the call), on x's device."""
    b, c, h, w = x.shape
    distinct, table_of_sample = torch.unique(vals / 255.0, return_inverse=True)
    cdf = poisson_cdf_tables(distinct)
    keep = tuple(
        t.to(x.device).contiguous()
        for t in (sizes, kind, gray, sigma, scale, vals, table_of_sample, cdf)
    )
    args = (
        b,
        c,
        h,
        w,
        *(t.data_ptr() for t in keep),
        cdf.shape[-1],
        (2 * seed) & _MASK64,
        (2 * seed + 1) & _MASK64,
    )
    return args, keep


@torch.library.custom_op("ebir_fast::add_noise", mutates_args=())
def _add_noise_op(
    x: torch.Tensor,
    sizes: torch.Tensor,
    kind: torch.Tensor,
    gray: torch.Tensor,
    sigma: torch.Tensor,
    scale: torch.Tensor,
    vals: torch.Tensor,
    seed: int,
    backend: str,
    with_mask: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    out = _cpu.empty_like(x)
    mask = x.new_empty(x.shape if with_mask else (0,), dtype=torch.uint8)
    args, _keep = _native_args(x, sizes, kind, gray, sigma, scale, vals, seed)
    launcher(backend).add_noise(args, x, out, mask if with_mask else None)
    return out, mask


@_add_noise_op.register_fake
def _(x, sizes, kind, gray, sigma, scale, vals, seed, backend, with_mask):
    return torch.empty_like(x), x.new_empty(x.shape if with_mask else (0,), dtype=torch.uint8)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


def _backward(ctx, grad, _grad_mask):
    (mask,) = ctx.saved_tensors
    if grad is None:
        return (None,) * 10
    return (grad * mask.to(grad.dtype), *((None,) * 9))


_add_noise_op.register_autograd(_backward, setup_context=_setup)


def add_noise(
    x: torch.Tensor,  # [B, C, H, W] in [0, 1]
    sizes: torch.Tensor | None,  # [B, 2] valid (h, w)
    kind: torch.Tensor,  # [B] int: 0 none, 1 Gaussian, 2 Poisson
    sigma: torch.Tensor,  # [B] Gaussian sigma on the 0..1 scale
    gray: torch.Tensor,  # [B] bool: one noise field shared by the channels (C must be 3)
    scale: torch.Tensor,  # [B] Poisson scale
    seed: int,
    *,
    backend: str = "auto",
) -> torch.Tensor:  # [B, C, H, W]: clamp(x + noise, 0, 1), zero outside the extents
    """Real-ESRGAN's Gaussian / Poisson noise, each sample its own kind and strength.

    Poisson noise follows Real-ESRGAN: ``vals = 2^ceil(log2(#distinct 8-bit levels))`` of the
    sample (of its luma when gray), ``noise = (Poisson(x8 vals) / vals - x8) * scale``.

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> y = add_noise(x, None, torch.tensor([1, 2]), torch.tensor([0.1, 0.0]),
        ...               torch.tensor([False, True]), torch.tensor([0.0, 1.0]), seed=3)
        >>> y.shape
        torch.Size([2, 3, 16, 16])
    """
    check_image("x", x)
    b = x.shape[0]
    sizes = check_sizes(sizes, x)
    kind_t = _per_sample("kind", kind, b, torch.int32)
    if bool(((kind_t < 0) | (kind_t > 2)).any()):
        raise ValueError(
            f"kind: expected 0 (none), 1 (Gaussian) or 2 (Poisson), got {kind_t.tolist()}"
        )
    gray_t = _per_sample("gray", gray, b, torch.bool)
    if bool(gray_t.any()) and x.shape[1] != 3:
        raise ValueError(f"gray: gray noise needs 3 (RGB) channels, x has shape {tuple(x.shape)}")
    sigma_t = _per_sample("sigma", sigma, b, torch.float64)
    scale_t = _per_sample("scale", scale, b, torch.float64)
    for name, t in (("sigma", sigma_t), ("scale", scale_t)):
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise ValueError(f"{name}: expected finite values >= 0, got {t.tolist()}")
    seed = int(seed)
    name = resolve_backend(backend, x.device.type, NOISE_BACKENDS)
    if name == "reference":
        levels = noise_levels(x.detach(), gray_t.to(x.device))
        vals = noise_vals(levels, sizes, gray_t.to(x.device)).cpu()
        vals = torch.where(kind_t == 2, vals, torch.ones_like(vals))
        return add_noise_reference(x, sizes, kind_t, sigma_t, gray_t, scale_t, vals, seed)
    gray_u8 = gray_t.to(torch.uint8)
    vals = _vals(x, sizes, kind_t, gray_u8, sigma_t, scale_t, seed, name)
    with_mask = torch.is_grad_enabled() and x.requires_grad
    out, _ = _add_noise_op(x, sizes, kind_t, gray_u8, sigma_t, scale_t, vals, seed, name, with_mask)
    return out


def _vals(x, sizes, kind, gray, sigma, scale, seed, backend) -> torch.Tensor:  # [B] float64, CPU
    """Poisson ``vals`` per sample from the kernel's level histogram (1 for other samples)."""
    ones = torch.ones(x.shape[0], dtype=torch.float64)
    args, _keep = _native_args(x, sizes, kind, gray, sigma, scale, ones, seed)
    hist = torch.empty(x.shape[0], 256, dtype=torch.int64, device=x.device)
    launcher(backend).noise_level_histogram(args, x, hist)
    distinct = (hist.cpu() > 0).sum(dim=1).clamp_min(1).double()
    return torch.where(kind == 2, 2.0 ** torch.ceil(torch.log2(distinct)), ones).contiguous()
