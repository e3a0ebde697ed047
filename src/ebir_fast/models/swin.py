"""Swin Transformer backbone (inference), with the parameter names of RAM's ``visual_encoder``.

RAM (``recognize-anything``, ``ram/models/swin_transformer.py``) builds Microsoft's Swin with
``ape=False`` (no absolute position embedding), ``patch_norm=True``, ``qkv_bias=True``, no
classification head, and returns the token sequence after the final LayerNorm with its mean
prepended as a first "CLS" token: ``[B, 1 + L, C]``. The module tree below reproduces that
layout key for key (``patch_embed.proj``, ``patch_embed.norm``,
``layers.{i}.blocks.{j}.{norm1,attn.{relative_position_bias_table,qkv,proj},norm2,mlp.{fc1,fc2}}``,
``layers.{i}.downsample.{norm,reduction}``, ``norm``), so RAM's weights load with ``strict=True``.

Two buffers of RAM's Swin are derived from the configuration, not learned:
``attn.relative_position_index`` and the shifted-window ``attn_mask``. They are registered here
as non-persistent buffers (absent from ``state_dict()``); RAM's own loader deletes them from the
checkpoint before loading, and :func:`split_derived_buffers` removes them the same way after
checking that they equal ours (a mismatch means the configuration is not the checkpoint's).

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` with the relative
position bias and the shift mask folded into one additive float mask; RAM's masked value is
``-100`` (not ``-inf``), kept here so the softmax matches it to the last bit that matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# RAM's attention mask value for token pairs that must not attend (Swin's original choice).
MASK_VALUE = -100.0


@dataclass(frozen=True)
class SwinConfig:
    """Architecture of a Swin backbone.

    Attributes:
        image_size: side of the square input image, in pixels.
        patch_size: side of a patch (the stride of the patch embedding).
        in_channels: input channels.
        embed_dim: channels of the first stage; each later stage doubles them.
        depths: number of blocks per stage.
        num_heads: attention heads per stage.
        window_size: attention window side, in tokens. A stage whose token grid is not larger
            than this uses one window covering the grid and no shift (as RAM's Swin does).
        mlp_ratio: hidden width of the MLP relative to the stage width.
    """

    image_size: int = 384
    patch_size: int = 4
    in_channels: int = 3
    embed_dim: int = 192
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (6, 12, 24, 48)
    window_size: int = 12
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.num_heads) or not self.depths:
            raise ValueError(
                f"depths and num_heads: expected the same non-zero length, got {self.depths} "
                f"and {self.num_heads}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size: expected a multiple of patch_size={self.patch_size}, "
                f"got {self.image_size}"
            )
        for i in range(len(self.depths)):
            res, window, _ = self.stage_geometry(i)
            if res < 1 or res % window:
                raise ValueError(
                    f"stage {i}: token grid {res} is not a multiple of its window {window} "
                    f"(image_size={self.image_size}, window_size={self.window_size})"
                )
            if self.stage_dim(i) % self.num_heads[i]:
                raise ValueError(
                    f"num_heads[{i}]: expected a divisor of the stage width "
                    f"{self.stage_dim(i)}, got {self.num_heads[i]}"
                )

    @property
    def grid(self) -> int:
        """Token grid side after the patch embedding."""
        return self.image_size // self.patch_size

    @property
    def num_features(self) -> int:
        """Channels of the output tokens."""
        return self.stage_dim(len(self.depths) - 1)

    def stage_dim(self, i: int) -> int:
        return self.embed_dim * 2**i

    def stage_geometry(self, i: int) -> tuple[int, int, int]:
        """(token grid side, window side, shift) of stage ``i``'s shifted blocks."""
        res = self.grid // 2**i
        if res <= self.window_size:
            return res, res, 0
        return res, self.window_size, self.window_size // 2


# RAM's Swin-L at 384 (ram/configs/swin/config_swinL_384.json): vision_width 1536.
SWIN_L_384 = SwinConfig()


def relative_position_index(window: int) -> torch.Tensor:
    """Index into the ``(2w-1)^2`` bias table for every (query, key) pair of a window.

    Returns:
        ``[w*w, w*w]`` int64; tokens are numbered row-major inside the window.
    """
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + (window - 1)
    d_col = cols[:, None] - cols[None, :] + (window - 1)
    return d_row * (2 * window - 1) + d_col


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """Split a token grid into windows.

    Args:
        x: ``[B, H, W, C]``.
    Returns:
        ``[B, nW, window*window, C]``, windows in row-major order.
    """
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, (h // window) * (w // window), window * window, c)


def window_merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B, nW, window*window, C]`` -> ``[B, H, W, C]``."""
    b, _, _, c = windows.shape
    x = windows.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def shifted_window_mask(res: int, window: int, shift: int) -> torch.Tensor:
    """Additive mask of the shifted windows of a ``res x res`` grid (after the cyclic shift).

    After rolling the grid by ``-shift``, the last window row/column holds tokens from both
    ends of the image; tokens that were not neighbours must not attend to each other. Each
    axis splits into three regions ``[0, res-window)``, ``[res-window, res-shift)``,
    ``[res-shift, res)``; a pair attends only inside one region of both axes.

    Returns:
        ``[nW, window*window, window*window]`` float32 of 0 and :data:`MASK_VALUE`.
    """
    axis = torch.zeros(res, dtype=torch.int64)
    axis[res - window : res - shift] = 1
    axis[res - shift :] = 2
    region = (axis[:, None] * 3 + axis[None, :]).view(1, res, res, 1)
    labels = window_partition(region, window).squeeze(-1)[0]  # [nW, N]
    same = labels[:, :, None] == labels[:, None, :]
    return torch.where(same, 0.0, MASK_VALUE).to(torch.float32)


class Mlp(nn.Module):
    """Two-layer MLP with exact (erf) GELU, as ``nn.GELU()`` in RAM's Swin."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        self.register_buffer(
            "relative_position_index", relative_position_index(window), persistent=False
        )
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> torch.Tensor:
        """``[heads, N, N]`` bias added to the attention logits of every window."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend inside each window.

        Args:
            x: ``[B, nW, N, C]`` tokens of ``nW`` windows of ``N`` tokens.
            mask: ``[nW, N, N]`` additive mask of the shifted windows, or None.
        Returns:
            ``[B, nW, N, C]``.
        """
        b, nw, n, c = x.shape
        h = self.num_heads
        # [3, B, nW*heads, N, head_dim]: windows and heads share one batch axis so that SDPA
        # sees 4D tensors and the per-(window, head) bias broadcasts over the image batch only.
        qkv = self.qkv(x).view(b, nw, n, 3, h, c // h).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.reshape(3, b, nw * h, n, c // h).unbind(0)
        bias = self.position_bias().unsqueeze(0)  # [1, heads, N, N]
        bias = bias + mask.unsqueeze(1) if mask is not None else bias.expand(nw, h, n, n)
        bias = bias.reshape(1, nw * h, n, n).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [B, nW*heads, N, hd]
        out = out.view(b, nw, h, n, c // h).transpose(2, 3).reshape(b, nw, n, c)
        return self.proj(out)


class SwinBlock(nn.Module):
    """Pre-norm transformer block over (optionally shifted) windows of a square token grid."""

    def __init__(
        self, dim: int, res: int, num_heads: int, window: int, shift: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        self.res, self.window, self.shift = res, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(res, window, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, res*res, C]`` -> same shape."""
        b, l, c = x.shape
        r = self.res
        y = self.norm1(x).view(b, r, r, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), self.attn_mask)
        y = window_merge(y, self.window, r, r)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, l, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 token merge: concatenate the four neighbours, LayerNorm, project ``4C -> 2C``."""

    def __init__(self, dim: int, res: int) -> None:
        super().__init__()
        self.res = res
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, res*res, C]`` -> ``[B, (res/2)^2, 2C]``."""
        b, _, c = x.shape
        x = x.view(b, self.res, self.res, c)
        # Order (row, col) = (0,0), (1,0), (0,1), (1,1): the channel layout the weights expect.
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """Blocks alternating plain and shifted windows, then an optional patch merge."""

    def __init__(self, config: SwinConfig, i: int) -> None:
        super().__init__()
        dim = config.stage_dim(i)
        res, window, shift = config.stage_geometry(i)
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim, res, config.num_heads[i], window, shift if j % 2 else 0, config.mlp_ratio
            )
            for j in range(config.depths[i])
        )
        last = i == len(config.depths) - 1
        self.downsample = None if last else PatchMerging(dim, res)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection followed by LayerNorm (RAM: ``patch_norm=True``)."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        p = config.patch_size
        self.proj = nn.Conv2d(config.in_channels, config.embed_dim, kernel_size=p, stride=p)
        self.norm = nn.LayerNorm(config.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, C_in, S, S]`` -> ``[B, (S/p)^2, embed_dim]``."""
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinTransformer(nn.Module):
    """Swin backbone returning RAM's token sequence: the mean token, then every token.

    Inference only: no dropout or stochastic depth (both are identities in eval mode).
    """

    def __init__(self, config: SwinConfig = SWIN_L_384) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config)
        self.layers = nn.ModuleList(SwinStage(config, i) for i in range(len(config.depths)))
        self.norm = nn.LayerNorm(config.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Encode normalised images.

        Args:
            images: ``[B, C_in, S, S]`` with ``S == config.image_size`` (normalised already).
        Returns:
            ``[B, 1 + (S / (p * 2^(stages-1)))^2, num_features]``; token 0 is the mean of the
            others (RAM's "CLS" embedding).
        """
        cfg = self.config
        expected = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images: expected [B, {expected[0]}, {expected[1]}, {expected[2]}], "
                f"got {list(images.shape)}"
            )
        x = self.patch_embed(images)
        for stage in self.layers:
            x = stage(x)
        x = self.norm(x)  # [B, L, C]
        return torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)


DERIVED_BUFFERS = ("relative_position_index", "attn_mask")


def split_derived_buffers(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Drop the derived Swin buffers from a checkpoint after checking them against ``model``.

    Args:
        model: the module the checkpoint is for (its non-persistent buffers are compared).
        state_dict: checkpoint entries; keys are ``prefix`` + the module's own names.
        prefix: prefix of ``model``'s keys in ``state_dict`` (e.g. ``"visual_encoder."``).
    Returns:
        ``state_dict`` without the ``relative_position_index`` / ``attn_mask`` entries.
    Raises:
        ValueError: a derived buffer of the checkpoint has no counterpart in ``model`` or a
            different value (the model's configuration is not the checkpoint's).
    """
    buffers = dict(model.named_buffers())
    kept = {}
    for key, value in state_dict.items():
        if not (key.startswith(prefix) and key.rsplit(".", 1)[-1] in DERIVED_BUFFERS):
            kept[key] = value
            continue
        ours = buffers.get(key[len(prefix) :])
        if ours is None or ours.shape != value.shape or not torch.equal(ours, value.to(ours)):
            shape = None if ours is None else list(ours.shape)
            raise ValueError(
                f"checkpoint entry {key!r} (shape {list(value.shape)}) does not match the "
                f"model's derived buffer (shape {shape}): the Swin configuration (image size, "
                "window size, depths) differs from the one the checkpoint was trained with"
            )
    return kept
