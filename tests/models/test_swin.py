"""Swin backbone: shifted-window attention against explicit full attention, RAM's key layout."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from ebir_fast.models.swin import (
    SWIN_L_384,
    SwinBlock,
    SwinConfig,
    SwinTransformer,
    split_derived_buffers,
)

TINY = SwinConfig(
    image_size=32, patch_size=4, embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=4
)


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every parameter with N(0, 0.5) values so that no term of the forward is trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module.eval()


def _grid_coords(res: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(res), range(res))))  # [L, 2] row-major


def _naive_block(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """The block as full attention over all tokens of the (unshifted) grid with -inf masks.

    Two tokens attend iff they fall into the same window after the cyclic shift by -shift and
    neither or both of them wrapped around (per axis): the Swin paper's semantics, written
    without roll or window partition. The bias uses the tokens' offset in the original grid.
    """
    res, w, s = block.res, block.window, block.shift
    attn = block.attn
    heads = attn.num_heads
    b, l, c = x.shape
    pos = _grid_coords(res)
    rolled = (pos - s) % res
    wrapped = pos < s
    same_window = (rolled[:, None] // w == rolled[None] // w).all(-1)
    same_side = (wrapped[:, None] == wrapped[None]).all(-1)
    allowed = same_window & same_side  # [L, L]
    delta = (pos[:, None] - pos[None]).clamp(-(w - 1), w - 1) + (w - 1)
    index = delta[..., 0] * (2 * w - 1) + delta[..., 1]
    bias = attn.relative_position_bias_table[index].permute(2, 0, 1)  # [heads, L, L]

    y = block.norm1(x)
    q, k, v = attn.qkv(y).view(b, l, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    logits = q @ k.transpose(-1, -2) * (c // heads) ** -0.5 + bias
    logits = logits.masked_fill(~allowed, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, l, c)
    x = x + attn.proj(out)
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize(
    ("res", "window", "shift"), [(8, 4, 2), (12, 4, 2), (12, 6, 3), (6, 3, 1), (8, 4, 0)]
)
def test_block_matches_full_attention_with_masks(res, window, shift):
    block = _randomize(
        SwinBlock(dim=12, res=res, num_heads=3, window=window, shift=shift, mlp_ratio=2)
    )
    x = torch.randn(2, res * res, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(block(x), _naive_block(block, x), atol=1e-5, rtol=1e-5)


def test_shift_changes_the_result():
    """The shifted path is really taken: a shifted block differs from the same weights unshifted."""
    plain = _randomize(SwinBlock(dim=8, res=8, num_heads=2, window=4, shift=0, mlp_ratio=2))
    shifted = SwinBlock(dim=8, res=8, num_heads=2, window=4, shift=2, mlp_ratio=2).eval()
    shifted.load_state_dict(plain.state_dict())
    x = torch.randn(1, 64, 8)
    with torch.no_grad():
        assert (plain(x) - shifted(x)).abs().max() > 1e-2


def _patch_merge_naive(x: torch.Tensor, res: int) -> torch.Tensor:
    b, _, c = x.shape
    g = x.view(b, res, res, c)
    out = torch.empty(b, res // 2, res // 2, 4 * c)
    for i, j in itertools.product(range(res // 2), range(res // 2)):
        # Microsoft Swin's order: (2i, 2j), (2i+1, 2j), (2i, 2j+1), (2i+1, 2j+1).
        parts = [g[:, 2 * i, 2 * j], g[:, 2 * i + 1, 2 * j], g[:, 2 * i, 2 * j + 1]]
        out[:, i, j] = torch.cat([*parts, g[:, 2 * i + 1, 2 * j + 1]], -1)
    return out.view(b, -1, 4 * c)


def test_backbone_matches_a_naive_composition():
    model = _randomize(SwinTransformer(TINY))
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(images)
        x = F.conv2d(images, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=4)
        x = model.patch_embed.norm(x.flatten(2).transpose(1, 2))
        for stage in model.layers:
            for block in stage.blocks:
                x = _naive_block(block, x)
            if stage.downsample is not None:
                merged = _patch_merge_naive(x, stage.downsample.res)
                x = stage.downsample.reduction(stage.downsample.norm(merged))
        x = model.norm(x)
    assert out.shape == (2, 1 + 16, 16)
    torch.testing.assert_close(out[:, 1:], x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 0], x.mean(1), atol=1e-5, rtol=1e-5)


def test_batch_items_are_independent():
    model = _randomize(SwinTransformer(TINY))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images)[1:2], model(images[1:2]), atol=1e-6, rtol=1e-5)


def test_swin_l_384_layout():
    """Swin-L/384 as RAM builds it: stage geometry, key names and shapes of its checkpoint."""
    assert SWIN_L_384.num_features == 1536
    geometry = [SWIN_L_384.stage_geometry(i) for i in range(4)]
    assert geometry == [(96, 12, 6), (48, 12, 6), (24, 12, 6), (12, 12, 0)]
    with torch.device("meta"):
        model = SwinTransformer(SWIN_L_384)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["patch_embed.proj.weight"] == (192, 3, 4, 4)
    assert shapes["patch_embed.norm.weight"] == (192,)
    assert shapes["layers.2.blocks.17.attn.relative_position_bias_table"] == (23 * 23, 24)
    assert shapes["layers.3.blocks.1.attn.qkv.weight"] == (3 * 1536, 1536)
    assert shapes["layers.3.blocks.1.mlp.fc1.weight"] == (4 * 1536, 1536)
    assert shapes["layers.0.downsample.reduction.weight"] == (384, 768)
    assert "layers.0.downsample.reduction.bias" not in shapes
    assert "layers.3.downsample.norm.weight" not in shapes
    assert shapes["norm.weight"] == (1536,)
    assert not any(k.endswith(("relative_position_index", "attn_mask")) for k in shapes)
    assert sum(k.endswith("qkv.weight") for k in shapes) == 24
    # The last stage's 12x12 grid is one window: no shift, so no mask in any of its blocks.
    assert model.layers[3].blocks[1].attn_mask is None
    assert model.layers[2].blocks[1].attn_mask.shape == (4, 144, 144)


def _ram_style_derived_buffers(model: SwinTransformer, prefix: str) -> dict[str, torch.Tensor]:
    """The derived buffers a RAM checkpoint carries, computed independently of swin.py."""
    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, SwinBlock):
            continue
        w = module.window
        pos = _grid_coords(w)
        delta = pos[:, None] - pos[None] + (w - 1)
        out[f"{prefix}{name}.attn.relative_position_index"] = (
            delta[..., 0] * (2 * w - 1) + delta[..., 1]
        )
        if module.shift:
            res, s = module.res, module.shift
            grid = _grid_coords(res)
            rolled_pos = (grid + s) % res  # original coordinate of each rolled position
            windows = (grid // w)[:, 0] * (res // w) + (grid // w)[:, 1]
            wrapped = rolled_pos < s
            masks = []
            for wi in range(int(windows.max()) + 1):
                sel = wrapped[windows == wi]
                same = (sel[:, None] == sel[None]).all(-1)
                masks.append(torch.where(same, 0.0, -100.0))
            out[f"{prefix}{name}.attn_mask"] = torch.stack(masks)
    return out


def test_checkpoint_with_ram_buffers_loads_strictly():
    model = _randomize(SwinTransformer(TINY))
    ckpt = {f"visual_encoder.{k}": v for k, v in model.state_dict().items()}
    ckpt.update(_ram_style_derived_buffers(model, "visual_encoder."))
    ckpt["image_proj.weight"] = torch.zeros(1)  # entries of other modules pass through
    kept = split_derived_buffers(model, ckpt, prefix="visual_encoder.")
    assert "image_proj.weight" in kept
    fresh = SwinTransformer(TINY).eval()
    fresh.load_state_dict(
        {k[len("visual_encoder.") :]: v for k, v in kept.items() if k != "image_proj.weight"},
        strict=True,
    )
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh(images), model(images), atol=0, rtol=0)


def test_derived_buffer_mismatch_names_the_entry():
    model = SwinTransformer(TINY)
    other = SwinTransformer(
        SwinConfig(image_size=32, embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=2)
    )
    ckpt = _ram_style_derived_buffers(other, "")
    with pytest.raises(ValueError, match=r"layers\.0\.blocks\.0\.attn\.relative_position_index"):
        split_derived_buffers(model, ckpt)


def test_input_shape_error_names_expected_and_given():
    model = SwinTransformer(TINY)
    with pytest.raises(
        ValueError, match=r"images: expected \[B, 3, 32, 32\], got \[1, 3, 30, 32\]"
    ):
        model(torch.zeros(1, 3, 30, 32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depths": (2, 2), "num_heads": (1,)}, "same non-zero length"),
        ({"image_size": 30}, "multiple of patch_size"),
        ({"image_size": 40, "window_size": 4, "depths": (2, 2), "num_heads": (1, 2)}, "window"),
        ({"embed_dim": 9, "depths": (2,), "num_heads": (2,), "image_size": 32}, "divisor"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SwinConfig(**kwargs)
