"""Ragged batches: samples of different sizes in one zero-padded tensor.

After a per-sample random resize the samples of a batch differ in size. They stay in one tensor
``[B, C, H, W]`` (H, W the largest extent) with ``sizes [B, 2]`` giving each sample's valid
``(h, w)``; the filter and JPEG kernels take ``sizes`` and work on every sample at once, only the
resize itself runs per group of equal (input size, output size, mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RESIZE_MODES = ("area", "bilinear", "bicubic")


def full_sizes(x: torch.Tensor) -> torch.Tensor:  # [B, 2] int64 on the CPU
    """Every sample of ``x`` [B, C, H, W] at full size."""
    return torch.tensor([x.shape[-2], x.shape[-1]]).repeat(x.shape[0], 1)


def valid_mask(sizes: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """``[B, 1, H, W]`` bool: True inside each sample's extent."""
    s = sizes.to(device)
    rows = torch.arange(height, device=device).view(1, -1, 1) < s[:, 0].view(-1, 1, 1)
    cols = torch.arange(width, device=device).view(1, 1, -1) < s[:, 1].view(-1, 1, 1)
    return (rows & cols).unsqueeze(1)


def is_full(sizes: torch.Tensor, x: torch.Tensor) -> bool:
    return bool((sizes[:, 0] == x.shape[-2]).all() and (sizes[:, 1] == x.shape[-1]).all())


def resize(
    x: torch.Tensor,  # [B, C, H, W], valid extents `sizes`
    sizes: torch.Tensor,  # [B, 2] int64, CPU
    out_sizes: torch.Tensor,  # [B, 2] int64, CPU, each >= 1
    modes: torch.Tensor,  # [B] int64 index into RESIZE_MODES
) -> torch.Tensor:  # [B, C, max out h, max out w], zero outside `out_sizes`
    """Resize each sample's valid region to its own size, with its own mode.

    ``F.interpolate`` semantics (align_corners=False, no antialias; "area" is adaptive average
    pooling), as BasicSR's degradation pipeline uses. Samples sharing (input size, output size,
    mode) are resized in one call; differentiable.
    """
    keys = torch.cat([sizes, out_sizes, modes.view(-1, 1)], dim=1).tolist()
    groups: dict[tuple[int, ...], list[int]] = {}
    for b, key in enumerate(keys):
        groups.setdefault(tuple(key), []).append(b)
    out_h, out_w = int(out_sizes[:, 0].max()), int(out_sizes[:, 1].max())
    track = torch.is_grad_enabled() and x.requires_grad
    uniform = bool((out_sizes[:, 0] == out_h).all() and (out_sizes[:, 1] == out_w).all())
    # Every sample fills the whole output (e.g. the resize back): no zero border to write.
    out = (x.new_empty if uniform else x.new_zeros)(x.shape[0], x.shape[1], out_h, out_w)
    pieces: list[torch.Tensor | None] = [None] * x.shape[0]
    for (h, w, oh, ow, mode), members in groups.items():
        if len(members) == 1:  # a view: no copy of the padded sample
            src = x[members[0] : members[0] + 1, :, :h, :w]
        else:
            src = x.index_select(0, torch.tensor(members, device=x.device))[..., :h, :w]
        name = RESIZE_MODES[mode]
        if (oh, ow) == (h, w):
            dst = src
        elif name == "area":
            dst = F.adaptive_avg_pool2d(src, (oh, ow))
        else:
            dst = F.interpolate(src, size=(oh, ow), mode=name, align_corners=False)
        for i, b in enumerate(members):
            if track:  # autograd: pad and stack
                pieces[b] = F.pad(dst[i], (0, out_w - ow, 0, out_h - oh))
            else:  # no graph: write each extent into the zeroed output once
                out[b, :, :oh, :ow] = dst[i]
    return torch.stack(pieces) if track else out  # type: ignore[arg-type]
